"""Admin sessions: the signed cookie (Secure over HTTPS), the key that signs it, and the security
headers every admin page carries."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask, Request, has_request_context, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from sqlalchemy import make_url as parse_url

from service.admin.blueprint import bp
from service.config import ConfigError

SESSION_LIFETIME = timedelta(hours=8)
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class SecureOverHttpsSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the Secure flag whenever the request came over HTTPS;
    only admin pages have a session (the JSON API authenticates by key, and skipping the cookie
    work saves a measurable share of every /authorize)."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        """The admin session; none (Flask's null session) outside /admin."""
        if not request.path.startswith("/admin"):
            return None
        return super().open_session(app, request)

    def get_cookie_secure(self, app: Flask) -> bool:
        """Secure when configured so, or when this request arrived over HTTPS."""
        configured = bool(app.config["SESSION_COOKIE_SECURE"])
        return configured or (has_request_context() and request.is_secure)


@bp.after_request
def security_headers(response: Any) -> Any:
    """No framing, no script, no third-party anything, no caching of pages with tokens."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def secret_key(config: Mapping[str, Any]) -> str:
    """The key that signs admin sessions: the configured one; else one kept in a file beside a
    SQLite store (every process on that host reads the same file); else, in tests only, a key
    per process. Any other store means several hosts, which must share a key: it must be set."""
    if config["SECRET_KEY"]:
        return str(config["SECRET_KEY"])
    url = parse_url(config["DATABASE_URL"])
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return _persisted_key(Path(url.database).parent / "secret_key")
    if config.get("TESTING"):
        return secrets.token_hex(32)
    raise ConfigError(
        "set WORKFLOW_AUTHZ_SECRET_KEY (e.g. `python -c 'import secrets; "
        "print(secrets.token_hex(32))'`): with a store other than a local SQLite file every "
        "process and host must sign admin sessions with the same key"
    )


def _persisted_key(path: Path) -> str:
    """Read the key file, creating it first when absent. The new key is written to a private
    temporary file and hard-linked into place, so processes starting together share one key."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".secret_key.")
        try:
            with os.fdopen(fd, "w", encoding="ascii") as file:
                file.write(secrets.token_hex(32))
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # another process won the race; use its key
        finally:
            os.unlink(temporary)
    return path.read_text(encoding="ascii").strip()
