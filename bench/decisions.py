"""Decision benchmark: raw casbin against the service's decisions, 1 and 10,000 tenants, one table.

Columns (µs per decision, median of runs over a deterministic random mix of requests):
  a      casbin.Enforcer(model.conf).enforce over one tenant's rows, loaded the way a user would
         (casbin-sqlalchemy-adapter, filtered to the tenant) -- one enforcer per tenant;
  a-all  the stock, unfiltered Enforcer holding every tenant's rows (and its load time in s);
  b      PolicyEngine.decide with the policy version in hand (tenant resident in the cache);
  b-miss the same when the tenant is not resident (its rows read from the store first);
  c      decisions.answer for an assessment id in a read transaction (state lookup + policy);
  d      the floor: a frozenset membership test of the same 5-tuple.
Every column's answers are checked against the generated policy; a disagreement fails the run.

    python -m bench.decisions [--backend sqlite|postgres|both] [--tenants 1,10000] [--quick]
"""

from __future__ import annotations

import gc
import random
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import casbin
from casbin_sqlalchemy_adapter import Adapter
from casbin_sqlalchemy_adapter.adapter import Filter
from sqlalchemy import Engine, create_engine

from bench import cli, internals, table
from bench.cli import Progress
from bench.internals import Local, Question, Row
from bench.store import BACKENDS, Content, Store, temporary_store
from bench.timing import Run, interleaved, per_call, prepare, timed

TARGET_A_OVER_B = 20.0
TARGET_A_OVER_C = 2.0
TARGET_SCALING = 1.3
COLUMNS = table.columns(
    "| tenants | rows | backend | a-all load s | a-all µs | a µs | b µs | b-miss µs "
    f"| c µs | d µs | a/b (≥{TARGET_A_OVER_B:g}) | a/c (≥{TARGET_A_OVER_C:g}) "
    f"| b(N)/b(1) (≤{TARGET_SCALING:g}) | c(N)/c(1) (≤{TARGET_SCALING:g}) "
    "| answers checked |"
)


@dataclass(frozen=True)
class Options:
    """What to run and how long to measure each column."""

    backends: tuple[str, ...] = BACKENDS
    tenant_counts: tuple[int, ...] = (1, 10_000)
    working_set: int = 500
    """Tenants the request mix spreads over (all resident in the policy cache)."""
    mix: int = 1500
    """Distinct requests in the mix; each is answered by every column and checked."""
    misses: int = 100
    seconds: float = 0.3
    """Length of one timed run of a column."""
    runs: int = 5
    stock_mix: int = 4
    """Requests asked of the stock enforcer (up to ~1 s each at 10,000 tenants), per run."""
    stock_runs: int = 3
    assessments_per_tenant: int = 20
    seed: str = "decisions"


QUICK: dict[str, Any] = {
    "working_set": 10,
    "mix": 200,
    "misses": 5,
    "seconds": 0.005,
    "runs": 3,
    "stock_mix": 10,
    "stock_runs": 1,
    "assessments_per_tenant": 5,
}
"""A tiny run for tests: a few tenants' worth of requests, short runs."""


@dataclass(frozen=True)
class Result:
    """One table row: the figures for one store (backend and tenant count)."""

    backend: str
    tenants: int
    rows: int
    us: dict[str, float]
    """µs per decision by column: a, a-all, b, b-miss, c, d."""
    stock_load_s: float
    answers: dict[str, tuple[bool, ...]] = field(repr=False)
    """Each column's answers on its checked requests, and the generated policy's ("expected")."""

    @property
    def disagreements(self) -> tuple[str, ...]:
        """The columns whose answers differ from the generated policy's, and by how many."""
        return disagreements(self.answers)

    @property
    def checked(self) -> int:
        """How many answers were compared with the generated policy."""
        return sum(len(v) for k, v in self.answers.items() if k in EXPECTED_FOR)


EXPECTED_FOR = dict.fromkeys(("a", "a-all", "b", "d"), "requests") | {
    "b-miss": "misses",
    "c": "questions",
}
"""Which expected answers each column's answers are compared with (a-all: a prefix)."""


@dataclass(frozen=True)
class Bench:
    """One store after its checking pass: a timed run and the answers of each interleaved column
    (beside the generated policy's), and the stock enforcer's measurement, made afterwards."""

    store: Store
    runs: dict[str, Run]
    answers: dict[str, tuple[bool, ...]]
    stock: Callable[[], tuple[float, float, list[bool]]]


def main(argv: Sequence[str] | None = None) -> int:
    """Measure every store, print the table; 1 if any answer disagreed."""
    return cli.main(parse_args(argv), run, render, lambda rs: any(r.disagreements for r in rs))


