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

import argparse
import math
import re
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

from bench.server import Server, create_admin, create_api_key, serving
from bench.store import Content, postgres_available, temporary_store
from service import assessments, matrix, policy_changes
from service.cli import default_cells
from service.config import load_config
from service.db import Database
from service.policies import PolicyEngine
from service.policies.store import current_version, tenant_cells
from service.workflows import Cell, Workflow, load_workflow

TARGET_P99_S = 1.0
WRITERS = ("admin", "store")
TENANT = "propagation"
ROLE = "parent"
ACTION = "view"
CSRF = re.compile(r'name="csrf_token"\s+value="([^"]+)"')
COLUMNS = (
    "writer",
    "changes",
    "p50 ms",
    "p99 ms",
    "max ms",
    "p50 ms from sent",
    "p99 ms from sent",
    "save p50 ms",
    "polls/change",
    "stale answers",
    f"p99 ≤ {TARGET_P99_S:g} s",
)


class PropagationError(RuntimeError):
    """A save failed, or the other process never gave the new answer within the time allowed."""


@dataclass(frozen=True)
class Options:
    """How many changes, through which writers, on how large a store and how many workers."""

    changes: int = 50
    writers: tuple[str, ...] = WRITERS
    tenants: int = 100
    workers: int = 2
    """gunicorn workers per server: a poll may reach any of B's workers."""
    timeout: float = 10.0
    """Seconds one change may take to show before the run fails."""

    @classmethod
    def quick(cls, writers: tuple[str, ...]) -> Options:
        """A tiny run for tests."""
        return cls(changes=3, writers=writers, tenants=2, workers=1)


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


@dataclass(frozen=True)
class Target:
    """The cell toggled and the question about one assessment whose answer it decides."""

    tenant: str
    assessment: str
    area: str
    phase: str

    @property
    def cell(self) -> Cell:
        """The matrix cell that decides the question."""
        return (ROLE, self.area, self.phase, ACTION)

    def question(self) -> dict[str, str]:
        """The POST /authorize body asked of the servers."""
        return {
            "tenant": self.tenant,
            "role": ROLE,
            "action": ACTION,
            "assessment": self.assessment,
        }


class Writer(Protocol):
    """Saves the target cell as allowed or not; returns the policy version the save made."""

    def save(self, allowed: bool) -> int:
        """Commit the cell as allowed or not; the new policy version."""
        ...

    def close(self) -> None:
        """Release the writer's store connections."""
        ...


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the table; 1 if a stale answer was seen."""
    options = parse_args(argv)
    results = run(options, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(render(results, options))
    return 1 if any(c.stale for r in results for c in r.changes) else 0


def parse_args(argv: Sequence[str] | None) -> Options:
    """Options from the command line; PostgreSQL is required."""
    parser = argparse.ArgumentParser(prog="python -m bench.propagation", description=__doc__)
    parser.add_argument("--changes", type=int, help="changes per writer (default 50)")
    parser.add_argument("--writer", choices=(*WRITERS, "both"), default="both")
    parser.add_argument("--workers", type=int, help="gunicorn workers per server (default 2)")
    parser.add_argument("--quick", action="store_true", help="a tiny, fast run (for tests)")
    args = parser.parse_args(argv)
    if not postgres_available():
        parser.error("PostgreSQL is not reachable (set WORKFLOW_AUTHZ_BENCH_PG_URL)")
    writers = WRITERS if args.writer == "both" else (args.writer,)
    options = Options.quick(writers) if args.quick else Options(writers=writers)
    if args.changes is not None:
        options = replace(options, changes=args.changes)
    if args.workers is not None:
        options = replace(options, workers=args.workers)
    if options.changes < 1 or options.workers < 1:
        parser.error("--changes and --workers must be positive")
    return options


def run(options: Options, progress: Callable[[str], None] = lambda _: None) -> list[Result]:
    """Two servers on one new PostgreSQL database; every writer's changes in turn."""
    workflow = load_workflow(Path(load_config()["POLICY_DIR"]) / "workflow.toml")
    content = Content(workflow, options.tenants, assessments_per_tenant=2)
    progress(f"postgres: populating {options.tenants} tenants")
    with temporary_store("postgres", content) as store:
        target = prepare_target(store.url, workflow)
        key = create_api_key(store.url)
        username, password = create_admin(store.url)
        with (
            serving(store.url, workers=options.workers) as a,
            serving(store.url, workers=options.workers) as b,
        ):
            results = []
            for name in options.writers:
                progress(f"{name}: {options.changes} changes, saved through {name}")
                writer = make_writer(name, store.url, a, workflow, target, (username, password))
                try:
                    results.append(Result(name, tuple(measure(writer, b, key, target, options))))
                finally:
                    writer.close()
            return results


