"""HTTP benchmark: wrk against `workflow-authz serve` (gunicorn, sync workers) on this machine.

In one run, with the same worker count and wrk settings for every row:
  constant   GET /bench/constant from bench/floor.py: the service's app and gunicorn settings
             with a view that returns a constant JSON object -- the framework's floor;
  authorize  authenticated POST /authorize with the `assessment` form, spread over many
             tenants and assessments (every answer of a sample is checked first);
  batch      POST /authorize/batch with 100 questions per request (one tenant per batch).
Figures: requests/s and p50/p99 latency from wrk; decisions/s; authorize/constant throughput
(target >= 0.6) and batch/single decisions per second (target >= 10).

    python -m bench.http [--backend sqlite|postgres|both] [--workers 4] [--duration 5] [--quick]
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench import cli, internals, table, wrk
from bench.cli import Progress
from bench.floor import PATH as CONSTANT_PATH
from bench.server import Server, api_headers, create_api_key, serving, wrong_answers
from bench.store import BACKENDS, Body, Content, Store, temporary_store
from bench.wrk import Load, WrkResult

TARGET_FLOOR_RATIO = 0.6
TARGET_BATCH_RATIO = 10.0
FLOOR_COMMAND = (sys.executable, "-m", "bench.floor")
COLUMNS = table.columns(
    "| endpoint | backend | workers | conns | requests | req/s | decisions/s "
    f"| p50 ms | p99 ms | errors | vs constant (≥{TARGET_FLOOR_RATIO:g}) "
    f"| batch/single (≥{TARGET_BATCH_RATIO:g}) |"
)
Question = tuple[Body, bool]
"""A POST /authorize body and the answer the generated policy gives it."""


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
class Row:
    """One table row: an endpoint on a backend, and what wrk measured."""

    endpoint: str
    backend: str
    decisions_per_request: int
    wrk: WrkResult
    wrong_answers: int = 0

    @property
    def decisions_per_second(self) -> float:
        """Decisions per second: requests per second times the questions in each."""
        return self.wrk.per_second * self.decisions_per_request


@dataclass(frozen=True)
class Endpoint:
    """One row's target: a running server, the wrk script that loads it, what it decides."""

    name: str
    backend: str
    server: Server
    script: Path
    decisions_per_request: int
    wrong_answers: int


@dataclass(frozen=True)
class Mix:
    """Generated questions with the answers the generated policy gives them."""

    singles: list[Question]
    batches: list[list[Question]]


def main(argv: Sequence[str] | None = None) -> int:
    """Run every row, print the table; 1 if any checked answer was wrong or any request failed."""
    return cli.main(
        parse_args(argv), run, render, lambda rs: any(r.wrong_answers or r.wrk.errors for r in rs)
    )


def parse_args(argv: Sequence[str] | None) -> Options:
    """Options from the command line; PostgreSQL is dropped from `both` when unreachable."""
    parser = cli.parser("bench.http", __doc__)
    cli.add_backend(parser)
    parser.add_argument("--workers", type=int, help="gunicorn sync workers (default 4)")
    parser.add_argument("--connections", type=int, help="wrk connections (default 8)")
    parser.add_argument("--duration", type=float, help="seconds per timed wrk run (default 5)")
    parser.add_argument("--rounds", type=int, help="timed runs per row, interleaved (default 3)")
    parser.add_argument("--tenants", type=int, help="tenants in the store (default 1000)")
    args = parser.parse_args(argv)
    cli.require_wrk(parser)
    options = Options(cli.backends(parser, args.backend))
    options = cli.given(options, QUICK if args.quick else {})
    names = ("workers", "connections", "duration", "rounds", "tenants")
    options = cli.given(options, {name: getattr(args, name) for name in names})
    if min(options.workers, options.connections, options.rounds, options.duration) <= 0:
        parser.error("--workers, --connections, --rounds and --duration must be positive")
    if options.tenants < 1:
        parser.error("--tenants must be positive")
    return replace(options, working_set=min(options.working_set, options.tenants))


def run(options: Options, progress: Progress = lambda _: None) -> list[Row]:
    """Start every server (the floor, one per backend), then time them in interleaved rounds."""
    # Every server stays up for the whole run and only one is loaded at a time, so a burst of
    # load from elsewhere on this machine lands on every row alike instead of skewing one ratio.
    content = Content(internals.workflow(), options.tenants, options.assessments_per_tenant)
    mix = make_mix(content, options)
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="wa_wrk_")))
        endpoints: list[Endpoint] = []
        for backend in options.backends:
            progress(f"{backend}: populating {options.tenants} tenants, starting the servers")
            store = stack.enter_context(temporary_store(backend, content))
            if not endpoints:
                floor = stack.enter_context(
                    serving(store.url, workers=options.workers, command=FLOOR_COMMAND)
                )
                endpoints.append(floor_endpoint(floor, folder))
            server = stack.enter_context(serving(store.url, workers=options.workers))
            endpoints += backend_endpoints(server, store, mix, options, folder)
        return measure(endpoints, options, progress)


def make_mix(content: Content, options: Options) -> Mix:
    """Single questions over a working set of tenants; batches each about one of those tenants."""
    rng = random.Random(f"{options.seed}:{content.tenants}")
    working = rng.sample(range(content.tenants), options.working_set)
    singles = [content.question(rng, rng.choice(working)) for _ in range(options.bodies)]
    batches = []
    for _ in range(options.batches):
        index = rng.choice(working)
        batches.append([content.question(rng, index) for _ in range(options.batch_size)])
    return Mix(singles, batches)


