"""Production serving: granian's Rust HTTP/1 I/O in worker processes, each running the app on a
few threads behind service/buffered.py, so a slow client costs a socket, never a thread.

Chosen by measurement (`python -m bench.servers`, README "How the server was chosen"). granian
reads headers (within HEADER_TIMEOUT and MAX_HEADER_BYTES) and accepts at most MAX_CONNECTIONS per
worker; the adapter reads each body on the worker's event loop (within BODY_TIMEOUT and
MAX_BODY_BYTES) and hands only complete requests to the worker's THREADS. Every worker builds its
own app, and so its own store pools, after the fork; workers that die are started again; SIGTERM
lets requests in flight finish (for at most STOP_TIMEOUT seconds) before the workers exit.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from granian.constants import HTTPModes, Interfaces, Loops
from granian.http import HTTP1Settings
from granian.server.mp import MPServer

from service.config import PREFIX, ConfigError

WORKER_TARGET = "service.server:worker_app"
"""What each worker imports and calls to build its app (after the fork)."""
SLOTS_ENV = "WORKFLOW_AUTHZ_HASH_SLOTS_FOLDER"
"""Where `serve` tells its workers the shared hash slot files are (set by serving_state)."""
DECISION_PATHS = frozenset({"/authorize", "/authorize/batch"})
"""The API's decision requests (api.authorize, api.authorize_batch): read-only, one indexed
statement that waits on no lock (PostgreSQL's snapshots, SQLite's WAL readers). With
DECISIONS_INLINE they run on the worker's event loop thread: the handover to a pool thread and
back cost more than the decision itself (README, "HTTP: `python -m bench.http`")."""
STOP_TIMEOUT = 10
"""Seconds a stopping worker may take to finish its requests in flight before it is killed."""
RESPAWN_INTERVAL = 0.5
"""Seconds granian waits after starting a worker in place of one that died."""
STOPS = {signal.SIGTERM, signal.SIGINT}
"""The signals that stop `serve` and each of its workers."""
MIN_HEADER_BYTES = 8192
"""granian's smallest read buffer, and so the smallest header limit it can keep."""
MAX_HEADER_TIMEOUT = 60
"""granian's largest header read timeout, in seconds."""


@dataclass(frozen=True)
class ServerSettings:
    """The server's limits, from the WORKFLOW_AUTHZ_* settings, checked before anything starts."""

    header_timeout: int
    body_timeout: int
    max_header_bytes: int
    max_body_bytes: int
    max_connections: int
    backlog: int
    threads: int
    decisions_inline: bool

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ServerSettings:
        """The limits in `config`; ConfigError naming the variable and its range when one is out
        of it."""
        return cls(
            header_timeout=_within(config, "HEADER_TIMEOUT", 1, MAX_HEADER_TIMEOUT),
            body_timeout=_within(config, "BODY_TIMEOUT", 1, 3600),
            max_header_bytes=_within(config, "MAX_HEADER_BYTES", MIN_HEADER_BYTES, 1 << 20),
            max_body_bytes=_within(config, "MAX_BODY_BYTES", 1, 1 << 30),
            max_connections=_within(config, "MAX_CONNECTIONS", 1, 100_000),
            backlog=_within(config, "BACKLOG", 128, 65_535),
            threads=_within(config, "THREADS", 0, 256),
            decisions_inline=bool(config["DECISIONS_INLINE"]),
        )


