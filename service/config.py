"""Settings: defaults, then WORKFLOW_AUTHZ_* environment variables, then a test mapping."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from service.errors import ServiceError

PREFIX = "WORKFLOW_AUTHZ_"
REPO_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(ServiceError):
    """An environment variable holds a value the service cannot use (a usage error: exit 2)."""

    code, exit_code = "bad_configuration", 2


@dataclass(frozen=True)
class Setting:
    """One configuration key, its default and what it is for (shown by `workflow-authz config`).
    A `secret` one is shown only as set or not; a URL's password never is."""

    name: str
    default: Any
    description: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "DATABASE_URL",
        f"sqlite:///{REPO_ROOT / 'var' / 'workflow-authz.sqlite3'}",
        "SQLAlchemy URL of the store: the embedded SQLite file by default, "
        "postgresql+psycopg://user@host/db in production.",
    ),
    Setting("POLICY_DIR", str(REPO_ROOT / "policy"), "Folder with workflow.toml and policy.csv."),
    Setting("MODEL_PATH", str(REPO_ROOT / "model.conf"), "The casbin model file."),
    Setting("POLICY_CACHE_TENANTS", 2048, "How many tenants' policies a process keeps in memory."),
    Setting("POOL_SIZE", 4, "Database connections kept open per process (PostgreSQL)."),
    Setting(
        "STORE_TIMEOUT",
        3,
        "Seconds a request waits for PostgreSQL before it fails closed with 503: to connect, "
        "for each reply (a partitioned or stalled link) and, on the server, for each statement "
        "of a write; a write transaction whose client went silent is ended by the server after "
        "half of it, freeing its locks. 0: no limits.",
    ),
    Setting("MAX_BODY_BYTES", 262144, "Largest accepted request body; larger bodies get 413."),
    Setting(
        "HEADER_TIMEOUT",
        10,
        "Seconds a client has to send a request's headers (1-60); then the connection is closed.",
    ),
    Setting(
        "BODY_TIMEOUT",
        10,
        "Seconds a client has to send a request's body once its headers are in; then 408.",
    ),
    Setting(
        "MAX_HEADER_BYTES",
        16384,
        "Largest request head (request line and headers) a worker buffers (at least 8192).",
    ),
    Setting(
        "MAX_CONNECTIONS",
        1024,
        "Connections each worker process holds open at once (idle, slow or busy); more wait in "
        "the listen backlog.",
    ),
    Setting("BACKLOG", 1024, "The listening socket's backlog of connections not yet accepted."),
    Setting(
        "THREADS",
        4,
        "Threads per worker process that run requests (only requests whose body has fully "
        "arrived reach them).",
    ),
    Setting(
        "DECISIONS_INLINE",
        True,
        "Run POST /authorize and /authorize/batch on each worker's event loop thread rather than "
        "handing them to THREADS: they never wait on a lock, and the handover costs more than "
        "the decision (+47 % req/s on SQLite, +50 % on PostgreSQL in bench.http).",
    ),
    Setting(
        "SECRET_KEY",
        "",
        "Signs admin sessions; when empty, generated into a secret_key file beside a SQLite "
        "store; required for other stores (every host must share it).",
        secret=True,
    ),
    Setting(
        "SESSION_COOKIE_SECURE",
        False,
        "Mark the admin session cookie Secure even when TLS ends at a proxy in front "
        "(it is always Secure on requests that arrive over HTTPS).",
    ),
    Setting(
        "TRUSTED_PROXIES",
        0,
        "How many proxies in front of the service append to X-Forwarded-For: the client address "
        "(for the failure limits) is read that many hops from its end. 0: the header is ignored.",
    ),
    Setting(
        "RATE_LIMIT_STORAGE",
        "memory://",
        "Where failed authentications and logins are counted: memory:// (each process its own) "
        "or a Redis URL (redis://127.0.0.1:6379/0) that every process and host shares.",
    ),
    Setting("LOG_LEVEL", "INFO", "Python logging level."),
    Setting(
        "PUBLIC_URL",
        "",
        "The service's base URL as AuthZEN clients reach it (https://pdp.example.com), named in "
        "/.well-known/authzen-configuration; when empty, each request's own origin.",
    ),
    Setting(
        "WEBHOOK_DELIVERY",
        True,
        "Whether `workflow-authz serve` also runs the webhook delivery loop (one process beside "
        "the server); false when operators run `workflow-authz deliver` separately.",
    ),
    Setting(
        "WEBHOOK_ALLOW_PRIVATE",
        False,
        "Allow webhook endpoints on loopback, link-local and private addresses (tests, or a "
        "receiver inside the service's own network on purpose).",
    ),
    Setting("WEBHOOK_TIMEOUT", 10.0, "Seconds a delivery attempt may take before it failed."),
    Setting("WEBHOOK_BACKOFF_BASE", 1.0, "Seconds before the first retry; doubled each time."),
    Setting("WEBHOOK_BACKOFF_CAP", 3600.0, "The longest wait between two retries, in seconds."),
    Setting(
        "WEBHOOK_MAX_AGE",
        259200.0,
        "Seconds an event is retried after it was made (3 days); then its endpoint is failing "
        "and its events wait for `workflow-authz webhooks retry`.",
    ),
    Setting(
        "WEBHOOK_SECRET_GRACE",
        86400.0,
        "Seconds the secret before a rotation keeps signing beside the new one (24 hours).",
    ),
    Setting(
        "WEBHOOK_POLL_INTERVAL",
        0.2,
        "Seconds the delivery loop waits, when it has nothing to send, before it looks again.",
    ),
)

_DEFAULTS = {s.name: s.default for s in SETTINGS}


def default(name: str) -> Any:
    """A setting's default, for the parts that are also built without a configuration."""
    return _DEFAULTS[name]


def load_config(overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge defaults, environment and explicit overrides, converting to each default's type."""
    config = dict(_DEFAULTS)
    for name, default in _DEFAULTS.items():
        raw = os.environ.get(PREFIX + name)
        if raw is not None:
            config[name] = _convert(name, raw, default)
    config.update(overrides or {})
    return config


def _convert(name: str, raw: str, default: Any) -> Any:
    """Parse an environment string as the setting's type, naming the variable when it is wrong."""
    if isinstance(default, bool):
        if raw.lower() not in ("1", "0", "true", "false", "yes", "no", ""):
            raise ConfigError(f"{PREFIX}{name} must be true or false, got {raw!r}")
        return raw.lower() in ("1", "true", "yes")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{PREFIX}{name} must be an integer, got {raw!r}") from None
    if isinstance(default, float):
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not 0 <= value < float("inf"):
            raise ConfigError(f"{PREFIX}{name} must be a number of seconds >= 0, got {raw!r}")
        return value
    return raw