def batch_body(items: Sequence[Question]) -> dict[str, Any]:
    """A POST /authorize/batch body: each question with an id."""
    return {"requests": [{"id": f"q{i}", **body} for i, (body, _) in enumerate(items)]}


# -- measuring -----------------------------------------------------------------------------------


def floor_endpoint(server: Server, folder: Path) -> Endpoint:
    """GET /bench/constant on the floor server, whose answer is checked once."""
    reply = server.request("GET", CONSTANT_PATH)
    wrong = 0 if reply.status == 200 and reply.json().get("allowed") is True else 1
    script = wrk.write_script(folder / "constant.lua", Load("GET", CONSTANT_PATH, {}))
    return Endpoint("constant", "—", server, script, 1, wrong)


def backend_endpoints(
    server: Server, store: Store, mix: Mix, options: Options, folder: Path
) -> list[Endpoint]:
    """POST /authorize and /authorize/batch on the store's server, a sample of answers checked."""
    key = create_api_key(store.url)
    headers, backend = api_headers(key), store.backend
    wrong = wrong_answers(server, key, mix.singles[: options.checked])
    wrong_batch = sum(check_batch(server, key, items) for items in mix.batches[:3])
    singles = tuple(json.dumps(body) for body, _ in mix.singles)
    batches = tuple(json.dumps(batch_body(items)) for items in mix.batches)
    single = wrk.write_script(
        folder / f"authorize-{backend}.lua", Load("POST", "/authorize", headers, singles)
    )
    batch = wrk.write_script(
        folder / f"batch-{backend}.lua", Load("POST", "/authorize/batch", headers, batches)
    )
    return [
        Endpoint("authorize", backend, server, single, 1, wrong),
        Endpoint(
            f"batch ×{options.batch_size}", backend, server, batch, options.batch_size, wrong_batch
        ),
    ]


def measure(endpoints: Sequence[Endpoint], options: Options, progress: Progress) -> list[Row]:
    """A warm-up run of each endpoint, then `rounds` rounds with one timed run of each."""
    if options.warmup > 0:
        progress("warm-up: every endpoint")
        for e in endpoints:
            load(e, options.warmup, options)
    timed: list[list[WrkResult]] = [[] for _ in endpoints]
    for number in range(options.rounds):
        progress(f"round {number + 1} of {options.rounds}: every endpoint")
        for e, runs in zip(endpoints, timed, strict=True):
            runs.append(load(e, options.duration, options))
    return [
        Row(e.name, e.backend, e.decisions_per_request, wrk.median_result(runs), e.wrong_answers)
        for e, runs in zip(endpoints, timed, strict=True)
    ]


def load(endpoint: Endpoint, seconds: float, options: Options) -> WrkResult:
    """One wrk run of `seconds` against the endpoint."""
    url, script = endpoint.server.url, endpoint.script
    output = wrk.run(url, script, connections=options.connections, seconds=seconds)
    return wrk.parse_wrk(output)


def check_batch(server: Server, key: str, items: Sequence[Question]) -> int:
    """How many answers of one batch differ from the generated policy's (all, if it failed)."""
    reply = server.post_json("/authorize/batch", batch_body(items), key)
    if reply.status != 200:
        return len(items)
    answers = [r.get("allowed") for r in reply.json()["results"]]
    return sum(got is not expected for got, (_, expected) in zip(answers, items, strict=True))


# -- the table -----------------------------------------------------------------------------------


def render(rows: Sequence[Row], options: Options) -> str:
    """One table, a row per endpoint and backend, then how the figures were taken."""
    return table.render(COLUMNS, [_cells(r, rows, options) for r in rows], _legend(options))


def _cells(row: Row, rows: Sequence[Row], options: Options) -> list[str]:
    floor = next((r for r in rows if r.endpoint == "constant"), None)
    single = next((r for r in rows if r.endpoint == "authorize" and r.backend == row.backend), None)
    vs_floor = vs_single = "—"
    if row.endpoint == "authorize" and floor is not None:
        vs_floor = table.at_least(row.wrk.per_second / floor.wrk.per_second, TARGET_FLOOR_RATIO)
    if row.endpoint.startswith("batch") and single is not None:
        ratio = row.decisions_per_second / single.decisions_per_second
        vs_single = table.at_least(ratio, TARGET_BATCH_RATIO)
    errors = f"{row.wrk.errors}" + (f", {row.wrong_answers} wrong" if row.wrong_answers else "")
    return [
        row.endpoint,
        row.backend,
        str(options.workers),
        str(options.connections),
        f"{row.wrk.requests:,}",
        f"{row.wrk.per_second:,.0f}",
        f"{row.decisions_per_second:,.0f}",
        f"{row.wrk.p50_us / 1000:.2f}",
        f"{row.wrk.p99_us / 1000:.2f}",
        errors,
        vs_floor,
        vs_single,
    ]


def _legend(options: Options) -> list[str]:
    """What the rows mean and how they were measured, printed under the table."""
    return [
        f"wrk (1 thread, {options.connections} connections) against gunicorn with "
        f"{options.workers} sync workers on 127.0.0.1; every server up for the whole run; after "
        f"a {options.warmup:g} s warm-up each, {options.rounds} rounds of one {options.duration:g} "
        "s run per row; req/s, p50 and p99 (wrk's histogram) are the median of the rounds.",
        "constant: GET /bench/constant, a constant JSON object from the service's app and "
        "gunicorn settings plus one bench route (bench/floor.py) -- the framework's floor.",
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