def _within(config: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value = config[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{PREFIX}{name} must be an integer from {low} to {high}, got {value!r}")
    return value


@contextmanager
def serving_state() -> Iterator[None]:
    """What the workers of one server share, made before they fork and removed after: the
    Prometheus multiprocess folder (every worker's counts, summed by /metrics) and the password
    hash slots (service/hash_slots.py)."""
    from service import accounts

    metrics_dir = tempfile.mkdtemp(prefix="workflow-authz-metrics-")
    slots_dir = tempfile.mkdtemp(prefix="workflow-authz-hash-slots-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.environ[SLOTS_ENV] = slots_dir
    accounts.hash_slots.share(Path(slots_dir))
    try:
        yield
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
        shutil.rmtree(slots_dir, ignore_errors=True)


def worker_app() -> Any:
    """One worker's app: the service's Flask app behind the buffering adapter. Called in each
    worker after the fork, so each has its own store pools."""
    from service import create_app

    return buffered(create_app)


def buffered(load: Callable[[], Any]) -> Any:
    """`load()`'s WSGI app behind the buffering adapter, with the configured limits."""
    from service import accounts
    from service.buffered import BufferedWSGI
    from service.config import load_config

    folder = os.environ.get(SLOTS_ENV)
    if folder:  # inherited through a fork already; a spawned worker learns it here
        accounts.hash_slots.share(Path(folder))
    settings = ServerSettings.from_config(load_config())
    return BufferedWSGI(
        load(),
        threads=settings.threads,
        max_body=settings.max_body_bytes,
        body_timeout=settings.body_timeout,
        inline=DECISION_PATHS if settings.decisions_inline else frozenset(),
    )


class _Server(MPServer):
    """granian's process supervisor, telling Prometheus about every worker it replaces."""

    def _respawn_workers(self, workers: list[int], *args: Any, **kwargs: Any) -> None:
        from prometheus_client import multiprocess

        for idx in workers:
            pid = self.wrks[idx].inner.pid
            if pid is not None:  # its counters stay (summed); its live gauges go
                multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
        super()._respawn_workers(workers, *args, **kwargs)


def build(
    host: str, port: int, workers: int, settings: ServerSettings, target: str = WORKER_TARGET
) -> Any:
    """The granian server for `target` (a factory each worker calls), not started yet."""
    return _Server(
        target,
        address=host,
        port=port,
        workers=workers,
        interface=Interfaces.ASGINL,
        loop=Loops.uvloop,
        factory=True,
        http=HTTPModes.http1,
        http1_settings=HTTP1Settings(
            header_read_timeout=settings.header_timeout * 1000,
            max_buffer_size=settings.max_header_bytes,
        ),
        backlog=settings.backlog,
        backpressure=settings.max_connections,
        websockets=False,
        respawn_failed_workers=True,
        respawn_interval=RESPAWN_INTERVAL,
        workers_kill_timeout=STOP_TIMEOUT,
        log_access=False,
    )


def run(host: str, port: int, workers: int) -> None:
    """Serve until SIGTERM or SIGINT. Each worker is a process: no shared connections, no GIL
    contention between workers."""
    from service.config import load_config

    config = load_config()
    settings = ServerSettings.from_config(config)
    with serving_state():
        from service.webhooks.delivery import alongside  # imports the metrics: after the folder

        with alongside(config):  # the delivery loop: one process beside the workers
            os.register_at_fork(
                before=_hold_stops, after_in_parent=_release_stops, after_in_child=_stop_at_once
            )
            build(host, port, workers, settings).serve()


def _hold_stops() -> None:
    """Before a fork: a stop signal waits (pending) until the fork is done, so that a child
    cannot get one before `_stop_at_once` has run."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)


def _release_stops() -> None:
    """After a fork, in the supervisor: its stop signals are delivered again."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)


def _stop_at_once() -> None:
    """In a worker just forked: SIGTERM and SIGINT end it at once until granian sets its own
    graceful handlers, which happens before it accepts a connection. A stop sent meanwhile was
    held (`_hold_stops`) and takes effect as the signals are released here.

    A forked worker inherits the supervisor's Python handler, which in the child only sets a flag
    nobody reads: a stop that arrived while a worker was still starting was lost, so that worker
    went on serving until killed after STOP_TIMEOUT, and the requests in flight on the other
    workers were killed with it (tests/test_server.py). A worker still starting has no request to
    finish, so the default action is the graceful one."""
    for stop in STOPS:
        signal.signal(stop, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)