def parse_args(argv: Sequence[str] | None) -> Options:
    """Options from the command line; PostgreSQL is dropped from `both` when it is unreachable."""
    backends, counts, quick = cli.store_args("bench.decisions", __doc__, argv, "1,10000")
    return cli.given(Options(backends, counts), QUICK if quick else {})


def run(options: Options, progress: Progress = lambda _: None) -> list[Result]:
    """Per backend, every tenant count's store side by side, their timed runs interleaved, then
    the stock enforcer on each; the stores removed before the next backend's are made."""
    results = []
    for backend in options.backends:
        with ExitStack() as stack:
            benches = []
            for count in options.tenant_counts:
                progress(f"{backend}, {count} tenants: populating the store")
                content = Content(internals.workflow(), count, options.assessments_per_tenant)
                store = stack.enter_context(temporary_store(backend, content))
                progress(f"{backend}, {count} tenants: answering the mix with every column")
                benches.append(stack.enter_context(open_bench(store, options)))
            progress(f"{backend}: timing {options.runs} interleaved rounds")
            runs = {(n, col): run for n, b in enumerate(benches) for col, run in b.runs.items()}
            timings = interleaved(runs, options.runs)
            for n, b in enumerate(benches):
                tenants, rows = b.store.content.tenants, b.store.rows
                progress(f"{backend}, {tenants} tenants: the stock enforcer")
                load_s, stock_us, stock = b.stock()
                us = {col: timings[(n, col)].us_per_call for col in b.runs} | {"a-all": stock_us}
                answers = b.answers | {"a-all": tuple(stock)}
                results.append(Result(backend, tenants, rows, us, load_s, answers))
                gc.collect()  # the stock enforcer held every row; free it before the next one
    return results


@contextmanager
def open_bench(store: Store, options: Options) -> Iterator[Bench]:
    """Answer the store's mix with each interleaved column (the warm-up) and size its runs; the
    service's store and engine and casbin's engine are closed afterwards."""
    local = Local.open(store.url, pool_size=2, capacity=internals.cache_capacity())
    casbin_engine = create_engine(store.url)
    try:
        requests, questions, misses, expected = make_mix(store.content, options)
        versions = dict.fromkeys(store.content.names(), 1)
        columns: dict[str, tuple[Callable[[Any], bool], Sequence[Any]]] = {
            "a": (raw_column(casbin_engine, requests), requests),
            "b": (local.cell_decider(versions), requests),
            "b-miss": (local.cold_cell_decider(), misses),
            "c": (local.decide, questions),
            "d": (floor_column(store.content), requests),
        }
        done = {
            n: prepare(f, inputs, seconds=options.seconds) for n, (f, inputs) in columns.items()
        }
        answers = {name: tuple(found) for name, (found, _) in done.items()} | expected
        stock = partial(measure_stock, casbin_engine, requests[: options.stock_mix], options)
        yield Bench(store, {name: run for name, (_, run) in done.items()}, answers, stock)
    finally:
        casbin_engine.dispose()
        local.close()


def disagreements(answers: dict[str, tuple[bool, ...]]) -> tuple[str, ...]:
    """Columns whose answers differ from the generated policy's, e.g. 'b: 3/4000 differ'."""
    found = []
    for name, kind in EXPECTED_FOR.items():
        got = answers[name]
        expected = answers[f"expected-{kind}"][: len(got)]
        wrong = sum(g != e for g, e in zip(got, expected, strict=True))
        if wrong:
            found.append(f"{name}: {wrong}/{len(got)} differ")
    return tuple(found)


def make_mix(
    content: Content, options: Options
) -> tuple[list[Row], list[Question], list[Row], dict[str, tuple[bool, ...]]]:
    """A seeded random mix: working-set tenants x every matrix cell, their assessments, misses;
    and the generated policy's answers to each (the truth every column is checked against)."""
    rng = random.Random(f"{options.seed}:{content.tenants}")
    working = content.working(rng, options.working_set)
    outside = sorted(set(range(content.tenants)) - set(working)) or working
    cells = content.workflow.cells()

    def requests(tenants: list[int], count: int) -> list[Row]:
        return [(content.tenant(rng.choice(tenants)), *rng.choice(cells)) for _ in range(count)]

    hits = requests(working, options.mix)
    misses = requests(outside[: options.misses], options.misses)
    asked = content.questions(rng, working, options.mix)
    expected = {
        "expected-requests": content.allowed(hits),
        "expected-misses": content.allowed(misses),
        "expected-questions": tuple(answer for _, answer in asked),
    }
    return hits, [internals.question(**body) for body, _ in asked], misses, expected


