"""HTTP benchmark: wrk against `workflow-authz serve` (granian) and the Flask + gunicorn floor.

In one run, with the same worker count and wrk settings for every row:
  constant   GET /bench/constant from bench/floor.py: the service's app plus a view that returns
             a constant JSON object, served by gunicorn with sync workers -- the floor issue 12
             sets the targets against (a hand-written Flask service as it is usually deployed);
  authorize  authenticated POST /authorize with the `assessment` form, spread over many
             tenants and assessments (every answer of a sample is checked first), served by
             `workflow-authz serve` on as many worker processes;
  batch      POST /authorize/batch with 100 questions per request (one tenant per batch).
Figures: requests/s and p50/p99 latency from wrk (p99 beside every figure); decisions/s;
authorize/constant throughput (target >= 1.0 on SQLite, >= 0.8 on PostgreSQL) and batch/single
decisions per second (target >= 20).

    python -m bench.http [--backend sqlite|postgres|both] [--workers 4] [--duration 5] [--quick]
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any

from bench import cli, internals, table, wrk
from bench.cli import Progress
from bench.floor import PATH as CONSTANT_PATH
from bench.server import (
    Server,
    api_headers,
    batch_body,
    create_api_key,
    serving,
    wrong_answers,
    wrong_batch_answers,
)
from bench.store import BACKENDS, Asked, Content, temporary_store
from bench.wrk import Load, WrkResult

TARGET_FLOOR_RATIO = {"sqlite": 1.0, "postgres": 0.8}
"""POST /authorize's rate over the floor's, per store (issue 12)."""
TARGET_BATCH_RATIO = 20.0
FLOOR_COMMAND = (sys.executable, "-m", "bench.floor")
COLUMNS = table.columns(
    "| endpoint | backend | workers | conns | requests | req/s | decisions/s "
    "| p50 ms | p99 ms | errors | vs constant (≥1 SQLite, ≥0.8 PostgreSQL) "
    f"| batch/single (≥{TARGET_BATCH_RATIO:g}) |"
)


@dataclass(frozen=True)
class Options:
    """What to run: stores, server and wrk settings, and the request mix."""

    backends: tuple[str, ...] = BACKENDS
    tenants: int = 1000
    working_set: int = 500
    """Tenants the requests spread over (all fit in the policy cache)."""
    assessments_per_tenant: int = 20
    workers: int = 4
    connections: int = 8
    duration: float = 5.0
    """Seconds of one timed wrk run; every endpoint gets `rounds` of them, interleaved."""
    rounds: int = 3
    warmup: float = 2.0
    bodies: int = 2000
    """Distinct POST /authorize bodies wrk cycles through."""
    batch_size: int = 100
    batches: int = 100
    checked: int = 100
    """Single questions whose answers are checked against the generated policy before timing."""
    seed: str = "http"


QUICK: dict[str, Any] = {
    "tenants": 5,
    "working_set": 5,
    "assessments_per_tenant": 5,
    "workers": 1,
    "connections": 2,
    "duration": 1.0,
    "rounds": 1,
    "warmup": 0.0,
    "bodies": 50,
    "batches": 5,
    "checked": 10,
}
"""A tiny run for tests: few tenants, one-second wrk runs."""


@dataclass(frozen=True)
class Endpoint:
    """One row's target: a running server, the load wrk puts on it, what each request decides,
    and how many of its answers checked before timing were wrong."""

    name: str
    backend: str
    server: Server
    load: Load
    decisions_per_request: int = 1
    wrong_answers: int = 0


Row = tuple[Endpoint, WrkResult]
"""One table row: an endpoint, and what wrk measured (the median of its rounds)."""


def decisions_per_second(row: Row) -> float:
    """A row's decisions per second: requests per second times the questions in each."""
    endpoint, result = row
    return result.per_second * endpoint.decisions_per_request


def main(argv: Sequence[str] | None = None) -> int:
    """Run every row, print the table; 1 if any checked answer was wrong or any request failed."""
    return cli.main(
        parse_args(argv),
        run,
        render,
        lambda rows: any(e.wrong_answers or w.errors for e, w in rows),
    )


def parse_args(argv: Sequence[str] | None) -> Options:
    """Options from the command line; PostgreSQL is dropped from `both` when unreachable."""
    parser = cli.parser("bench.http", __doc__)
    cli.add_backend(parser)
    count, seconds = cli.positive(int), cli.positive(float)
    parser.add_argument("--workers", type=count, help="worker processes of each server (4)")
    parser.add_argument("--connections", type=count, help="wrk connections (default 8)")
    parser.add_argument("--duration", type=seconds, help="seconds per timed wrk run (default 5)")
    parser.add_argument("--rounds", type=count, help="timed runs per row, interleaved (default 3)")
    parser.add_argument("--tenants", type=count, help="tenants in the store (default 1000)")
    args = parser.parse_args(argv)
    cli.require_wrk(parser)
    options = cli.options(Options(cli.backends(parser, args.backend)), QUICK, args)
    return replace(options, working_set=min(options.working_set, options.tenants))