def prepare_target(url: str, workflow: Workflow) -> Target:
    """A new tenant with the default policy (a matrix the form accepts) and one assessment."""
    engine = PolicyEngine.from_settings(Database(url, 1), load_config())
    area = workflow.areas[0]
    target = Target(TENANT, "propagation-1", area.id, area.first_phase.id)
    try:
        with engine.db.write() as conn:
            engine.create_tenant(conn, TENANT, default_cells(), actor="bench")
            assessments.create(conn, workflow, TENANT, target.assessment, area.id)
    finally:
        engine.db.dispose()
    return target


def make_writer(
    name: str,
    url: str,
    server: Server,
    workflow: Workflow,
    target: Target,
    login: tuple[str, str],
) -> Writer:
    """The writer called `name`: the admin form on `server`, or the store from this process."""
    if name == "admin":
        return AdminFormWriter(server, url, workflow, target, login)
    return StoreWriter(url, target)


# -- measuring -----------------------------------------------------------------------------------


def measure(writer: Writer, b: Server, key: str, target: Target, options: Options) -> list[Change]:
    """Toggle the cell `options.changes` times, each time polling B until its answer flips."""
    allowed = ask(b, key, target)[0]  # also loads the tenant into B's cache
    changes = []
    for _ in range(options.changes):
        allowed = not allowed
        changes.append(one_change(writer, b, key, target, allowed, options.timeout))
    return changes


