"""`workflow-authz serve` (service/server.py): its limits refused precisely when out of range, a
request in flight finished on SIGTERM, a worker killed with SIGKILL replaced while the others keep
answering, and /metrics summing every worker's counts (a dead one's included). Real servers, real
processes, real signals; every wait polls for its condition with a deadline."""

from __future__ import annotations

import errno
import os
import re
import signal
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import make_url

from bench import internals
from bench.server import Reply, Server, create_api_key, poll, serve_command, server_env, serving
from service.config import PREFIX, ConfigError, load_config
from service.server import MIN_HEADER_BYTES, ServerSettings
from tests.conftest import in_sqlite_busy_wait

TENANT = "served"
QUESTION = {
    "tenant": TENANT,
    "role": "parent",
    "action": "view",
    "area": "behaviour",
    "phase": "completed",
}
WAIT = 60.0
"""How long any condition may take to come true before the test fails."""
AUTHORIZED = re.compile(
    r"^workflow_authz_http_requests_total\{[^}]*endpoint=\"/authorize\"[^}]*status=\"200\"[^}]*\}"
    r" ([0-9.e+]+)$",
    re.MULTILINE,
)


# -- settings --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("HEADER_TIMEOUT", "-1", "from 1 to 60, got -1"),
        ("HEADER_TIMEOUT", "61", "from 1 to 60, got 61"),
        ("BODY_TIMEOUT", "0", "from 1 to 3600, got 0"),
        ("MAX_HEADER_BYTES", "100", f"from {MIN_HEADER_BYTES} to 1048576, got 100"),
        ("MAX_CONNECTIONS", "0", "from 1 to 100000, got 0"),
        ("BACKLOG", "5", "from 128 to 65535, got 5"),
        ("THREADS", "-2", "from 0 to 256, got -2"),
    ],
)
def test_an_out_of_range_limit_is_refused_naming_the_variable_and_its_range(
    name: str, value: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PREFIX + name, value)
    with pytest.raises(ConfigError) as refused:
        ServerSettings.from_config(load_config())
    assert str(refused.value) == f"{PREFIX}{name} must be an integer {expected}"


def test_a_limit_that_is_no_integer_is_refused_when_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{PREFIX}BODY_TIMEOUT", "2.5")
    with pytest.raises(ConfigError, match="WORKFLOW_AUTHZ_BODY_TIMEOUT must be an integer"):
        load_config()


def test_the_defaults_are_in_range() -> None:
    settings = ServerSettings.from_config(load_config())
    assert (settings.header_timeout, settings.body_timeout, settings.threads) == (10, 10, 4)
    assert settings.max_header_bytes == 16384 and settings.max_connections == 1024


