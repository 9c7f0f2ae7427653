"""Floods beside the API: POST /authorize's latency idle, during a flood of wrong admin logins and
during a flood of bad API keys, against a real `workflow-authz serve` on a SQLite store of its own.

The probe is wrk on one connection asking one allowed question with a valid key. Each flood is
`--threads` Python threads sending from another loopback address (127.0.0.2) on a connection per
request, as an attacker's script would: wrong logins through the form (its CSRF token and cookie,
a fresh random username and password each time), POST /authorize with a random key, or, for
reference, GET /healthz (what any flood costs). The target: /authorize's
median during a flood within 2x of idle.

    python -m bench.login_flood [--workers 2] [--threads 10] [--connections 1] [--duration 10]
        [--storage redis://127.0.0.1:6379/0] [--quick]
"""

from __future__ import annotations

import http.client
import json
import re
import secrets
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from bench import cli, internals, table, wrk
from bench.cli import Progress
from bench.server import HOST, Reply, Server, api_headers, create_admin, create_api_key, serving
from bench.wrk import Load, WrkResult

TARGET_RATIO = 2.0
FLOOD_ADDRESS = "127.0.0.2"
"""Where the floods come from: another client than the probe (the loopback answers all of
127/8)."""
QUESTION = {"role": "parent", "action": "view", "area": "behaviour", "phase": "completed"}
CSRF = re.compile(r'name="csrf_token"\s+value="([^"]+)"')
COLUMNS = table.columns(
    "| load beside the probe | flood requests | flood answers | authorize p50 ms | p99 ms "
    f"| probe errors | p50 vs idle (≤{TARGET_RATIO:g}×) |"
)


@dataclass(frozen=True)
class Options:
    """Server, probe and flood settings."""

    workers: int = 2
    threads: int = 10
    connections: int = 1
    """wrk connections of the probe."""
    duration: float = 10.0
    """Seconds of each timed wrk run."""
    storage: str = "memory://"
    """WORKFLOW_AUTHZ_RATE_LIMIT_STORAGE of the server."""


QUICK: dict[str, Any] = {"workers": 1, "threads": 2, "duration": 1.0}


@dataclass
class Flood:
    """What one flood sent and how it was answered."""

    statuses: Counter[int] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, status: int) -> None:
        with self.lock:
            self.statuses[status] += 1


