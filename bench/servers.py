"""How the server was chosen: every candidate side by side, on throughput and on slow clients.

For each worker count (2 and 4), every candidate of bench/launch.py serves (a) the floor -- the
service's app plus a constant-JSON route (bench/floor.py) -- and (b) the product's POST /authorize
on one store (SQLite by default), all servers up at once and timed by wrk in interleaved rounds
(same connections, same duration). Then, per candidate, with `--slow` slow-header sockets held open
(a byte every second, never ending the headers), and then as many slow-body sockets (a
Content-Length announced, a byte of it every second), normal clients send POST /authorize: how
many are answered (200 within the timeout), the slowest answer, and how many slow sockets the
server closed meanwhile (each closed one is replaced at once: bench/slow.py).

    python -m bench.servers [--backend sqlite|postgres] [--workers 2,4] [--duration 4]
        [--rounds 2] [--slow 200] [--only NAME,NAME] [--quick]
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any

from bench import cli, http, internals, launch, table, wrk
from bench.cli import Progress
from bench.floor import PATH as CONSTANT_PATH
from bench.server import Server, api_headers, create_api_key, serving
from bench.slow import Probe, authorize_requests, probe, slow_clients
from bench.store import Content, temporary_store
from bench.wrk import Load, WrkResult

BASELINE = "gunicorn sync"
COLUMNS = table.columns(
    "| server | workers | constant req/s | vs sync | authorize req/s | vs sync "
    "| authorize vs floor | authorize p99 ms | slow headers: answered | slowest ms "
    "| closed | slow bodies: answered | slowest ms | closed | survives |"
)


@dataclass(frozen=True)
class Options:
    """Worker counts, wrk settings, slow sockets and the normal clients beside them."""

    backend: str = "sqlite"
    workers: tuple[int, ...] = (2, 4)
    candidates: tuple[str, ...] = tuple(launch.CANDIDATES)
    connections: int = 8
    duration: float = 4.0
    rounds: int = 2
    warmup: float = 1.0
    tenants: int = 100
    slow: int = 200
    """Slow sockets of each kind."""
    probes: int = 12
    """Normal POST /authorize requests sent beside each kind of slow socket."""
    probe_clients: int = 4
    probe_timeout: float = 3.0
    settle: float = 2.0
    """Seconds the slow sockets trickle before the normal clients start."""


QUICK: dict[str, Any] = {
    "workers": (1,),
    "duration": 1.0,
    "rounds": 1,
    "warmup": 0.0,
    "tenants": 5,
    "slow": 5,
    "probes": 4,
    "settle": 1.0,
}


@dataclass(frozen=True)
class Survival:
    """Normal clients beside one kind of slow socket, and how many the server closed."""

    probe: Probe
    closed: int


@dataclass(frozen=True)
class Row:
    """One candidate at one worker count."""

    server: str
    workers: int
    constant: WrkResult
    authorize: WrkResult
    headers: Survival
    bodies: Survival

    @property
    def survives(self) -> bool:
        """Every normal request answered beside both kinds of slow socket."""
        return self.headers.probe.success == 1.0 and self.bodies.probe.success == 1.0


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the table; 1 if a wrk run had errors on the baseline (a broken setup)."""
    return cli.main(parse_args(argv), run, render, failed)