def test_serve_refuses_a_bad_limit_in_one_line_before_anything_listens(sqlite_url: str) -> None:
    env = server_env(sqlite_url, {f"{PREFIX}HEADER_TIMEOUT": "-5"})
    done = subprocess.run(
        [*serve_command(), "--port", "1"], env=env, capture_output=True, text=True, timeout=WAIT
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == (
        "Error: WORKFLOW_AUTHZ_HEADER_TIMEOUT must be an integer from 1 to 60, got -5"
    )
    assert "granian" not in done.stdout


# -- a running server ------------------------------------------------------------------------------


def _store(url: str) -> str:
    """A tenant with the default policy and one assessment; an API key for it."""
    local = internals.Local.open(url)
    try:
        local.create_tenant(TENANT, "served-1", "behaviour")
    finally:
        local.close()
    return create_api_key(url, TENANT)


def _authorized(server: Server) -> float:
    """The POST /authorize 200 count /metrics reports (summed over workers)."""
    text = server.request("GET", "/metrics").body.decode()
    return sum(float(n) for n in AUTHORIZED.findall(text))


def _allowed(server: Server, key: str) -> bool:
    reply = server.post_json("/authorize", QUESTION, key, timeout=10)
    return reply.status == 200 and reply.json()["allowed"] is True


def _counted(workers: set[int]) -> set[int]:
    """Which of `workers` have counts in their server's metrics folder (`serve` makes it in the
    temporary folder; the files are named by pid)."""
    found = set()
    for folder in Path(tempfile.gettempdir()).glob("workflow-authz-metrics-*"):
        found |= {int(f.stem.rsplit("_", 1)[1]) for f in folder.glob("counter_*.db")}
    return found & workers


def test_a_worker_killed_is_replaced_while_the_others_answer_and_metrics_keep_its_counts(
    sqlite_url: str,
) -> None:
    key = _store(sqlite_url)
    with serving(sqlite_url, workers=2) as server:
        poll(server, lambda: len(server.workers()) == 2, WAIT)
        first = set(server.workers())
        # Ask until both workers have answered some: /metrics must then sum both.
        sent = 0

        def both_counted() -> bool:
            nonlocal sent
            assert _allowed(server, key)
            sent += 1
            return _counted(first) == first

        poll(server, both_counted, WAIT)
        assert _authorized(server) == sent

        victim = min(first)
        os.kill(victim, signal.SIGKILL)
        poll(server, lambda: victim not in server.workers(), WAIT)  # reaped by the server
        survivor = first - {victim}  # (its replacement may be up already)
        # The service answers all along: the survivor, and the replacement once it is up.
        for _ in range(5):
            assert _allowed(server, key)
        sent += 5
        poll(server, lambda: len(set(server.workers()) - {victim}) == 2, WAIT)
        assert survivor < set(server.workers())
        # The dead worker's counts are still summed, and the new worker's join them.
        assert _authorized(server) == sent
        for _ in range(10):
            assert _allowed(server, key)
        assert _authorized(server) == sent + 10
        assert "Unexpected exit from worker" in server.log_tail(200)


def test_sigterm_finishes_the_request_in_flight_then_exits_cleanly(sqlite_url: str) -> None:
    """A create waits on a write lock the test holds (SQLite's busy timeout); SIGTERM arrives
    meanwhile; new connections are refused from then on, the create still gets its 201 once the
    lock goes, and the server exits 0."""
    key = _store(sqlite_url)
    path = make_url(sqlite_url).database
    assert path is not None
    with serving(sqlite_url, workers=2) as server:
        with _create_waiting_on_a_lock(server, key, path, "in-flight-1") as (answers, thread):
            server.process.send_signal(signal.SIGTERM)
            _poll_refused(server)
            assert thread.is_alive() and server.process.poll() is None  # still finishing it
        assert [a.status for a in answers] == [201]
        assert server.process.wait(WAIT) == 0
        assert '"assessment":"in-flight-1"' in server.log_tail(200)


def test_sigterm_stops_a_worker_that_is_still_starting_at_once(sqlite_url: str) -> None:
    """A stop that arrives while a worker is still building its app ends that worker at once: it
    has no request to finish. Before, the forked worker inherited the supervisor's handler, the
    stop was lost, and the worker was killed only after STOP_TIMEOUT (so were the requests in
    flight on the others). The worker's start is held for real: the session key file beside the
    SQLite store is a named pipe, read by `serve` first (the test writes it a key) and then by
    each worker as it builds its app (nothing writes it again)."""
    _store(sqlite_url)
    folder = Path(make_url(sqlite_url).database or "").parent
    pipe = folder / "secret_key"
    os.mkfifo(pipe)
    env = {f"{PREFIX}SECRET_KEY": "", f"{PREFIX}WEBHOOK_DELIVERY": "false"}
    with serving(sqlite_url, workers=1, env=env, wait=False) as server:
        _write_when_read(server, pipe, b"k" * 64)  # `serve`'s own check of the key
        poll(server, lambda: _starting_on(server, pipe), WAIT)
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(WAIT) == 0
        log = server.log_tail(200)
        assert "Started worker-1" not in log
        assert "refused to gracefully stop" not in log, log


def _write_when_read(server: Server, pipe: Path, data: bytes) -> None:
    """Write `data` into the named pipe once a reader has it open (polling, while the server
    lives, with a deadline: opening a pipe for writing waits for a reader otherwise)."""

    def opened() -> bool:
        try:
            fd = os.open(pipe, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as error:
            if error.errno == errno.ENXIO:  # no reader yet
                return False
            raise
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        return True

    poll(server, opened, WAIT)


def _starting_on(server: Server, pipe: Path) -> bool:
    """Whether the server's worker is blocked opening `pipe` (building its app)."""
    for worker in server.workers():
        if Path(f"/proc/{worker}/wchan").read_text().strip() == "wait_for_partner":
            return True
    return False


@contextmanager
def _create_waiting_on_a_lock(
    server: Server, key: str, path: str, assessment: str
) -> Iterator[tuple[list[Reply], threading.Thread]]:
    """While the block runs, a create of `assessment` is inside a worker, waiting on a write
    lock the test holds (SQLite's busy timeout); its answer is in the list once the block ends
    and the lock goes."""
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    answers: list[Reply] = []
    body = {"tenant": TENANT, "id": assessment, "area": "behaviour"}
    thread = threading.Thread(
        target=lambda: answers.append(server.post_json("/assessments", body, key, WAIT))
    )
    try:
        thread.start()
        poll(server, lambda: _waiting_for_the_lock(server), WAIT)
        yield answers, thread
    finally:
        lock.execute("ROLLBACK")
        lock.close()
        thread.join(WAIT)


def _waiting_for_the_lock(server: Server) -> bool:
    """Whether a worker is inside the create, blocked on the test's lock (SQLite's busy
    handler)."""
    return any(in_sqlite_busy_wait(worker) for worker in server.workers())


def _poll_refused(server: Server) -> None:
    """Poll until a new connection is refused (the server stopped listening), with a deadline."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        try:
            server.request("GET", "/healthz", timeout=2)
        except ConnectionRefusedError:
            return
        except OSError:
            pass
        time.sleep(0.01)
    raise AssertionError("the server still accepts connections after SIGTERM")


@pytest.mark.parametrize("inline", [True, False])
def test_decisions_are_answered_while_every_thread_waits_on_a_write_lock(
    sqlite_url: str, inline: bool
) -> None:
    """One worker with one thread; a create holds that thread, waiting on a write lock the test
    holds. Decisions run on the worker's event loop (DECISIONS_INLINE, the default), so
    /authorize is still answered; with the setting off it queues behind the create."""
    key = _store(sqlite_url)
    path = make_url(sqlite_url).database
    assert path is not None
    env = {f"{PREFIX}THREADS": "1", f"{PREFIX}DECISIONS_INLINE": str(inline).lower()}
    with serving(sqlite_url, workers=1, env=env) as server:
        with _create_waiting_on_a_lock(server, key, path, "held-1") as (answers, thread):
            try:
                decided: int | None = server.post_json("/authorize", QUESTION, key, 5).status
            except TimeoutError:
                decided = None
            assert thread.is_alive(), "the create still waits on the lock"
        assert [a.status for a in answers] == [201]
        assert decided == (200 if inline else None)