@dataclass(frozen=True)
class Result:
    """One row: the load beside the probe, the probe's figures, the flood's answers."""

    load: str
    probe: WrkResult
    flood: Counter[int]


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the table; 1 if the probe got an error or a flood a 5xx (timings never fail
    the run: the table says whether each met its target)."""
    return cli.main(parse_args(argv), run, render, failed)


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = cli.parser("bench.login_flood", __doc__)
    count = cli.positive(int)
    parser.add_argument("--workers", type=count, help="server worker processes (default 2)")
    parser.add_argument("--threads", type=count, help="threads of each flood (default 10)")
    parser.add_argument("--connections", type=count, help="the probe's connections (default 1)")
    parser.add_argument("--duration", type=cli.positive(float), help="seconds per run (10)")
    parser.add_argument("--storage", help="the limits' storage (default memory://)")
    args = parser.parse_args(argv)
    cli.require_wrk(parser)
    return cli.options(Options(), QUICK, args)


def run(options: Options, progress: Progress = lambda _: None) -> list[Result]:
    """One server; the probe alone, then beside each flood."""
    with tempfile.TemporaryDirectory(prefix="wa_flood_") as folder:
        url = f"sqlite:///{Path(folder) / 'store.sqlite3'}"
        internals.migrate(url)
        local = internals.Local.open(url)
        try:
            local.create_tenant("default", "flood-1", QUESTION["area"])
        finally:
            local.close()
        key = create_api_key(url, "default")
        create_admin(url)
        env = {"WORKFLOW_AUTHZ_RATE_LIMIT_STORAGE": options.storage}
        with serving(url, workers=options.workers, env=env) as server:
            probe = Load("POST", "/authorize", api_headers(key), (json.dumps(QUESTION),))
            floods: dict[str, Callable[[Server, threading.Event, Flood], None]] = {
                "nothing (idle)": _nothing,
                "wrong admin logins": _wrong_logins,
                "bad API keys": _bad_keys,
                "GET /healthz (reference)": _health_checks,
            }
            return [_measured(server, probe, n, f, options, progress) for n, f in floods.items()]


def _measured(
    server: Server,
    probe: Load,
    name: str,
    flood: Callable[[Server, threading.Event, Flood], None],
    options: Options,
    progress: Progress,
) -> Result:
    """The probe's wrk run with the flood's threads beside it."""
    progress(f"probe beside {name}")
    sent = Flood()
    beside = [lambda stop: flood(server, stop, sent) for _ in range(options.threads)]
    output = wrk.run(
        server.url, probe, connections=options.connections, seconds=options.duration, beside=beside
    )
    return Result(name, wrk.parse_wrk(output), sent.statuses)


def _nothing(_server: Server, _stop: threading.Event, _flood: Flood) -> None:
    """No flood: the probe alone."""


def _wrong_logins(server: Server, stop: threading.Event, flood: Flood) -> None:
    """Wrong logins through the form, each a fresh username and password, until `stop`."""
    page = _send(server, "GET", "/admin/login")
    cookie = page.headers.get("set-cookie", "").split(";", 1)[0]
    token = CSRF.search(page.body.decode())
    if token is None:
        raise RuntimeError("the login page carries no CSRF token")
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": cookie}
    while not stop.is_set():
        form = {
            "csrf_token": token.group(1),
            "username": f"guess-{secrets.token_hex(4)}",
            "password": secrets.token_urlsafe(12),
        }
        flood.count(_send(server, "POST", "/admin/login", urlencode(form).encode(), headers).status)


def _bad_keys(server: Server, stop: threading.Event, flood: Flood) -> None:
    """POST /authorize with a random key each time, until `stop`."""
    body = json.dumps(QUESTION).encode()
    while not stop.is_set():
        key = f"wa_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}"
        flood.count(_send(server, "POST", "/authorize", body, api_headers(key)).status)


def _health_checks(server: Server, stop: threading.Event, flood: Flood) -> None:
    """GET /healthz, the cheapest request there is, until `stop`: what any flood costs."""
    while not stop.is_set():
        flood.count(_send(server, "GET", "/healthz").status)


def _send(
    server: Server,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request from FLOOD_ADDRESS on a connection of its own (sync workers close it)."""
    conn = http.client.HTTPConnection(
        HOST, server.port, timeout=30, source_address=(FLOOD_ADDRESS, 0)
    )
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()


def _idle(results: Sequence[Result]) -> WrkResult:
    return results[0].probe


def failed(results: Sequence[Result]) -> bool:
    """Whether the probe got an error (anything but its answer) or a flood a 5xx."""
    return any(r.probe.errors or any(s >= 500 for s in r.flood) for r in results)


def render(results: Sequence[Result], options: Options) -> str:
    """One table, a row per load, then how the figures were taken."""
    idle = _idle(results).p50_us
    rows = [
        [
            r.load,
            str(sum(r.flood.values())),
            ", ".join(f"{n}×{s}" for s, n in sorted(r.flood.items())) or "-",
            f"{r.probe.p50_us / 1000:.2f}",
            f"{r.probe.p99_us / 1000:.2f}",
            str(r.probe.errors),
            table.at_most(r.probe.p50_us / idle, TARGET_RATIO),
        ]
        for r in results
    ]
    legend = [
        f"One `workflow-authz serve --workers {options.workers}` on SQLite, limits in "
        f"{options.storage}; loopback HTTP. Probe: wrk, {options.connections} connection(s), "
        f"{options.duration:g} s, POST /authorize with a valid key.",
        f"Floods: {options.threads} threads from {FLOOD_ADDRESS}, a connection per request: wrong "
        "form logins (random usernames, CSRF token and cookie), random API keys, or GET /healthz: "
        "a flood of the cheapest request, what any flood costs.",
    ]
    return table.render(COLUMNS, rows, legend)


if __name__ == "__main__":
    sys.exit(main())
