"""Hostile load: normal clients' POST /authorize beside slow clients, against the idle service.

One real `workflow-authz serve` on a store of its own. The same normal clients (`--clients`
threads, a connection per request, `--requests` in all) ask one allowed question twice: against
the idle service, then with `--slow` slow-header and `--slow` slow-body sockets held open beside
them (bench/slow.py: a byte every second; every socket the server closes is replaced at once, so
the pressure stays on for the whole run, and how many it closed is reported). After the hostile
run the slow sockets still open are counted: the run only counts if they were held to its end.
Target: every request answered (200), and p99 within 3x of idle.

    python -m bench.hostile [--backend sqlite|postgres] [--workers 2] [--slow 200]
        [--clients 8] [--requests 2000] [--quick]

--quick (CI): fewer sockets and requests; only the success rate and the held sockets count.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench import cli, internals, table
from bench.cli import Progress
from bench.server import Server, create_api_key, serving
from bench.slow import Probe, SlowCounts, authorize_requests, probe, slow_clients
from bench.store import Content, temporary_store

TARGET_SUCCESS = 1.0
TARGET_P99_RATIO = 3.0
QUESTION = {"role": "parent", "action": "view", "area": "behaviour", "phase": "completed"}
"""Allowed by the default policy of every generated tenant."""
COLUMNS = table.columns(
    "| load | slow-header held | slow-body held | closed by server | requests | answered "
    f"| success (={TARGET_SUCCESS:.0%}) | p50 ms | p99 ms | p99 vs idle (≤{TARGET_P99_RATIO:g}×) |"
)


@dataclass(frozen=True)
class Options:
    """Server, slow sockets and the normal clients."""

    backend: str = "sqlite"
    workers: int = 2
    slow: int = 200
    """Slow sockets of each kind."""
    clients: int = 8
    requests: int = 2000
    timeout: float = 10.0
    """Seconds a normal request may take before it counts as failed."""
    settle: float = 2.0
    """Seconds the slow sockets trickle before the normal clients start."""
    timed: bool = True
    """Whether the table judges p99 (not in --quick: a tiny run's p99 says nothing)."""


QUICK: dict[str, Any] = {"workers": 1, "slow": 20, "clients": 4, "requests": 100, "timed": False}


@dataclass(frozen=True)
class Run:
    """One row: the normal clients' figures and, beside them, the slow sockets' fate."""

    load: str
    probe: Probe
    wanted: int
    held: dict[str, int]
    counts: SlowCounts | None


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the table; 1 if a normal request failed or a slow socket was not held to the
    end (timings decide only the table's verdict, and only outside --quick)."""
    return cli.main(parse_args(argv), run, render, failed)


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = cli.parser("bench.hostile", __doc__)
    cli.add_backend(parser, both=False)
    count = cli.positive(int)
    parser.add_argument("--workers", type=count, help="server worker processes (default 2)")
    parser.add_argument("--slow", type=count, help="slow sockets of each kind (default 200)")
    parser.add_argument("--clients", type=count, help="normal client threads (default 8)")
    parser.add_argument("--requests", type=count, help="normal requests per run (default 2000)")
    args = parser.parse_args(argv)
    cli.backends(parser, args.backend)  # a usage error when PostgreSQL is asked and unreachable
    return cli.options(Options(), QUICK, args)


def run(options: Options, progress: Progress = lambda _: None) -> list[Run]:
    """One server: the normal clients idle, then beside the slow sockets."""
    content = Content(internals.workflow(), 1, 1)
    with temporary_store(options.backend, content) as store:
        key = create_api_key(store.url)
        question = {"tenant": content.tenant(0), **QUESTION}
        requests = authorize_requests(key, question, options.requests)
        with serving(store.url, workers=options.workers) as server:
            progress("warm-up, then the normal clients against the idle service")
            probe(server.port, requests[: options.clients * 10], options.clients, options.timeout)
            idle = probe(server.port, requests, options.clients, options.timeout)
            progress(f"{options.slow} slow-header and {options.slow} slow-body sockets, then again")
            hostile = _beside_slow(server, key, requests, options)
    return [Run("idle", idle, 0, {"headers": 0, "body": 0}, None), hostile]


def _beside_slow(
    server: Server,
    key: str,
    requests: list[tuple[str, str, bytes | None, dict[str, str]]],
    options: Options,
) -> Run:
    with slow_clients(server.port, key, options.slow, options.slow) as slow:
        time.sleep(options.settle)  # the attack's own pace (a byte a second), not a wait for state
        got = probe(server.port, requests, options.clients, options.timeout)
        held = slow.held()
        counts = slow.counts
    return Run(f"{options.slow} + {options.slow} slow sockets", got, options.slow, held, counts)


def failed(runs: Sequence[Run]) -> bool:
    """A normal request unanswered, or a slow socket not held to the end of the hostile run."""
    return any(r.probe.success < TARGET_SUCCESS or _lost(r) for r in runs)


def _lost(run: Run) -> bool:
    return any(n < run.wanted for n in run.held.values())


def render(runs: Sequence[Run], options: Options) -> str:
    """One table, idle then hostile, and how it was measured."""
    idle = runs[0].probe.quantile(0.99)
    rows = []
    for r in runs:
        closed = "—" if r.counts is None else str(sum(r.counts.closed.values()) + r.counts.refused)
        ratio = r.probe.quantile(0.99) / idle
        rows.append(
            [
                r.load,
                f"{r.held['headers']}/{r.wanted}" if r.wanted else "—",
                f"{r.held['body']}/{r.wanted}" if r.wanted else "—",
                closed,
                str(r.probe.sent),
                str(len(r.probe.latencies)),
                f"{r.probe.success:.1%} {table.met(r.probe.success >= TARGET_SUCCESS)}",
                f"{r.probe.quantile(0.5) * 1000:.2f}",
                f"{r.probe.quantile(0.99) * 1000:.2f}",
                table.at_most(ratio, TARGET_P99_RATIO) if options.timed else "—",
            ]
        )
    legend = [
        f"One `workflow-authz serve --workers {options.workers}` on {options.backend}; normal "
        f"clients: {options.clients} threads, a connection per POST /authorize, "
        f"{options.requests} requests per run, {options.timeout:g} s timeout (answered = 200).",
        f"Slow sockets (bench/slow.py): {options.slow} sending headers a byte a second, "
        f"{options.slow} sending a body of {100_000:,} bytes announced a byte a second; opened "
        f"{options.settle:g} s before the normal clients; each one the server closes is replaced "
        "at once ('closed by server'); 'held' counts those still open when the normal clients "
        "finished.",
    ]
    return table.render(COLUMNS, rows, legend)


if __name__ == "__main__":
    sys.exit(main())
