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
from typing import Any

import casbin
from casbin_sqlalchemy_adapter import Adapter
from casbin_sqlalchemy_adapter.adapter import Filter
from sqlalchemy import Engine, create_engine

from bench import cli, internals, table
from bench.cli import Progress
from bench.internals import Cell, Local, Question, Row
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
    disagreements: tuple[str, ...] = ()

    @property
    def checked(self) -> int:
        """How many answers were compared with the generated policy."""
        return sum(len(v) for k, v in self.answers.items() if k in EXPECTED_FOR)


@dataclass(frozen=True)
class Mix:
    """The requests of one store: 5-tuples, assessment questions, misses; expected answers."""

    requests: list[Row]
    questions: list[Question]
    misses: list[Row]
    expected: dict[str, tuple[bool, ...]]


EXPECTED_FOR = {
    "a": "requests",
    "a-all": "requests",
    "b": "requests",
    "d": "requests",
    "b-miss": "misses",
    "c": "questions",
}
"""Which expected answers each column's answers are compared with (a-all: a prefix)."""


@dataclass
class Bench:
    """What one store's measurements share: the store, the service's engine, the mix."""

    store: Store
    options: Options
    local: Local
    casbin_engine: Engine
    model_path: str
    mix: Mix


@dataclass
class Prepared:
    """One store after its checking pass: a timed run per column and every column's answers."""

    bench: Bench
    runs: dict[str, Run]
    answers: dict[str, tuple[bool, ...]]


def main(argv: Sequence[str] | None = None) -> int:
    """Measure every store, print the table; 1 if any answer disagreed."""
    return cli.main(parse_args(argv), run, render, lambda rs: any(r.disagreements for r in rs))


def parse_args(argv: Sequence[str] | None) -> Options:
    """Options from the command line; PostgreSQL is dropped from `both` when it is unreachable."""
    backends, counts, quick = cli.store_args("bench.decisions", __doc__, argv, "1,10000")
    return cli.given(Options(backends, counts), QUICK if quick else {})


def run(options: Options, progress: Progress = lambda _: None) -> list[Result]:
    """Measure every backend in turn; one result per backend and tenant count."""
    results: list[Result] = []
    for backend in options.backends:
        results += run_backend(backend, options, progress)
    return results


def run_backend(backend: str, options: Options, progress: Progress) -> list[Result]:
    """Every tenant count's store side by side, their timed runs interleaved, then removed."""
    with ExitStack() as stack:
        prepared = []
        for count in options.tenant_counts:
            progress(f"{backend}, {count} tenants: populating the store")
            content = Content(internals.workflow(), count, options.assessments_per_tenant)
            store = stack.enter_context(temporary_store(backend, content))
            bench = stack.enter_context(open_bench(store, options))
            progress(f"{backend}, {count} tenants: answering the mix with every column")
            prepared.append(prepare_columns(bench))
        progress(f"{backend}: timing {options.runs} interleaved rounds")
        timings = interleaved(
            {
                (p.bench.store.content.tenants, col): run
                for p in prepared
                for col, run in p.runs.items()
            },
            options.runs,
        )
        results = []
        for p in prepared:
            progress(f"{backend}, {p.bench.store.content.tenants} tenants: the stock enforcer")
            count = p.bench.store.content.tenants
            us = {col: timings[(count, col)].us_per_call for col in p.runs}
            results.append(finish(p, us))
            gc.collect()  # the stock enforcer held every row; free it before the next one
        return results


@contextmanager
def open_bench(store: Store, options: Options) -> Iterator[Bench]:
    """The service's store and engine and a plain engine for casbin, closed afterwards."""
    local = Local.open(store.url, pool_size=2, capacity=internals.cache_capacity())
    casbin_engine = create_engine(store.url)
    mix = make_mix(store.content, options)
    try:
        yield Bench(store, options, local, casbin_engine, str(internals.model_path()), mix)
    finally:
        casbin_engine.dispose()
        local.close()


def prepare_columns(bench: Bench) -> Prepared:
    """Answer the whole mix with each interleaved column (the warm-up) and size its runs."""
    mix, seconds, local = bench.mix, bench.options.seconds, bench.local
    versions = dict.fromkeys(bench.store.content.names(), 1)
    done = {
        "a": prepare(raw_column(bench), mix.requests, seconds=seconds),
        "b": prepare(local.cell_decider(versions), mix.requests, seconds=seconds),
        "b-miss": prepare(local.cold_cell_decider(), mix.misses, seconds=seconds),
        "c": prepare(local.decide, mix.questions, seconds=seconds),
        "d": prepare(floor_column(bench), mix.requests, seconds=seconds),
    }
    runs = {name: run for name, (_, run) in done.items()}
    return Prepared(bench, runs, {name: tuple(found) for name, (found, _) in done.items()})


