"""Scale benchmark: 1, 100, 1,000 and 10,000 tenants in the store, on SQLite and PostgreSQL.

For each store (tenants of 29-60 policy rows and 20 assessments each, from bench/store.py):
  decision   µs per full decision in-process (read transaction, assessment lookup with the
             tenant's policy version, cached policy) over a working set of up to 500 tenants;
             the 1-tenant figure is the baseline (target: N tenants <= 1.3 x);
  miss       µs for the same when the tenant is not resident (its rows read first);
  first      seconds from spawning `workflow-authz serve --workers 1` to its first successful
             POST /authorize answer (target <= 2 s), and in-process create_app() + first decision;
  RSS        MiB resident in the worker after its first decision and after deciding for every
             tenant of the store (batches of 1,000, one question per tenant; target <= 300 MiB).

    python -m bench.scale [--backend sqlite|postgres|both] [--tenants 1,100,1000,10000] [--quick]
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench import cli, internals, table
from bench.cli import Progress
from bench.internals import Local
from bench.server import (
    READY_TIMEOUT,
    Server,
    ServerError,
    api_headers,
    create_api_key,
    poll,
    rss_mib,
    serving,
    wrong_batch_answers,
)
from bench.store import BACKENDS, Body, Content, Store, temporary_store
from bench.timing import Run, Timing, interleaved, prepare

TARGET_SCALING = 1.3
TARGET_FIRST_S = 2.0
TARGET_RSS_MIB = 300.0
COLUMNS = table.columns(
    "| tenants | rows | backend | decision µs | 1 tenant µs, same rounds "
    f"| vs 1 tenant (≤{TARGET_SCALING:g}) | miss µs "
    f"| first answer s (≤{TARGET_FIRST_S:g}) | in-process s | RSS MiB first "
    f"| RSS MiB all (≤{TARGET_RSS_MIB:g}) | answers |"
)


@dataclass(frozen=True)
class Options:
    """Which stores to build and how long to measure."""

    backends: tuple[str, ...] = BACKENDS
    tenant_counts: tuple[int, ...] = (1, 100, 1000, 10_000)
    working_set: int = 500
    mix: int = 1500
    misses: int = 200
    seconds: float = 0.25
    runs: int = 5
    assessments_per_tenant: int = 20
    batch: int = 1000
    seed: str = "scale"


QUICK: dict[str, Any] = {
    "working_set": 5,
    "mix": 50,
    "misses": 5,
    "seconds": 0.01,
    "runs": 3,
    "assessments_per_tenant": 3,
    "batch": 4,
}
"""A tiny run for tests."""


@dataclass(frozen=True)
class Result:
    """One table row: the figures for one store."""

    backend: str
    tenants: int
    rows: int
    decision_us: float
    baseline_us: float
    """The smallest store's decision µs, timed in the same interleaved rounds."""
    miss_us: float
    first_answer_s: float
    in_process_s: float
    rss_first_mib: float
    rss_all_mib: float
    checked: int
    wrong: int


def main(argv: Sequence[str] | None = None) -> int:
    """Measure every store, print the table; 1 if any answer was wrong."""
    return cli.main(parse_args(argv), run, render, lambda results: any(r.wrong for r in results))


def parse_args(argv: Sequence[str] | None) -> Options:
    """Options from the command line; PostgreSQL is dropped from `both` when unreachable."""
    backends, counts, quick = cli.store_args("bench.scale", __doc__, argv, "1,100,1000,10000")
    return cli.given(Options(backends, counts), QUICK if quick else {})


def run(options: Options, progress: Progress = lambda _: None) -> list[Result]:
    """Per backend: the smallest store stays open as the baseline while each store is measured."""
    workflow = internals.workflow()
    results = []
    for backend in options.backends:
        smallest, *others = options.tenant_counts
        progress(f"{backend}, {smallest} tenants: populating")
        base_content = Content(workflow, smallest, options.assessments_per_tenant)
        with temporary_store(backend, base_content) as base, internals.test_app(base.url) as app:
            baseline = (internals.local_of(app), base.content)
            results.append(measure(base, baseline, options, progress))
            for count in others:
                progress(f"{backend}, {count} tenants: populating")
                content = Content(workflow, count, options.assessments_per_tenant)
                with temporary_store(backend, content) as store:
                    results.append(measure(store, baseline, options, progress))
    return results


def measure(
    store: Store, baseline: tuple[Local, Content], options: Options, progress: Progress
) -> Result:
    """Every figure for one store: in-process decisions first, then a server process."""
    label = f"{store.backend}, {store.content.tenants} tenants"
    key = create_api_key(store.url)
    rng = random.Random(f"{options.seed}:{store.content.tenants}")
    probe = store.content.question(rng, 0)
    progress(f"{label}: in-process first decision and decision times")
    in_process_s = first_in_process(store.url, key, probe[0])
    with internals.test_app(store.url) as app:
        here = (internals.local_of(app), store.content)
        timings, wrong = decision_times(here, baseline, options, rng)
    progress(f"{label}: server start, first answer, memory after deciding for every tenant")
    with serving(store.url, workers=1, wait=False) as server:
        first_s = first_answer(server, key, probe[0])
        worker = server.worker()
        rss_first = rss_mib(worker)
        wrong += decide_for_every_tenant(server, key, store.content, options.batch)
        rss_all = rss_mib(worker)
    return Result(
        backend=store.backend,
        tenants=store.content.tenants,
        rows=store.rows,
        decision_us=timings["hit"].us_per_call,
        baseline_us=timings["baseline"].us_per_call,
        miss_us=timings["miss"].us_per_call,
        first_answer_s=first_s,
        in_process_s=in_process_s,
        rss_first_mib=rss_first,
        rss_all_mib=rss_all,
        checked=2 * options.mix + store.content.tenants,
        wrong=wrong,
    )


