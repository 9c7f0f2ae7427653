"""Propagation benchmark: a policy change saved through one server process, seen by another.

Two `workflow-authz serve` processes (A and B) share one PostgreSQL database. A cell is toggled
(a parent's view of the phase an assessment is in, in a tenant of its own with
the default policy, beside `--tenants` generated ones) and B's POST /authorize about that assessment
is polled until its answer flips; the delay is measured from the moment the save was answered
(the commit is done) and from the moment it was sent. Two ways of saving, each `--changes` times:
  admin  the sysadmin form's save on server A (POST /admin/workflow/<area>, logged in, CSRF);
  store  PolicyEngine.replace in one write transaction from this, a third, process.
Target: p99 delay <= 1 s. Every answer B gives after a save is checked: the old answer once the
new version is committed counts as stale (the design says there are none).

    python -m bench.propagation [--changes 50] [--writer admin|store|both] [--quick]
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

from bench import cli, internals, table
from bench.admin_form import AdminFormWriter, PropagationError, Target, ask, prepare_target
from bench.cli import Progress
from bench.internals import Local
from bench.server import Server, create_admin, create_api_key, serving
from bench.store import Content, postgres_available, temporary_store

TARGET_P99_S = 1.0
WRITERS = ("admin", "store")
COLUMNS = table.columns(
    "| writer | changes | p50 ms | p99 ms | max ms | p50 ms from sent "
    "| p99 ms from sent | save p50 ms | polls/change | stale answers "
    f"| p99 ≤ {TARGET_P99_S:g} s |"
)
__all__ = ["AdminFormWriter", "StoreWriter", "Target", "ask", "prepare_target"]  # for the tests


@dataclass(frozen=True)
class Options:
    """How many changes, through which writers, on how large a store and how many workers."""

    changes: int = 50
    writers: tuple[str, ...] = WRITERS
    tenants: int = 100
    workers: int = 2
    """Worker processes per server: a poll may reach any of B's workers."""
    timeout: float = 10.0
    """Seconds one change may take to show before the run fails."""


QUICK = {"changes": 3, "tenants": 2, "workers": 1}


@dataclass(frozen=True)
class Change:
    """One saved change: how long the save took, when B first answered with it, how many polls."""

    save_s: float
    seen_after_done_s: float
    seen_after_sent_s: float
    polls: int
    stale: int


@dataclass(frozen=True)
class Result:
    """Every change made through one writer."""

    writer: str
    changes: tuple[Change, ...]


class StoreWriter:
    """Saves as any process holding the store would: PolicyEngine.replace in one transaction.
    Like an AdminFormWriter, `save(allowed)` returns the policy version the save made."""

    def __init__(self, url: str, target: Target) -> None:
        self.local = Local.open(url)
        self.target = target

    def save(self, allowed: bool) -> int:
        """Toggle the cell in the tenant's rows of its area, in one write transaction."""
        changed, version = self.local.toggle(self.target.tenant, self.target.cell, allowed)
        if not changed:
            raise PropagationError("the store writer's save changed nothing")
        return version

    def close(self) -> None:
        """Release the store connections."""
        self.local.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the table; 1 if a stale answer was seen."""
    return cli.main(
        parse_args(argv), run, render, lambda rs: any(c.stale for r in rs for c in r.changes)
    )


def parse_args(argv: Sequence[str] | None) -> Options:
    """Options from the command line; PostgreSQL is required."""
    parser = cli.parser("bench.propagation", __doc__)
    count = cli.positive(int)
    parser.add_argument("--changes", type=count, help="changes per writer (default 50)")
    parser.add_argument("--writer", choices=(*WRITERS, "both"), default="both")
    parser.add_argument("--workers", type=count, help="worker processes per server (default 2)")
    args = parser.parse_args(argv)
    if not postgres_available():
        parser.error("PostgreSQL is not reachable (set WORKFLOW_AUTHZ_BENCH_PG_URL)")
    writers = WRITERS if args.writer == "both" else (args.writer,)
    return cli.options(Options(writers=writers), QUICK, args)


def run(options: Options, progress: Progress = lambda _: None) -> list[Result]:
    """Two servers on one new PostgreSQL database; every writer's changes in turn."""
    workflow = internals.workflow()
    content = Content(workflow, options.tenants, assessments_per_tenant=2)
    progress(f"postgres: populating {options.tenants} tenants")
    with temporary_store("postgres", content) as store:
        target = prepare_target(store.url, workflow)
        key, login = create_api_key(store.url), create_admin(store.url)
        with (
            serving(store.url, workers=options.workers) as a,
            serving(store.url, workers=options.workers) as b,
        ):
            results = []
            for name in options.writers:
                progress(f"{name}: {options.changes} changes, saved through {name}")
                writer: AdminFormWriter | StoreWriter = (
                    AdminFormWriter(a, store.url, workflow, target, login)
                    if name == "admin"
                    else StoreWriter(store.url, target)
                )
                try:
                    results.append(Result(name, tuple(measure(writer, b, key, target, options))))
                finally:
                    writer.close()
            return results