def failed(rows: Sequence[Row]) -> bool:
    """Whether the baseline itself failed to answer wrk (the rest is the table's to judge)."""
    return any(r.server == BASELINE and (r.constant.errors or r.authorize.errors) for r in rows)


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = cli.parser("bench.servers", __doc__)
    count = cli.positive(int)
    cli.add_backend(parser, both=False)
    parser.add_argument("--workers", help="comma-separated worker counts (default 2,4)")
    parser.add_argument("--duration", type=cli.positive(float), help="seconds per wrk run (4)")
    parser.add_argument("--rounds", type=count, help="timed runs per server, interleaved (2)")
    parser.add_argument("--slow", type=count, help="slow sockets of each kind (default 200)")
    parser.add_argument("--only", help="comma-separated candidates (default: all)")
    args = parser.parse_args(argv)
    cli.require_wrk(parser)
    cli.backends(parser, args.backend)  # a usage error when PostgreSQL is asked and unreachable
    workers = args.workers
    args.workers = None if workers is None else cli.tenant_counts(parser, workers)
    options = cli.options(Options(), QUICK, args)
    if args.only:
        chosen = tuple(c.strip() for c in args.only.split(","))
        unknown = [c for c in chosen if c not in launch.CANDIDATES]
        if unknown:
            parser.error(f"unknown candidates {unknown}; known: {', '.join(launch.CANDIDATES)}")
        options = replace(options, candidates=tuple(dict.fromkeys((BASELINE, *chosen))))
    return options


def run(options: Options, progress: Progress = lambda _: None) -> list[Row]:
    """Every worker count in turn: all servers up, timed, then each one's slow clients."""
    content = Content(internals.workflow(), options.tenants, 5)
    mix = http.Options(tenants=options.tenants, working_set=options.tenants, bodies=500)
    singles, _ = http.make_mix(content, replace(mix, batches=0))
    rows: list[Row] = []
    with temporary_store(options.backend, content) as store:
        key = create_api_key(store.url)
        single = Load(
            "POST", "/authorize", api_headers(key), tuple(json.dumps(b) for b, _ in singles)
        )
        constant = Load("GET", CONSTANT_PATH, {})
        question = dict(singles[0][0])
        for workers in options.workers:
            with ExitStack() as stack:
                servers: dict[tuple[str, str], Server] = {}
                for name in options.candidates:
                    progress(f"{workers} workers: starting {name}")
                    for app in launch.APPS:
                        command = launch.command(name, app)
                        servers[name, app] = stack.enter_context(
                            serving(store.url, workers=workers, command=command)
                        )
                timed = _timed(servers, {"floor": constant, "product": single}, options, progress)
                for name in options.candidates:
                    progress(f"{workers} workers: slow clients against {name}")
                    server = servers[name, "product"]
                    headers = _survival(server, key, question, options, slow_headers=True)
                    bodies = _survival(server, key, question, options, slow_headers=False)
                    rows.append(
                        Row(
                            name,
                            workers,
                            timed[name, "floor"],
                            timed[name, "product"],
                            headers,
                            bodies,
                        )
                    )
    return rows


def _timed(
    servers: dict[tuple[str, str], Server],
    loads: dict[str, Load],
    options: Options,
    progress: Progress,
) -> dict[tuple[str, str], WrkResult]:
    """A warm-up of every server, then `rounds` rounds of one wrk run each, in a shuffled order
    per round (a burst from elsewhere on the machine lands on no candidate in particular)."""

    def load(target: tuple[str, str], seconds: float) -> WrkResult:
        server = servers[target]
        output = wrk.run(
            server.url, loads[target[1]], connections=options.connections, seconds=seconds
        )
        return wrk.parse_wrk(output)

    order = list(servers)
    if options.warmup > 0:
        for target in order:
            load(target, options.warmup)
    runs: dict[tuple[str, str], list[WrkResult]] = {t: [] for t in order}
    rng = random.Random("servers")
    for number in range(options.rounds):
        progress(f"round {number + 1} of {options.rounds}")
        rng.shuffle(order)
        for target in order:
            runs[target].append(load(target, options.duration))
    return {t: wrk.median_result(r) for t, r in runs.items()}


def _survival(
    server: Server, key: str, question: dict[str, Any], options: Options, *, slow_headers: bool
) -> Survival:
    """Normal clients beside `slow` sockets of one kind, held open for the whole probe."""
    headers, bodies = (options.slow, 0) if slow_headers else (0, options.slow)
    with slow_clients(server.port, key, headers, bodies) as slow:
        time.sleep(options.settle)  # not synchronisation: the attack's own pace (a byte a second)
        requests = authorize_requests(key, question, options.probes)
        got = probe(server.port, requests, options.probe_clients, options.probe_timeout)
        closed = sum(slow.counts.closed.values()) + slow.counts.refused
    return Survival(got, closed)