def run(options: Options, progress: Progress = lambda _: None) -> list[Row]:
    """Start every server (the floor, one per backend), then time them in interleaved rounds."""
    # Every server stays up for the whole run and only one is loaded at a time, so a burst of
    # load from elsewhere on this machine lands on every row alike instead of skewing one ratio.
    content = Content(internals.workflow(), options.tenants, options.assessments_per_tenant)
    singles, batches = make_mix(content, options)
    with ExitStack() as stack:
        endpoints: list[Endpoint] = []
        for backend in options.backends:
            progress(f"{backend}: populating {options.tenants} tenants, starting the servers")
            store = stack.enter_context(temporary_store(backend, content))
            if not endpoints:
                floor = stack.enter_context(
                    serving(store.url, workers=options.workers, command=FLOOR_COMMAND)
                )
                reply = floor.request("GET", CONSTANT_PATH)  # its answer is checked once
                wrong = int(reply.status != 200 or reply.json().get("allowed") is not True)
                load = Load("GET", CONSTANT_PATH, {})
                endpoints.append(Endpoint("constant", "—", floor, load, wrong_answers=wrong))
            server = stack.enter_context(serving(store.url, workers=options.workers))
            key = create_api_key(store.url)
            wrong = wrong_answers(server, key, singles[: options.checked])
            wrong_batch = sum(wrong_batch_answers(server, key, items) for items in batches[:3])
            bodies = tuple(json.dumps(body) for body, _ in singles)
            single = Load("POST", "/authorize", api_headers(key), bodies)
            bodies = tuple(json.dumps(batch_body(items)) for items in batches)
            batch = Load("POST", "/authorize/batch", api_headers(key), bodies)
            size = options.batch_size
            endpoints.append(Endpoint("authorize", backend, server, single, 1, wrong))
            endpoints.append(Endpoint(f"batch ×{size}", backend, server, batch, size, wrong_batch))
        return measure(endpoints, options, progress)


def make_mix(content: Content, options: Options) -> tuple[list[Asked], list[list[Asked]]]:
    """Single questions over a working set of tenants; batches each about one of those tenants."""
    rng = random.Random(f"{options.seed}:{content.tenants}")
    working = content.working(rng, options.working_set)
    singles = content.questions(rng, working, options.bodies)
    batches = []
    for _ in range(options.batches):
        index = rng.choice(working)
        batches.append([content.question(rng, index) for _ in range(options.batch_size)])
    return singles, batches


def measure(endpoints: Sequence[Endpoint], options: Options, progress: Progress) -> list[Row]:
    """A warm-up run of each endpoint, then `rounds` rounds with one timed run of each."""

    def load(e: Endpoint, seconds: float) -> WrkResult:
        output = wrk.run(e.server.url, e.load, connections=options.connections, seconds=seconds)
        return wrk.parse_wrk(output)

    if options.warmup > 0:
        progress("warm-up: every endpoint")
        for e in endpoints:
            load(e, options.warmup)
    timed: list[list[WrkResult]] = [[] for _ in endpoints]
    for number in range(options.rounds):
        progress(f"round {number + 1} of {options.rounds}: every endpoint")
        for e, runs in zip(endpoints, timed, strict=True):
            runs.append(load(e, options.duration))
    return [(e, wrk.median_result(runs)) for e, runs in zip(endpoints, timed, strict=True)]


# -- the table -----------------------------------------------------------------------------------


def render(rows: Sequence[Row], options: Options) -> str:
    """One table, a row per endpoint and backend, then how the figures were taken."""
    return table.render(COLUMNS, [_cells(r, rows, options) for r in rows], _legend(options))


def _cells(row: Row, rows: Sequence[Row], options: Options) -> list[str]:
    e, w = row
    by_name = {(r[0].name, r[0].backend): r for r in rows}
    floor, single = by_name.get(("constant", "—")), by_name.get(("authorize", e.backend))
    vs_floor = vs_single = "—"
    if e.name == "authorize" and floor is not None:
        target = TARGET_FLOOR_RATIO[e.backend]
        vs_floor = table.at_least(w.per_second / floor[1].per_second, target)
    if e.name.startswith("batch") and single is not None:
        ratio = decisions_per_second(row) / decisions_per_second(single)
        vs_single = table.at_least(ratio, TARGET_BATCH_RATIO)
    errors = f"{w.errors}" + (f", {e.wrong_answers} wrong" if e.wrong_answers else "")
    return [
        e.name,
        e.backend,
        str(options.workers),
        str(options.connections),
        f"{w.requests:,}",
        f"{w.per_second:,.0f}",
        f"{decisions_per_second(row):,.0f}",
        f"{w.p50_us / 1000:.2f}",
        f"{w.p99_us / 1000:.2f}",
        errors,
        vs_floor,
        vs_single,
    ]


def _legend(options: Options) -> list[str]:
    """What the rows mean and how they were measured, printed under the table."""
    return [
        f"wrk (1 thread, {options.connections} connections) against servers of "
        f"{options.workers} worker processes on 127.0.0.1 (the floor: gunicorn sync; the "
        "product: `workflow-authz serve`, granian); every server up for the whole run; after "
        f"a {options.warmup:g} s warm-up each, {options.rounds} rounds of one {options.duration:g} "
        "s run per row; req/s, p50 and p99 (wrk's histogram) are the median of the rounds.",
        "constant: GET /bench/constant, a constant JSON object from the service's app plus one "
        "bench route (bench/floor.py) on Flask + gunicorn sync workers -- the floor.",
        f"authorize: POST /authorize {{tenant, role, action, assessment}} with an all-tenant key, "
        f"cycling {options.bodies} bodies over {options.working_set} of {options.tenants} "
        f"tenants ({options.assessments_per_tenant} assessments each); {options.checked} answers "
        "checked against the generated policy first.",
        f"batch: POST /authorize/batch, {options.batch_size} questions about one tenant per "
        f"request, cycling {options.batches} bodies; decisions/s = req/s x {options.batch_size}.",
        "errors: wrk's connect/read/write/timeout errors and non-2xx answers (plus wrong "
        "answers among the checked ones).",
    ]


if __name__ == "__main__":
    sys.exit(main())