def one_change(
    writer: Writer, b: Server, key: str, target: Target, allowed: bool, timeout: float
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


def ask(server: Server, key: str, target: Target) -> tuple[bool, int]:
    """The server's answer to the target question and the policy version it was decided at."""
    reply = server.post_json("/authorize", target.question(), key)
    if reply.status != 200:
        raise PropagationError(f"POST /authorize: {reply.status} {reply.body[:300]!r}")
    data = reply.json()
    return bool(data["allowed"]), int(data["policy_version"])


# -- writers -------------------------------------------------------------------------------------


def toggled(cells: set[Cell], cell: Cell, allowed: bool) -> set[Cell]:
    """`cells` with `cell` added or removed."""
    return cells | {cell} if allowed else cells - {cell}


class StoreWriter:
    """Saves as any process holding the store would: PolicyEngine.replace in one transaction."""

    def __init__(self, url: str, target: Target) -> None:
        self.engine = PolicyEngine.from_settings(Database(url, 1), load_config())
        self.target = target

    def save(self, allowed: bool) -> int:
        """Toggle the cell in the tenant's rows of its area, in one write transaction."""
        tenant, area = self.target.tenant, self.target.area
        with self.engine.db.write() as conn:
            cells = toggled(set(tenant_cells(conn, tenant, area)), self.target.cell, allowed)
            result = policy_changes.save(conn, self.engine, tenant, cells, actor="bench", area=area)
        if not result.changes:
            raise PropagationError("the store writer's save changed nothing")
        return result.version

    def close(self) -> None:
        """Release the store connections."""
        self.engine.db.dispose()


class AdminFormWriter:
    """Saves through the sysadmin form of a server: logs in once, then posts the area's matrix."""

    def __init__(
        self, server: Server, url: str, workflow: Workflow, target: Target, login: tuple[str, str]
    ) -> None:
        self.browser = Browser(server)
        self.db = Database(url, 1)
        self.workflow = workflow
        self.target = target
        try:
            self.browser.log_in(*login)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the store connections."""
        self.db.dispose()

    def save(self, allowed: bool) -> int:
        """Post the form as a browser would after ticking or unticking the one checkbox."""
        tenant = self.target.tenant
        area = self.workflow.area_by_id[self.target.area]
        with self.db.read() as conn:  # what the page would have shown when it was loaded
            version = current_version(conn, tenant)
            cells = set(tenant_cells(conn, tenant, area.id))
        draft = matrix.from_cells(area, toggled(cells, self.target.cell, allowed))
        fields = [("tenant", tenant), ("version", str(version)), ("step", "save")]
        fields += matrix.form_fields(self.workflow, draft)
        reply = self.browser.post_form(f"/admin/workflow/{area.id}", fields)
        if reply.status != 303 or version is None:
            raise PropagationError(f"admin save: {reply.status} {reply.body[:300]!r}")
        return version + 1


class Browser:
    """Just enough of a browser for the admin form: a session cookie and the CSRF token."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.cookies: dict[str, str] = {}
        self.token = ""

    def log_in(self, username: str, password: str) -> None:
        """Log in, then fetch a page again for the CSRF token of the new session."""
        self.refresh_token()
        reply = self.post_form("/admin/login", [("username", username), ("password", password)])
        if reply.status != 303:
            raise PropagationError(f"admin login: {reply.status} {reply.body[:300]!r}")
        self.refresh_token()

    def refresh_token(self) -> None:
        """Read the CSRF token from the login page (which every session may fetch)."""
        found = CSRF.search(self.request("GET", "/admin/login").body.decode("utf-8", "replace"))
        if found is None:
            raise PropagationError("no CSRF token on /admin/login")
        self.token = found.group(1)

    def post_form(self, path: str, fields: list[tuple[str, str]]) -> Any:
        """POST url-encoded fields plus the CSRF token; redirects are not followed."""
        body = urlencode([("csrf_token", self.token), *fields]).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        return self.request("POST", path, body, headers)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One request with the cookies held so far; keeps the cookies the answer sets."""
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        reply = self.server.request(method, path, body, sent)
        for header in reply.cookies:
            jar: SimpleCookie = SimpleCookie()
            jar.load(header)
            self.cookies.update({name: morsel.value for name, morsel in jar.items()})
        return reply


# -- the table -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank q-th percentile (p99 of 50 values is the largest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def render(results: Sequence[Result], options: Options) -> str:
    """One table, a row per writer, then how the figures were taken."""
    rows = [_cells(r) for r in results]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(COLUMNS)]
    lines = [_line(COLUMNS, widths), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [_line(row, widths) for row in rows]
    return "\n".join([*lines, "", *_legend(options)])


def _cells(result: Result) -> list[str]:
    after_done = [c.seen_after_done_s for c in result.changes]
    after_sent = [c.seen_after_sent_s for c in result.changes]
    p99 = percentile(after_done, 99)
    polls = [c.polls for c in result.changes]
    return [
        result.writer,
        str(len(result.changes)),
        _ms(percentile(after_done, 50)),
        _ms(p99),
        _ms(max(after_done)),
        _ms(percentile(after_sent, 50)),
        _ms(percentile(after_sent, 99)),
        _ms(statistics.median(c.save_s for c in result.changes)),
        f"{statistics.mean(polls):.2f} (max {max(polls)})",
        str(sum(c.stale for c in result.changes)),
        f"{'met' if p99 <= TARGET_P99_S else 'MISSED'}",
    ]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _line(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) + " |"


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