# -- the table -----------------------------------------------------------------------------------


def render(rows: Sequence[Row], options: Options) -> str:
    """One table, a row per candidate and worker count, the verdict and how it was measured."""
    return table.render(COLUMNS, [_cells(r, rows) for r in rows], _legend(rows, options))


def _cells(row: Row, rows: Sequence[Row]) -> list[str]:
    base = next(r for r in rows if r.server == BASELINE and r.workers == row.workers)
    return [
        row.server,
        str(row.workers),
        f"{row.constant.per_second:,.0f}",
        f"{row.constant.per_second / base.constant.per_second:.2f}",
        f"{row.authorize.per_second:,.0f}"
        + (f" ({row.authorize.errors} err)" if row.authorize.errors else ""),
        f"{row.authorize.per_second / base.authorize.per_second:.2f}",
        f"{row.authorize.per_second / base.constant.per_second:.2f}",
        f"{row.authorize.p99_us / 1000:.2f}",
        *_survival_cells(row.headers),
        *_survival_cells(row.bodies),
        "yes" if row.survives else "NO",
    ]


def _survival_cells(survival: Survival) -> list[str]:
    got = survival.probe
    slowest = f"{max(got.latencies) * 1000:.0f}" if got.latencies else "—"
    return [f"{len(got.latencies)}/{got.sent}", slowest, str(survival.closed)]


def winner(rows: Sequence[Row]) -> str | None:
    """The candidate that survives at every worker count with the highest median authorize
    rate relative to gunicorn sync; None if none survives."""
    names = dict.fromkeys(r.server for r in rows)
    surviving = [n for n in names if all(r.survives for r in rows if r.server == n)]

    def score(name: str) -> float:
        ratios = []
        for r in rows:
            if r.server == name:
                base = next(b for b in rows if b.server == BASELINE and b.workers == r.workers)
                ratios.append(r.authorize.per_second / base.authorize.per_second)
        return statistics.median(ratios)

    return max(surviving, key=score, default=None)


def _legend(rows: Sequence[Row], options: Options) -> list[str]:
    chosen = winner(rows)
    return [
        f"Store: {options.backend}. Winner (survives every slow-client run, then the highest "
        f"authorize rate vs {BASELINE}): {chosen or 'none'}.",
        f"wrk: 1 thread, {options.connections} connections, {options.rounds} rounds of "
        f"{options.duration:g} s per server after a {options.warmup:g} s warm-up, interleaved in a "
        "shuffled order; req/s and p99 are the median of the rounds. vs sync: against gunicorn "
        "sync at the same worker count; authorize vs floor: against gunicorn sync's constant "
        "JSON (issue 12's floor).",
        f"Slow clients: {options.slow} sockets of one kind held open (a byte every second; a "
        f"socket the server closes is replaced at once; `closed` counts those and refused "
        f"connects), then {options.probes} POST /authorize from {options.probe_clients} threads, "
        f"a connection each, {options.probe_timeout:g} s timeout; answered = 200 in time.",
        "Candidates (bench/launch.py): gunicorn sync; gunicorn gthread with "
        f"{launch.GTHREAD_THREADS} threads; granian's WSGI interface with its defaults; granian "
        "(ASGI) over service/buffered.py, as `workflow-authz serve` runs it (buffered: 4 "
        "threads; inline: THREADS=0, on the event loop's thread); uvicorn (uvloop, "
        f"httptools) with a2wsgi ({launch.A2WSGI_THREADS} threads); waitress ("
        f"{launch.WAITRESS_THREADS} threads) in as many forked processes.",
    ]


if __name__ == "__main__":
    sys.exit(main())
