"""AuthZEN benchmark: the standard's endpoints beside the native ones in one run, and resource
search over a tenant of 100,000 assessments, against `workflow-authz serve` on this machine.

Per backend, one server (`workflow-authz serve`) over two stores' worth of tenants:
  authorize        wrk: POST /authorize about assessments, spread over many tenants;
  evaluation       wrk: the same questions as POST /tenants/<t>/access/v1/evaluation, in the same
                   rounds: evaluation/authorize req/s;
  batch ×100       wrk: POST /authorize/batch, 100 questions about one tenant per request;
  evaluations ×100 wrk: the same batches as AuthZEN boxcars: evaluations/batch decisions/s;
  search page 1    sequential POST .../search/resource, first page (limit 100), for a role and
                   action over a tenant of 1,000 and one of 100,000 assessments: 100,000 vs
                   1,000 (target <= 2: a page reads one index range per place, whatever the size);
  search walk      every page (limit 1,000) to the end over the 100,000, each id checked against
                   the generated policy: ms per page vs a first page of 1,000 (target <= 2: keyset
                   paging, a late page costs what the first does);
  plan             EXPLAIN of the page statement on the store: the index it reads.
Every answer of a sample of the wrk bodies is checked before timing; no request may fail.

    python -m bench.authzen [--backend sqlite|postgres|both] [--workers 4] [--duration 5]
                            [--assessments 100000] [--quick]
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any

from bench import cli, http, internals, table, wrk
from bench.cli import Progress
from bench.server import (
    Server,
    ServerError,
    api_headers,
    batch_body,
    create_api_key,
    serving,
    wrong_answers,
    wrong_batch_answers,
)
from bench.store import BACKENDS, Asked, Assessed, Body, Content, temporary_store
from bench.wrk import Load, WrkResult

TARGET_SIZE_RATIO = 2.0
TARGET_WALK_RATIO = 2.0
SEARCHER = ("parent", "view")
"""The role and action whose assessments the search rows find (the audience's view)."""
COLUMNS = table.columns(
    "| row | backend | assessments | requests | req/s | decisions or results/s | p50 ms "
    "| p99 ms | errors | ratio | vs | plan |"
)


@dataclass(frozen=True)
class Options:
    """What to run: stores, server and wrk settings, the request mix and the search's sizes."""

    backends: tuple[str, ...] = BACKENDS
    tenants: int = 200
    working_set: int = 100
    assessments_per_tenant: int = 20
    workers: int = 4
    connections: int = 8
    duration: float = 5.0
    rounds: int = 3
    warmup: float = 2.0
    bodies: int = 2000
    batch_size: int = 100
    batches: int = 100
    checked: int = 100
    assessments: int = 100_000
    """Assessments of the large search tenant."""
    small: int = 1_000
    """Assessments of the small search tenant (the size ratio's baseline)."""
    page_requests: int = 100
    """Sequential first-page requests per search row (the median and p99 are over them)."""
    first_limit: int = 100
    walk_limit: int = 1000
    seed: str = "authzen"


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
    "assessments": 2_000,
    "small": 200,
    "page_requests": 5,
    "first_limit": 10,
    "walk_limit": 100,
}
"""A tiny run for tests."""


@dataclass(frozen=True)
class Row:
    """One table row: what was measured, its figures, and what its ratio compares it with."""

    name: str
    backend: str
    assessments: int
    requests: int
    per_second: float
    items_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int
    ratio: str = "—"
    versus: str = "—"
    plan: str = "—"


@dataclass(frozen=True)
class Sized(Content):
    """Tenants holding the given numbers of assessments (tenant i holds sizes[i])."""

    sizes: tuple[int, ...] = ()

    def assessments(self, index: int) -> list[Assessed]:
        return Content.assessments(replace(self, assessments_per_tenant=self.sizes[index]), index)


def main(argv: Sequence[str] | None = None) -> int:
    """Run every row, print the table; 1 if any request failed or any checked answer was wrong."""
    return cli.main(parse_args(argv), run, render, lambda rows: any(r.errors for r in rows))


def parse_args(argv: Sequence[str] | None) -> Options:
    """Options from the command line; PostgreSQL is dropped from `both` when unreachable."""
    parser = cli.parser("bench.authzen", __doc__)
    cli.add_backend(parser)
    count, seconds = cli.positive(int), cli.positive(float)
    parser.add_argument("--workers", type=count, help="server worker processes (default 4)")
    parser.add_argument("--connections", type=count, help="wrk connections (default 8)")
    parser.add_argument("--duration", type=seconds, help="seconds per timed wrk run (default 5)")
    parser.add_argument("--rounds", type=count, help="timed runs per row, interleaved (default 3)")
    parser.add_argument("--assessments", type=count, help="the large search tenant's size")
    args = parser.parse_args(argv)
    cli.require_wrk(parser)
    options = cli.options(Options(cli.backends(parser, args.backend)), QUICK, args)
    return replace(options, working_set=min(options.working_set, options.tenants))