# -- the columns ---------------------------------------------------------------------------------


def raw_column(casbin_engine: Engine, requests: Sequence[Row]) -> Callable[[Row], bool]:
    """(a): what a user writes -- an Enforcer on model.conf with the adapter, filtered to one
    tenant -- for each working-set tenant, each asked its own requests."""
    enforcers, model = {}, str(internals.model_path())
    for tenant in sorted({r[0] for r in requests}):
        adapter = Adapter(casbin_engine, filtered=True, create_all_models=False)
        enforcers[tenant] = casbin.Enforcer(model, adapter)
        wanted = Filter()
        wanted.ptype, wanted.v0 = ["p"], [tenant]  # instance attributes: Filter's lists are shared
        enforcers[tenant].load_filtered_policy(wanted)
    return lambda r: enforcers[r[0]].enforce(*r)


def floor_column(content: Content) -> Callable[[Row], bool]:
    """(d): membership of the 5-tuple in a frozenset of every row in the store."""
    rows = frozenset(r for i in range(content.tenants) for r in content.rows(i))
    return lambda r: r in rows


def measure_stock(
    casbin_engine: Engine, requests: Sequence[Row], options: Options
) -> tuple[float, float, list[bool]]:
    """(a-all): the stock Enforcer loading every tenant's rows; load seconds, µs, answers."""
    model, adapter = str(internals.model_path()), Adapter(casbin_engine, create_all_models=False)
    enforcer, load_s = timed(lambda: casbin.Enforcer(model, adapter))
    answers, timing = per_call(
        lambda r: enforcer.enforce(*r), requests, seconds=0, runs=options.stock_runs
    )
    return load_s, timing.us_per_call, answers


# -- the table -----------------------------------------------------------------------------------


def render(results: Sequence[Result], options: Options) -> str:
    """One table, a row per store, then the legend and how each figure was taken."""
    return table.render(COLUMNS, [_cells(r, _base(results, r)) for r in results], _legend(options))


def _base(results: Sequence[Result], result: Result) -> Result | None:
    """The same backend's result with the fewest tenants (the 1-tenant baseline), if another."""
    base = min((r for r in results if r.backend == result.backend), key=lambda r: r.tenants)
    return None if base is result else base


def _cells(r: Result, base: Result | None) -> list[str]:
    us = r.us
    return [
        f"{r.tenants:,}",
        f"{r.rows:,}",
        r.backend,
        f"{r.stock_load_s:.2f}",
        *(_us(us[col]) for col in ("a-all", "a", "b", "b-miss", "c", "d")),
        table.at_least(us["a"] / us["b"], TARGET_A_OVER_B),
        table.at_least(us["a"] / us["c"], TARGET_A_OVER_C),
        table.at_most(us["b"] / base.us["b"], TARGET_SCALING) if base else "—",
        table.at_most(us["c"] / base.us["c"], TARGET_SCALING) if base else "—",
        "; ".join(r.disagreements) or f"{r.checked:,}, all agree",
    ]


def _us(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def _legend(options: Options) -> list[str]:
    """What the columns mean and how they were measured, printed under the table."""
    return [
        f"µs per decision: median of {options.runs} rounds; each round times one "
        f"~{options.seconds:g} s run of every column (a, b, b-miss, c, d) of every store "
        "of the backend, interleaved.",
        "a: casbin.Enforcer(model.conf) + casbin_sqlalchemy_adapter filtered to the tenant "
        "(one enforcer per tenant); a-all: the stock unfiltered Enforcer with every row "
        f"(load time in s; median of {options.stock_runs} runs over {options.stock_mix} requests).",
        "b: PolicyEngine.decide, version in hand, tenant resident; b-miss: tenant not resident "
        "(forgotten first, its rows read in a read transaction of its own).",
        "c: decisions.answer(conn, engine, Question(assessment=id)) in db.read(); "
        "d: frozenset membership of the 5-tuple among every row (floor).",
        f"Mix: {options.mix} requests over a working set of up to {options.working_set} tenants x "
        "every matrix cell (allows and denies); as many random assessments; seeded.",
        f"Policy cache capacity: {internals.cache_capacity()} tenants (the service default, "
        "POLICY_CACHE_TENANTS): the working set is resident, so b and c are steady-state hits.",
        "a/b and a/c use the filtered enforcer (a); b(N)/b(1) and c(N)/c(1) compare each row "
        "with the same backend's 1-tenant row. Every answer is checked against the policy.",
    ]


if __name__ == "__main__":
    sys.exit(main())