def finish(p: Prepared, us: dict[str, float]) -> Result:
    """Add the stock enforcer's figures to a store's timings and check every answer."""
    stock_load_s, stock_us, stock = measure_stock(p.bench)
    answers = {**p.answers, "a-all": tuple(stock)}
    answers |= {f"expected-{k}": v for k, v in p.bench.mix.expected.items()}
    return Result(
        backend=p.bench.store.backend,
        tenants=p.bench.store.content.tenants,
        rows=p.bench.store.rows,
        us={**us, "a-all": stock_us},
        stock_load_s=stock_load_s,
        answers=answers,
        disagreements=disagreements(answers),
    )


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


# -- the request mix -----------------------------------------------------------------------------


def make_mix(content: Content, options: Options) -> Mix:
    """A seeded random mix: working-set tenants x every matrix cell, their assessments, misses."""
    rng = random.Random(f"{options.seed}:{content.tenants}")
    working = rng.sample(range(content.tenants), min(options.working_set, content.tenants))
    outside = sorted(set(range(content.tenants)) - set(working)) or working
    cells = content.workflow.cells()
    requests = _requests(rng, content, working, cells, options.mix)
    misses = _requests(rng, content, outside[: options.misses], cells, options.misses)
    asked = [content.question(rng, rng.choice(working)) for _ in range(options.mix)]
    return Mix(
        requests,
        [internals.question(**body) for body, _ in asked],
        misses,
        {
            "requests": _allowed(content, requests),
            "misses": _allowed(content, misses),
            "questions": tuple(expected for _, expected in asked),
        },
    )


def _requests(
    rng: random.Random, content: Content, tenants: list[int], cells: list[Cell], count: int
) -> list[Row]:
    """`count` requests, each a random tenant of `tenants` and a random matrix cell."""
    return [(content.tenant(rng.choice(tenants)), *rng.choice(cells)) for _ in range(count)]


def _allowed(content: Content, rows: list[Row]) -> tuple[bool, ...]:
    """The generated policy's answer for each row (the truth every column is checked against)."""
    asked = {r[0] for r in rows}
    index = {content.tenant(i): i for i in range(content.tenants)}
    cells = {tenant: content.cells(i) for tenant, i in index.items() if tenant in asked}
    return tuple((r[1], r[2], r[3], r[4]) in cells[r[0]] for r in rows)


# -- the columns ---------------------------------------------------------------------------------


def raw_enforcer(bench: Bench, tenant: str) -> casbin.Enforcer:
    """What a user writes: an Enforcer on model.conf with the adapter, filtered to one tenant."""
    adapter = Adapter(bench.casbin_engine, filtered=True, create_all_models=False)
    enforcer = casbin.Enforcer(bench.model_path, adapter)
    wanted = Filter()
    wanted.ptype, wanted.v0 = ["p"], [tenant]  # instance attributes: Filter's lists are shared
    enforcer.load_filtered_policy(wanted)
    return enforcer


def raw_column(bench: Bench) -> Callable[[Row], bool]:
    """(a): one filtered casbin Enforcer per working-set tenant, each asked its own requests."""
    enforcers = {t: raw_enforcer(bench, t) for t in sorted({r[0] for r in bench.mix.requests})}

    def enforce(r: Row) -> bool:
        allowed: bool = enforcers[r[0]].enforce(*r)
        return allowed

    return enforce


def floor_column(bench: Bench) -> Callable[[Row], bool]:
    """(d): membership of the 5-tuple in a frozenset of every row in the store."""
    content = bench.store.content
    rows = frozenset(r for i in range(content.tenants) for r in content.rows(i))

    def member(r: Row) -> bool:
        return r in rows

    return member


def measure_stock(bench: Bench) -> tuple[float, float, list[bool]]:
    """(a-all): the stock Enforcer loading every tenant's rows; load seconds, µs, answers."""
    adapter = Adapter(bench.casbin_engine, create_all_models=False)
    enforcer, load_s = timed(lambda: casbin.Enforcer(bench.model_path, adapter))

    def enforce(r: Row) -> bool:
        allowed: bool = enforcer.enforce(*r)
        return allowed

    options = bench.options
    requests = bench.mix.requests[: options.stock_mix]
    answers, timing = per_call(enforce, requests, seconds=0, runs=options.stock_runs)
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