def run(options: Options, progress: Progress = lambda _: None) -> list[Row]:
    """Per backend: populate, start one server, time the wrk rows in rounds, then the search."""
    flow = internals.workflow()
    mixed = Content(flow, options.tenants, options.assessments_per_tenant, seed=options.seed)
    searched = Sized(flow, 2, seed=options.seed, sizes=(options.assessments, options.small))
    rows: list[Row] = []
    for backend in options.backends:
        with ExitStack() as stack:
            progress(f"{backend}: populating, starting the server")
            mix_store = stack.enter_context(temporary_store(backend, mixed))
            search_store = stack.enter_context(temporary_store(backend, searched))
            server = stack.enter_context(serving(mix_store.url, workers=options.workers))
            key = create_api_key(mix_store.url)
            rows += wrk_rows(backend, server, key, mixed, options, progress)
            search_server = stack.enter_context(serving(search_store.url, workers=options.workers))
            search_key = create_api_key(search_store.url)
            rows += search_rows(
                backend, search_server, search_key, search_store.url, searched, options, progress
            )
    return rows


# -- evaluation beside /authorize ----------------------------------------------------------------


def evaluation_body(native: Body) -> dict[str, Any]:
    """A native question about an assessment as an AuthZEN evaluation (its tenant is the path's)."""
    return {
        "subject": {"type": "role", "id": native["role"]},
        "action": {"name": native["action"]},
        "resource": {"type": "assessment", "id": native["assessment"]},
    }


def tenant_path(native: Body, endpoint: str) -> str:
    return f"/tenants/{native['tenant']}/access/v1/{endpoint}"


def wrong_evaluations(server: Server, key: str, items: Sequence[Asked]) -> int:
    """How many evaluations of a sample get another decision than the generated policy's."""
    wrong = 0
    for body, expected in items:
        reply = server.post_json(tenant_path(body, "evaluation"), evaluation_body(body), key)
        wrong += reply.status != 200 or reply.json().get("decision") is not expected
    return wrong


def wrong_boxcar(server: Server, key: str, items: Sequence[Asked]) -> int:
    """How many decisions of one boxcar differ from the generated policy's; ServerError if the
    boxcar itself is not answered."""
    path = tenant_path(items[0][0], "evaluations")
    reply = server.post_json(path, {"evaluations": [evaluation_body(b) for b, _ in items]}, key)
    if reply.status != 200:
        raise ServerError(f"POST {path}: {reply.status} {reply.body[:300]!r}")
    got = [e["decision"] for e in reply.json()["evaluations"]]
    return sum(g is not expected for g, (_, expected) in zip(got, items, strict=True))


def wrk_rows(
    backend: str, server: Server, key: str, content: Content, options: Options, progress: Progress
) -> list[Row]:
    """The four wrk rows: native and AuthZEN, single and batched, timed in the same rounds."""
    mix = http.Options(
        tenants=options.tenants,
        working_set=options.working_set,
        bodies=options.bodies,
        batch_size=options.batch_size,
        batches=options.batches,
        seed=options.seed,
    )
    singles, batches = http.make_mix(content, mix)
    sample = singles[: options.checked]
    wrong = {
        "authorize": wrong_answers(server, key, sample),
        "evaluation": wrong_evaluations(server, key, sample),
        "batch": sum(wrong_batch_answers(server, key, b) for b in batches[:3]),
        "evaluations": sum(wrong_boxcar(server, key, b) for b in batches[:3]),
    }
    headers = api_headers(key)
    loads = {
        "authorize": Load("POST", "/authorize", headers, tuple(json.dumps(b) for b, _ in singles)),
        "evaluation": Load(
            "POST",
            "/",
            headers,
            tuple(json.dumps(evaluation_body(b)) for b, _ in singles),
            tuple(tenant_path(b, "evaluation") for b, _ in singles),
        ),
        "batch": Load(
            "POST",
            "/authorize/batch",
            headers,
            tuple(json.dumps(batch_body(b)) for b in batches),
        ),
        "evaluations": Load(
            "POST",
            "/",
            headers,
            tuple(json.dumps({"evaluations": [evaluation_body(q) for q, _ in b]}) for b in batches),
            tuple(tenant_path(b[0][0], "evaluations") for b in batches),
        ),
    }
    measured = measure(server, loads, options, progress, backend)
    size = options.batch_size
    per = {"authorize": 1, "evaluation": 1, "batch": size, "evaluations": size}
    names = {"batch": f"batch ×{size}", "evaluations": f"evaluations ×{size}"}
    against = {"evaluation": "authorize", "evaluations": "batch"}
    rows = []
    for name, result in measured.items():
        ratio, versus = "—", "—"
        if name in against:
            base = measured[against[name]]
            ratio, versus = (
                f"{result.per_second / base.per_second:.2f}",
                names.get(against[name], against[name]),
            )
        errors = result.errors + wrong[name]
        rows.append(
            Row(
                names.get(name, name),
                backend,
                options.tenants * options.assessments_per_tenant,
                result.requests,
                result.per_second,
                result.per_second * per[name],
                result.p50_us / 1000,
                result.p99_us / 1000,
                errors,
                ratio,
                versus,
            )
        )
    return rows