# -- in-process ------------------------------------------------------------------------------


def first_in_process(url: str, key: str, body: Body) -> float:
    """Seconds for create_app() and its first POST /authorize through the test client."""
    start = time.perf_counter()
    with internals.test_app(url) as app:
        reply = app.test_client().post("/authorize", json=body, headers=api_headers(key))
        elapsed = time.perf_counter() - start
    if reply.status_code != 200:
        raise ServerError(f"in-process first decision: {reply.status_code} {reply.json}")
    return elapsed


def decision_times(
    here: tuple[Local, Content],
    baseline: tuple[Local, Content],
    options: Options,
    rng: random.Random,
) -> tuple[dict[str, Timing], int]:
    """µs per decision here, on the baseline store and for non-resident tenants, interleaved."""
    hits, wrong = prepare_hits(*here, options, rng)
    base, wrong_base = prepare_hits(*baseline, options, rng)
    local, content = here
    tenants = [rng.randrange(content.tenants) for _ in range(options.misses)]
    cold = [internals.question(**content.question(rng, i)[0]) for i in tenants]
    _, misses = prepare(local.decide_cold, cold, seconds=options.seconds)
    runs = {"hit": hits, "baseline": base, "miss": misses}
    return interleaved(runs, options.runs), wrong + wrong_base


def prepare_hits(
    local: Local, content: Content, options: Options, rng: random.Random
) -> tuple[Run, int]:
    """A run of decisions over a working set of tenants (resident after the warm-up pass), and
    how many answers of its warm-up pass were wrong."""
    mix = content.questions(rng, content.working(rng, options.working_set), options.mix)
    questions = [internals.question(**body) for body, _ in mix]
    answers, run = prepare(local.decide, questions, seconds=options.seconds)
    return run, sum(got is not expected for got, (_, expected) in zip(answers, mix, strict=True))


# -- a server process --------------------------------------------------------------------------


def first_answer(server: Server, key: str, body: Body) -> float:
    """Seconds from spawning the server to its first 200 answer to POST /authorize."""

    def answered() -> bool:
        reply = server.post_json("/authorize", body, key, timeout=READY_TIMEOUT)
        if reply.status != 200:
            raise ServerError(f"first POST /authorize: {reply.status} {reply.body[:300]!r}")
        return True

    poll(server, answered)
    return time.perf_counter() - server.started


def decide_for_every_tenant(server: Server, key: str, content: Content, batch: int) -> int:
    """One question per tenant of the store, in batches; returns the wrong answers."""
    rng = random.Random(f"every:{content.tenants}")
    items = [content.question(rng, i) for i in range(content.tenants)]
    chunks = (items[start : start + batch] for start in range(0, len(items), batch))
    return sum(wrong_batch_answers(server, key, chunk) for chunk in chunks)


# -- the table -----------------------------------------------------------------------------------


def render(results: Sequence[Result], options: Options) -> str:
    """One table, a row per store, then how each figure was taken."""
    rows = [_cells(r, _is_base(results, r)) for r in results]
    return table.render(COLUMNS, rows, _legend(options))


def _is_base(results: Sequence[Result], result: Result) -> bool:
    """True for the row of the backend's smallest store (the baseline of the others)."""
    same = [r for r in results if r.backend == result.backend]
    return min(same, key=lambda r: r.tenants) is result


def _cells(r: Result, base: bool) -> list[str]:
    return [
        f"{r.tenants:,}",
        f"{r.rows:,}",
        r.backend,
        f"{r.decision_us:.1f}",
        "—" if base else f"{r.baseline_us:.1f}",
        "—" if base else table.at_most(r.decision_us / r.baseline_us, TARGET_SCALING),
        f"{r.miss_us:.1f}",
        table.at_most(r.first_answer_s, TARGET_FIRST_S),
        f"{r.in_process_s:.3f}",
        f"{r.rss_first_mib:.1f}",
        table.at_most(r.rss_all_mib, TARGET_RSS_MIB, digits=1),
        f"{r.wrong} wrong of {r.checked:,}" if r.wrong else f"all {r.checked:,} right",
    ]


def _legend(options: Options) -> list[str]:
    """What the columns mean, printed under the table."""
    capacity = internals.cache_capacity()
    return [
        f"decision: median of {options.runs} runs of ~{options.seconds:g} s of "
        "decisions.answer in db.read() (as POST /authorize, minus HTTP and the key check) "
        f"over {options.mix} questions about assessments of up to {options.working_set} "
        "tenants, all resident; vs 1 tenant: against the same backend's 1-tenant store, kept "
        "open and timed in the same interleaved rounds.",
        f"miss: the same for {options.misses} questions whose tenant was forgotten first.",
        "first answer: spawn of `workflow-authz serve --workers 1` to its first 200 on "
        "POST /authorize (polled); in-process: create_app() plus its first POST /authorize "
        "through the test client, modules already imported.",
        f"RSS: VmRSS of the worker after its first decision, then after one question per tenant "
        f"of the store in batches of {options.batch} (policy cache: {capacity} tenants).",
        "answers: every timed question's and every per-tenant question's answer checked against "
        "the generated policy.",
    ]


if __name__ == "__main__":
    sys.exit(main())