def measure(
    writer: AdminFormWriter | StoreWriter, b: Server, key: str, target: Target, options: Options
) -> list[Change]:
    """Toggle the cell `options.changes` times, each time polling B until its answer flips."""
    allowed = ask(b, key, target)[0]  # also loads the tenant into B's cache
    changes = []
    for _ in range(options.changes):
        allowed = not allowed
        changes.append(one_change(writer, b, key, target, allowed, options.timeout))
    return changes


def one_change(
    writer: AdminFormWriter | StoreWriter,
    b: Server,
    key: str,
    target: Target,
    allowed: bool,
    timeout: float,
) -> Change:
    """Save, then ask B until it answers `allowed` at the saved version (or time runs out)."""
    sent = time.perf_counter()
    version = writer.save(allowed)
    done = time.perf_counter()
    polls = stale = 0
    while True:
        answer, answer_version = ask(b, key, target)
        polls += 1
        seen = time.perf_counter()
        if answer == allowed and answer_version >= version:
            return Change(done - sent, seen - done, seen - sent, polls, stale)
        stale += 1  # committed before this question was sent, yet not in its answer
        if seen - done > timeout:
            raise PropagationError(f"B still answers {answer} {timeout:g} s after the save")


# -- the table -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank q-th percentile (p99 of 50 values is the largest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def render(results: Sequence[Result], options: Options) -> str:
    """One table, a row per writer, then how the figures were taken."""
    return table.render(COLUMNS, [_cells(r) for r in results], _legend(options))


def _cells(result: Result) -> list[str]:
    after_done = [c.seen_after_done_s for c in result.changes]
    after_sent = [c.seen_after_sent_s for c in result.changes]
    polls = [c.polls for c in result.changes]
    return [
        result.writer,
        str(len(result.changes)),
        *(_ms(percentile(after_done, q)) for q in (50, 99, 100)),
        *(_ms(percentile(after_sent, q)) for q in (50, 99)),
        _ms(statistics.median(c.save_s for c in result.changes)),
        f"{statistics.mean(polls):.2f} (max {max(polls)})",
        str(sum(c.stale for c in result.changes)),
        table.met(percentile(after_done, 99) <= TARGET_P99_S),
    ]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _legend(options: Options) -> list[str]:
    """What the columns mean, printed under the table."""
    return [
        f"Two `workflow-authz serve --workers {options.workers}` processes (A, B) on one "
        f"PostgreSQL database holding {options.tenants} tenants; loopback HTTP.",
        "Delay: from the save's answer (committed) to B's first answer with the new policy, "
        "including that request's round trip; 'from sent' counts from the start of the save.",
        "admin: the Workflow form's save on A (logged in, CSRF token, POST /admin/workflow/<area>, "
        "303); store: PolicyEngine.replace in one write transaction from a third process.",
        "polls/change: POST /authorize calls to B until it answered the new policy (1 = the very "
        "next request); stale answers: old answers B gave after the save had committed.",
    ]


if __name__ == "__main__":
    sys.exit(main())