def measure(
    server: Server, loads: dict[str, Load], options: Options, progress: Progress, backend: str
) -> dict[str, WrkResult]:
    """A warm-up run of each load, then `rounds` rounds with one timed run of each."""

    def load(item: Load, seconds: float) -> WrkResult:
        output = wrk.run(server.url, item, connections=options.connections, seconds=seconds)
        return wrk.parse_wrk(output)

    if options.warmup > 0:
        progress(f"{backend}: warm-up")
        for item in loads.values():
            load(item, options.warmup)
    timed: dict[str, list[WrkResult]] = {name: [] for name in loads}
    for number in range(options.rounds):
        progress(f"{backend}: round {number + 1} of {options.rounds}")
        for name, item in loads.items():
            timed[name].append(load(item, options.duration))
    return {name: wrk.median_result(runs) for name, runs in timed.items()}


# -- resource search -------------------------------------------------------------------------------


def search_body(limit: int, token: str | None = None) -> dict[str, Any]:
    """A resource search for SEARCHER's assessments, one page of `limit`."""
    role, action = SEARCHER
    page: dict[str, Any] = {"limit": limit} | ({"token": token} if token else {})
    return {
        "subject": {"type": "role", "id": role},
        "action": {"name": action},
        "resource": {"type": "assessment"},
        "page": page,
    }


def expected_ids(content: Content, index: int) -> set[str]:
    """The ids the generated policy lets SEARCHER act on, of tenant `index`."""
    role, action = SEARCHER
    cells = content.cells(index)
    return {a.id for a in content.assessments(index) if (role, a.area, a.phase, action) in cells}


def places(content: Content, index: int) -> list[tuple[str, str]]:
    """The (area, phase) places at which SEARCHER may act in tenant `index`."""
    role, action = SEARCHER
    cells = content.cells(index)
    return [
        (a.id, p.id)
        for a in content.workflow.areas
        for p in a.phases
        if (role, a.id, p.id, action) in cells
    ]


def timed_post(server: Server, path: str, body: Any, key: str) -> tuple[Any, float]:
    """One request's answer (ServerError unless 200) and the seconds it took."""
    started = time.perf_counter()
    reply = server.post_json(path, body, key)
    took = time.perf_counter() - started
    if reply.status != 200:
        raise ServerError(f"POST {path}: {reply.status} {reply.body[:300]!r}")
    return reply.json(), took


def first_pages(server: Server, key: str, tenant: str, limit: int, count: int) -> list[float]:
    """The seconds each of `count` sequential first-page requests took (after one warm-up)."""
    path = f"/tenants/{tenant}/access/v1/search/resource"
    timed_post(server, path, search_body(limit), key)
    return [timed_post(server, path, search_body(limit), key)[1] for _ in range(count)]


def walk(server: Server, key: str, tenant: str, limit: int) -> tuple[list[str], list[float]]:
    """Every id of the search, page by page to the end, and the seconds each page took."""
    path = f"/tenants/{tenant}/access/v1/search/resource"
    ids: list[str] = []
    times: list[float] = []
    token = None
    while True:
        answer, took = timed_post(server, path, search_body(limit, token), key)
        ids += [r["id"] for r in answer["results"]]
        times.append(took)
        token = answer["page"]["next_token"]
        if not token:
            return ids, times


def search_rows(
    backend: str,
    server: Server,
    key: str,
    url: str,
    content: Sized,
    options: Options,
    progress: Progress,
) -> list[Row]:
    """The search rows: first pages over both tenants, then a walk over the large one."""
    large, small = content.tenant(0), content.tenant(1)
    plans = [
        plan_summary(internals.search_plan(url, content.tenant(i), places(content, i), limit))
        for i, limit in (
            (1, options.first_limit),
            (0, options.first_limit),
            (0, options.walk_limit),
        )
    ]
    on_small: list[float] = []
    on_large: list[float] = []
    wide: list[float] = []
    times: list[float] = []
    wrong = 0
    for number in range(options.rounds):  # interleaved, so a burst of load lands on every row
        progress(f"{backend}: resource search, round {number + 1} of {options.rounds}")
        on_small += first_pages(server, key, small, options.first_limit, options.page_requests)
        on_large += first_pages(server, key, large, options.first_limit, options.page_requests)
        wide += first_pages(server, key, large, options.walk_limit, options.page_requests)
        ids, took = walk(server, key, large, options.walk_limit)
        times += took
        wrong += int(len(ids) != len(set(ids)) or set(ids) != expected_ids(content, 0))
    size_ratio = _p50(on_large) / _p50(on_small)
    walk_ratio = _p50(times) / _p50(wide)
    first = f"search page 1 ×{options.first_limit}"
    return [
        _sequential(first, backend, options.small, on_small, options.first_limit, plan=plans[0]),
        _sequential(
            first,
            backend,
            options.assessments,
            on_large,
            options.first_limit,
            ratio=table.at_most(size_ratio, TARGET_SIZE_RATIO),
            versus=f"{options.small:,} assessments",
            plan=plans[1],
        ),
        _sequential(
            f"search page 1 ×{options.walk_limit}",
            backend,
            options.assessments,
            wide,
            options.walk_limit,
            plan=plans[2],
        ),
        _sequential(
            f"search walk ×{options.walk_limit}",
            backend,
            options.assessments,
            times,
            len(ids) * options.rounds / len(times),
            errors=wrong,
            ratio=table.at_most(walk_ratio, TARGET_WALK_RATIO),
            versus=f"page 1 ×{options.walk_limit}",
            plan=plans[2],
        ),
    ]


def _p50(seconds: Sequence[float]) -> float:
    return statistics.median(seconds)


def _p99(seconds: Sequence[float]) -> float:
    ordered = sorted(seconds)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def _sequential(
    name: str,
    backend: str,
    assessments: int,
    seconds: Sequence[float],
    results_per_request: float,
    *,
    errors: int = 0,
    ratio: str = "—",
    versus: str = "—",
    plan: str = "—",
) -> Row:
    """A row of sequential requests: their rate, results per second, median and p99."""
    rate = len(seconds) / sum(seconds)
    return Row(
        name,
        backend,
        assessments,
        len(seconds),
        rate,
        rate * results_per_request,
        _p50(seconds) * 1000,
        _p99(seconds) * 1000,
        errors,
        ratio,
        versus,
        plan,
    )


def plan_summary(plan: str) -> str:
    """How often the page statement reads the place index (once per place), or what it does
    instead: scan the table, or read another index."""
    if "SCAN assessments" in plan or "Seq Scan" in plan:
        return "TABLE SCAN"
    reads = plan.count("ix_assessments_place")
    return f"ix_assessments_place ×{reads}" if reads else "NOT ix_assessments_place"


# -- the table -------------------------------------------------------------------------------------


def render(rows: Sequence[Row], options: Options) -> str:
    """One table, a row per measurement and backend, then how the figures were taken."""
    cells = [
        [
            r.name,
            r.backend,
            f"{r.assessments:,}",
            f"{r.requests:,}",
            f"{r.per_second:,.0f}",
            f"{r.items_per_second:,.0f}",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            str(r.errors),
            r.ratio,
            r.versus,
            r.plan,
        ]
        for r in rows
    ]
    return table.render(COLUMNS, cells, _legend(options))


def _legend(options: Options) -> list[str]:
    """What the rows mean and how they were measured, printed under the table."""
    role, action = SEARCHER
    return [
        f"wrk rows: wrk (1 thread, {options.connections} connections) against `workflow-authz "
        f"serve` with {options.workers} workers on 127.0.0.1; after a {options.warmup:g} s "
        "warm-up, "
        f"{options.rounds} rounds of one {options.duration:g} s run of each row; figures are the "
        "median of the rounds. The same questions both ways: "
        f"{options.bodies} single ones about assessments over {options.working_set} of "
        f"{options.tenants} tenants, and {options.batches} batches of {options.batch_size} "
        "about one tenant each (AuthZEN: the tenant in the path, every item's entities given).",
        f"search rows: sequential requests on one connection each, {options.rounds} rounds of "
        f"{options.page_requests} first pages per row and one walk; {role} may {action} (the "
        "generated policy's places) a share of a tenant's assessments. Each walk pages to the "
        "end and checks every id; its ratio is its median page against first pages of its limit.",
        "assessments: in the store the row's requests go to (wrk rows: all tenants'); "
        "decisions or results/s: req/s times the decisions or results per request.",
        "plan: EXPLAIN of the page statement on the store (SQLite's query plan, PostgreSQL's "
        "plan): how many ranges it reads from the place index (one per place), or TABLE SCAN.",
    ]


if __name__ == "__main__":
    sys.exit(main())
