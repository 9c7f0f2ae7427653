"""Soak: minutes of load on one server, counting every error and watching resident memory.

One `workflow-authz serve` (a fixed number of worker processes) on a temporary store of many
tenants, loopback only, for `--minutes`:
  load     wrk against POST /authorize (the `assessment` form, an all-tenant key) over many tenants
           and assessments, for the whole run; one body in 20 is about the tenant whose policy the
           state changes keep saving, so every worker keeps reloading it under load;
  changes  at the same time, from a thread of this process, a steady trickle of state changes:
           assessments created, advanced through their phases (two identical advances sent at once:
           exactly one must win), advanced past the end (409), advanced by a role the policy
           refuses (403), reopened with a reason and advanced again, their history checked; and a
           policy save through the admin form every few seconds (log in, CSRF token, POST
           /admin/workflow/<area>) ticking and unticking one checkbox of one tenant, after which
           POST /authorize must answer with the new policy.
Every worker's resident memory (VmRSS) is sampled throughout. Targets: 0 errors, and at most
10 % growth of the workers' summed RSS from just after the warm-up (the first 10 % of the run) to
the end. Everything stops by itself; the store and every process are removed at the end.

    python -m bench.soak [--minutes 10] [--backend sqlite|postgres] [--quick]
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise
from typing import Any

from bench import cli, internals, table, wrk
from bench.admin_form import TENANT, AdminFormWriter, Target, ask, prepare_target
from bench.cli import Progress
from bench.internals import Area, Cell, Phase
from bench.server import (
    Reply,
    RssSampler,
    Sample,
    Server,
    api_headers,
    create_admin,
    create_api_key,
    poll,
    serving,
    wrong_answers,
)
from bench.store import Asked, Body, Content, temporary_store
from bench.wrk import Load, WrkFigures

TARGET_ERRORS = 0
TARGET_GROWTH_PCT = 10.0
TARGET_SHARE = 20
"""One wrk body in TARGET_SHARE asks about the tenant whose policy is being saved."""
ACTOR = "soak"
REASON = "soak: reopened to check the workflow under load"
ADVANCE, REOPEN = "advance", "reopen"
EXAMPLES = 10
"""How many failure messages are kept and printed (the counts hold them all)."""
COLUMNS = table.columns(
    "| backend | workers | conns | minutes | requests | req/s | p50 ms | p99 ms "
    "| wrk errors | state changes | expected 4xx | failed | RSS MiB after warm-up "
    f"| RSS MiB at end | errors (target {TARGET_ERRORS}) "
    f"| RSS growth % (≤{TARGET_GROWTH_PCT:g}) |"
)


@dataclass(frozen=True)
class Options:
    """How long, on which store, how loaded, how often memory is sampled and state changed."""

    backend: str = "sqlite"
    seconds: int = 600
    workers: int = 4
    connections: int = 8
    tenants: int = 1000
    working_set: int = 1000
    """Tenants the wrk bodies spread over (all fit in the policy cache of 2048)."""
    assessments_per_tenant: int = 20
    bodies: int = 2000
    checked: int = 200
    """wrk's questions whose answers are checked against the generated policy, before and after."""
    warmup_share: float = 0.10
    window_share: float = 0.05
    """The RSS figures are medians of the samples in a window this long (share of the run)."""
    sample_every: float = 2.0
    pace: float = 0.2
    """Seconds between two state-change calls."""
    save_every: float = 5.0
    """Seconds between two policy saves through the admin form."""
    timeout: float = 10.0
    """wrk's and the state changes' timeout for one request, in seconds."""
    seed: str = "soak"

    @property
    def warmup_s(self) -> float:
        """The warm-up: load runs, but memory is compared only from its end on."""
        return self.seconds * self.warmup_share

    @property
    def window_s(self) -> float:
        """The length of the windows the RSS medians are taken over."""
        return max(self.sample_every, self.seconds * self.window_share)


QUICK: dict[str, Any] = {
    "seconds": 10,
    "workers": 2,
    "connections": 2,
    "tenants": 5,
    "working_set": 5,
    "assessments_per_tenant": 5,
    "bodies": 50,
    "checked": 10,
    "sample_every": 0.25,
    "pace": 0.05,
    "save_every": 1.0,
}
"""A short, small run for tests (about 20 s in all)."""


@dataclass
class Tally:
    """The state changes made: calls by kind, correct refusals by kind, failures by kind."""

    calls: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    """4xx answers that are the correct answer (the race's loser, past the end, not allowed)."""
    failures: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def fail(self, kind: str, message: str) -> bool:
        """Count one failure of `kind`, keep the first few messages; always False."""
        self.failures[kind] += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(f"{kind}: {message}")
        return False


@dataclass(frozen=True)
class Memory:
    """RSS just after the warm-up and at the end, as medians over a window of samples."""

    after_warmup: tuple[float, float]
    """(sum, largest worker) in MiB."""
    at_end: tuple[float, float]
    samples: int
    peak: float

    @property
    def growth_pct(self) -> float:
        """How much the workers' summed RSS grew from after the warm-up to the end, in %."""
        if self.after_warmup[0] <= 0:
            return float("inf")  # no worker was alive to measure: never a met target
        return (self.at_end[0] - self.after_warmup[0]) / self.after_warmup[0] * 100


@dataclass(frozen=True)
class Result:
    """Everything one soak measured."""

    options: Options
    wrk: WrkFigures
    tally: Tally
    memory: Memory
    wrong_answers: int
    restarts: int
    log_errors: int

    @property
    def failed(self) -> int:
        """State changes with another outcome than the expected one."""
        return self.tally.failures.total()

    @property
    def errors(self) -> int:
        """Every error: wrk's, failed state changes, wrong answers, restarts, log errors."""
        return self.wrk.errors + self.failed + self.wrong_answers + self.restarts + self.log_errors

    @property
    def met(self) -> bool:
        """Both targets met."""
        return self.errors <= TARGET_ERRORS and self.memory.growth_pct <= TARGET_GROWTH_PCT


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the table; 1 if a target was missed (an error, or memory grew too much)."""
    return cli.main(parse_args(argv), run, lambda result, _: render(result), lambda r: not r.met)


def parse_args(argv: Sequence[str] | None) -> Options:
    """Options from the command line."""
    parser = cli.parser("bench.soak", __doc__, quick="a ~20 s run (for tests)")
    parser.add_argument("--minutes", type=float, help="length of the load (default 10)")
    cli.add_backend(parser, both=False)
    args = parser.parse_args(argv)
    cli.require_wrk(parser)
    options = cli.options(Options(cli.backends(parser, args.backend)[0]), QUICK, args)
    if args.minutes is not None:
        if not 0 < args.minutes <= 24 * 60:
            parser.error("--minutes must be positive and at most a day")
        options = cli.given(options, {"seconds": max(1, round(args.minutes * 60))})
    return options


def run(options: Options, progress: Progress = lambda _: None) -> Result:
    """Populate a store, start the server, soak it (wrk for the whole run, the state changes and
    the RSS sampler in threads beside it), check it; everything removed on exit."""
    workflow = internals.workflow()
    content = Content(workflow, options.tenants, options.assessments_per_tenant)
    rng = random.Random(f"{options.seed}:{content.tenants}")
    singles = content.questions(rng, content.working(rng, options.working_set), options.bodies)
    checked = singles[: options.checked]
    with ExitStack() as stack:
        progress(f"{options.backend}: populating {options.tenants} tenants, starting the server")
        store = stack.enter_context(temporary_store(options.backend, content))
        target = prepare_target(store.url, workflow)
        key, login = create_api_key(store.url), create_admin(store.url)
        server = stack.enter_context(serving(store.url, workers=options.workers))
        poll(server, lambda: len(server.workers()) >= options.workers)  # readiness needs one
        workers = server.workers()
        writer = AdminFormWriter(server, store.url, workflow, target, login)
        stack.callback(writer.close)
        wrong = wrong_answers(server, key, checked)
        load = Load("POST", "/authorize", api_headers(key), wrk_bodies(singles, target))
        trickle = Trickle(server, key, content, target, writer, options)
        sampler = RssSampler(server, options.sample_every)
        progress(
            f"load: {options.seconds} s of wrk against POST /authorize plus state changes; "
            f"{options.workers} workers, pids {workers}"
        )
        output = wrk.run(
            server.url,
            load,
            connections=options.connections,
            seconds=options.seconds,
            timeout=options.timeout,
            statuses=True,
            report=reporter(trickle.tally, sampler.samples, progress),
            beside=(trickle.run, sampler.run),
        )
        progress("after the load: checking answers and the server's log")
        wrong += wrong_answers(server, key, checked)
        seen = {pid for s in sampler.samples for pid in s.rss} | set(server.workers())
        log_errors = server.log_errors()
    for example in trickle.tally.examples:
        progress(f"failed {example}")
    return Result(
        options=options,
        wrk=wrk.parse_figures(output),
        tally=trickle.tally,
        memory=memory(sampler.samples, options),
        wrong_answers=wrong,
        restarts=len(seen - set(workers)),
        log_errors=log_errors,
    )


def wrk_bodies(singles: Sequence[Asked], target: Target) -> tuple[str, ...]:
    """The generated questions, with one about the saved tenant's assessment every TARGET_SHARE."""
    bodies = []
    for number, (body, _) in enumerate(singles):
        if number % TARGET_SHARE == 0:
            bodies.append(json.dumps(target.question()))
        bodies.append(json.dumps(body))
    return tuple(bodies)


def reporter(tally: Tally, samples: list[Sample], progress: Progress) -> Callable[[float], None]:
    """A progress line on the workers' memory and the state changes, while the load runs."""

    def report(elapsed: float) -> None:
        rss = f"{samples[-1].total:.1f} MiB" if samples else "not sampled yet"
        calls, failed = tally.calls.total(), tally.failures.total()
        progress(
            f"  {elapsed:5.0f} s: workers' RSS {rss}, {calls} state-change calls, {failed} failed"
        )

    return report


def memory(samples: Sequence[Sample], options: Options) -> Memory:
    """RSS medians over the window after the warm-up and over the last window of the load."""
    if not samples:
        raise RuntimeError("no RSS sample was taken")
    start = options.warmup_s
    after = [s for s in samples if start <= s.at < start + options.window_s]
    after = after or [next((s for s in samples if s.at >= start), samples[-1])]
    end = [s for s in samples if s.at >= samples[-1].at - options.window_s]
    return Memory(_medians(after), _medians(end), len(samples), max(s.total for s in samples))


def _medians(samples: Sequence[Sample]) -> tuple[float, float]:
    return statistics.median(s.total for s in samples), statistics.median(
        s.largest for s in samples
    )


# -- the state changes ---------------------------------------------------------------------------


def expected_status(
    cells: frozenset[Cell], role: str, area: Area, phase: Phase, action: str
) -> int:
    """What a move should answer, from the generated policy: 409 past either end of the area,
    else 200 when the tenant's rows allow the cell and 403 when they do not."""
    index = area.index(phase.id)
    if (action == ADVANCE and index + 1 == len(area.phases)) or (action == REOPEN and index == 0):
        return 409
    return 200 if (role, area.id, phase.id, action) in cells else 403


@dataclass
class Walk:
    """One assessment taken through its area: its tenant's policy, its path, the moves made."""

    tenant: str
    cells: frozenset[Cell]
    area: Area
    path: str
    taken: list[tuple[str, str, str]] = field(default_factory=list)

    def body(self, role: str, phase: Phase) -> Body:
        """The body of a move by `role` expecting the assessment in `phase`."""
        return {"tenant": self.tenant, "role": role, "actor": ACTOR, "expected_phase": phase.id}

    def allows(self, role: str | None, phase: Phase, action: str) -> bool:
        """Whether the tenant's rows let `role` take `action` in `phase`."""
        return (role, self.area.id, phase.id, action) in self.cells


@dataclass
class Trickle:
    """A steady trickle of state changes through the API and the admin form, every outcome
    checked against what the generated policy says it must be."""

    server: Server
    key: str
    content: Content
    target: Target
    writer: AdminFormWriter
    options: Options
    tally: Tally = field(default_factory=Tally)
    stop: threading.Event = field(default_factory=threading.Event)
    next_call: float = 0.0
    next_save: float = 0.0

    @property
    def roles(self) -> list[str]:
        """Every role of the workflow, in its order."""
        return [r.id for r in self.content.workflow.roles]

    def run(self, stop: threading.Event) -> None:
        """Create and move assessments, one lifecycle after another, until `stop` is set."""
        self.stop = stop
        self.next_call = self.next_save = time.monotonic()
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="soak-race") as pool:
            number = 0
            try:
                while not stop.is_set():
                    self.lifecycle(number, pool)
                    number += 1
            except Exception as error:  # noqa: BLE001 - a bug here must show, not end silently
                self.tally.fail("trickle", f"stopped by {error!r}")

    def lifecycle(self, number: int, pool: ThreadPoolExecutor) -> None:
        """Take one new assessment of a tenant through its whole workflow and back: created; per
        phase an advance by a role the policy refuses (403), then two racing advances; an advance
        at the final phase (409); a reopen and an advance, if a role may; its history checked."""
        index, assessment = number % self.content.tenants, f"soak-{number:06d}"
        area = self.content.workflow.areas[number % len(self.content.workflow.areas)]
        tenant = self.content.tenant(index)
        walk = Walk(tenant, self.content.cells(index), area, f"/assessments/{assessment}")
        body = {"tenant": tenant, "id": assessment, "area": area.id}
        if not self.post("create", "/assessments", body, 201, area.phases[0]):
            return
        for phase, following in pairwise(area.phases):
            refused = next((r for r in self.roles if not walk.allows(r, phase, ADVANCE)), None)
            if refused is not None and not self.move(walk, refused, phase, ADVANCE):
                return
            role = self.mover(walk, phase, ADVANCE)
            if role is None or not self.race(pool, walk, role, phase, following):
                return
        final, before = area.phases[-1], area.phases[-2]
        if not self.move(walk, area.phases[0].responsible or self.roles[0], final, ADVANCE):
            return
        reopener, role = self.mover(walk, final, REOPEN), self.mover(walk, before, ADVANCE)
        if reopener is not None and not (
            self.move(walk, reopener, final, REOPEN, before)
            and role is not None
            and self.move(walk, role, before, ADVANCE, final)
        ):
            return
        self.check_history(walk)

    def mover(self, walk: Walk, phase: Phase, action: str) -> str | None:
        """A role the tenant's rows let take `action` in `phase`: the responsible one first."""
        return next(
            (r for r in (phase.responsible, *self.roles) if walk.allows(r, phase, action)), None
        )

    def move(
        self, walk: Walk, role: str, phase: Phase, action: str, to: Phase | None = None
    ) -> bool:
        """One advance or reopen of the assessment in `phase`, answered as the policy says (into
        phase `to` when allowed, which then adds the move to the walk's history)."""
        body = walk.body(role, phase) | ({"reason": REASON} if action == REOPEN else {})
        expect = expected_status(walk.cells, role, walk.area, phase, action)
        refusal = {403: "403 not allowed", 409: f"409 {action} past the end"}.get(expect, "")
        if not self.post(action, f"{walk.path}/{action}", body, expect, to, refusal):
            return False
        if to is not None and expect == 200:
            walk.taken.append((phase.id, to.id, action))
        return True

    def race(
        self, pool: ThreadPoolExecutor, walk: Walk, role: str, phase: Phase, following: Phase
    ) -> bool:
        """Two identical advances at once, both expecting `phase`: one 200, one 409."""
        if not self.slot():
            return False
        path, body, timeout = f"{walk.path}/{ADVANCE}", walk.body(role, phase), self.options.timeout
        futures = [
            pool.submit(self.server.post_json, path, body, self.key, timeout) for _ in range(2)
        ]
        self.tally.calls[ADVANCE] += 2
        replies = [r for f in futures if (r := self.call(ADVANCE, path, f.result)) is not None]
        if len(replies) < 2:
            return False
        statuses = sorted(r.status for r in replies)
        if statuses != [200, 409]:
            bodies = [r.body[:200] for r in replies]
            return self.tally.fail(ADVANCE, f"two racing advances answered {statuses}: {bodies!r}")
        winner = next(r for r in replies if r.status == 200)
        if _phase(winner) != following.id:
            return self.tally.fail(ADVANCE, f"the race's winner is in {_phase(winner)!r}")
        self.tally.refused["409 lost race"] += 1
        walk.taken.append((phase.id, following.id, ADVANCE))
        return True

    def post(
        self, kind: str, path: str, body: Body, expect: int, to: Phase | None, refusal: str = ""
    ) -> bool:
        """POST with the key in the next slot; True when the answer is `expect` (a 2xx in phase
        `to`, a 4xx counted as the correct refusal `refusal`), else the failure is counted."""
        if not self.slot():
            return False
        self.tally.calls[kind] += 1
        send = partial(self.server.post_json, path, body, self.key, self.options.timeout)
        reply = self.call(kind, path, send)
        if reply is None:
            return False
        if reply.status != expect:
            return self.tally.fail(
                kind, f"{path}: {reply.status}, not {expect}: {reply.body[:300]!r}"
            )
        if reply.status >= 300:
            self.tally.refused[refusal or str(reply.status)] += 1
        elif to is not None and _phase(reply) != to.id:
            return self.tally.fail(kind, f"{path}: in phase {_phase(reply)!r}, not {to.id}")
        return True

    def call(self, kind: str, path: str, send: Callable[[], Reply]) -> Reply | None:
        """`send()`'s reply; None, and a failure of `kind` counted, on a transport error."""
        try:
            return send()
        except OSError as error:
            self.tally.fail(kind, f"{path}: {error!r}")
            return None

    def check_history(self, walk: Walk) -> None:
        """GET the assessment: in the final phase, its history exactly the moves made."""
        path, query = walk.path, f"{walk.path}?tenant={walk.tenant}"
        send = partial(self.server.request, "GET", query, headers=api_headers(self.key))
        reply = self.call("history", path, send)
        if reply is None:
            return
        if reply.status != 200:
            self.tally.fail("history", f"{path}: {reply.status} {reply.body[:300]!r}")
            return
        data = reply.json()
        history = [(h["from_phase"], h["to_phase"], h["action"]) for h in data["history"]]
        if data["phase"] != walk.area.phases[-1].id or history != walk.taken:
            self.tally.fail("history", f"{path}: {data['phase']}, {history} after {walk.taken}")

    def save_policy(self) -> None:
        """Tick or untick the target's checkbox through the admin form; the very next
        POST /authorize must answer with the new policy."""
        self.tally.calls["policy save"] += 1
        try:
            self.writer.browser.refresh_token()  # a token per save: they expire after an hour
            allowed = not self.writer.allowed()
            version = self.writer.save(allowed)
            answer, seen = ask(self.server, self.key, self.target)
        except Exception as error:  # noqa: BLE001 - any failure of a save is counted
            self.tally.fail("policy save", repr(error))
            return
        if answer is not allowed or seen < version:
            self.tally.fail(
                "policy save", f"saved {allowed} at v{version}, then {answer} at v{seen}"
            )

    def slot(self) -> bool:
        """Wait for the next call's turn, saving the policy first when a save is due; False
        once the soak is over."""
        if self.stop.is_set():
            return False
        now = time.monotonic()
        if now >= self.next_save:
            self.save_policy()
            self.next_save = max(self.next_save + self.options.save_every, now)
        if self.stop.wait(max(0.0, self.next_call - time.monotonic())):
            return False
        self.next_call = max(self.next_call + self.options.pace, time.monotonic())
        return True


def _phase(reply: Reply) -> Any:
    try:
        return reply.json().get("phase")
    except ValueError:
        return None


# -- the table -----------------------------------------------------------------------------------


def render(result: Result) -> str:
    """One table of one row, then how the figures were taken and what each error count holds."""
    return table.render(COLUMNS, [_cells(result)], _legend(result))


def _cells(result: Result) -> list[str]:
    o, w, m = result.options, result.wrk.result, result.memory
    growth = m.growth_pct
    return [
        o.backend,
        str(o.workers),
        str(o.connections),
        f"{o.seconds / 60:.3g}",
        f"{w.requests:,}",
        f"{w.per_second:,.0f}",
        f"{w.p50_us / 1000:.2f}",
        f"{w.p99_us / 1000:.2f}",
        str(result.wrk.errors),
        str(sum(result.tally.calls.values())),
        str(sum(result.tally.refused.values())),
        str(result.failed),
        f"{m.after_warmup[0]:.1f} (max {m.after_warmup[1]:.1f})",
        f"{m.at_end[0]:.1f} (max {m.at_end[1]:.1f})",
        f"{result.errors} {table.met(result.errors <= TARGET_ERRORS)}",
        table.at_most(growth, TARGET_GROWTH_PCT, digits=1),
    ]


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{kind} {n}" for kind, n in sorted(counter.items())) or "none"


def _legend(result: Result) -> list[str]:
    """What the columns mean, how they were measured, and this run's error counts in detail."""
    o, f, t, m = result.options, result.wrk, result.tally, result.memory
    others = {s: n for s, n in sorted(f.statuses.items()) if not 200 <= s < 300}
    return [
        f"One `workflow-authz serve --workers {o.workers}` (granian workers) on a temporary "
        f"{o.backend} store of {o.tenants} tenants ({o.assessments_per_tenant} assessments each), "
        "loopback only, decision log on (INFO); the store and every process removed at the end.",
        f"load: wrk (1 thread, {o.connections} connections, {o.timeout:g} s timeout) for "
        f"{o.seconds} s against POST /authorize {{tenant, role, action, assessment}} with an "
        f"all-tenant key, cycling {o.bodies} generated bodies over "
        f"{min(o.working_set, o.tenants)} tenants plus one in {TARGET_SHARE} about the tenant "
        "whose policy is saved; requests, req/s, p50 and p99 (wrk's histogram) cover the whole "
        "run, warm-up included.",
        f"state changes: POST calls from a thread of the bench, one every {o.pace:g} s: create an "
        "assessment (201) in the next tenant, per phase an advance by a role the policy refuses "
        "(403) and two identical advances sent at once with expected_phase (one 200, one 409), an "
        "advance at the final phase (409), a reopen with a reason (200) and an advance again; "
        "then GET the assessment: its history must be exactly those moves. Every "
        f"{o.save_every:g} s a policy save through the admin form (log-in session, CSRF token, "
        "POST /admin/workflow/<area>, 303) ticking or unticking one checkbox (parent view) of "
        f"tenant '{TENANT}'; the next POST /authorize must answer with the new policy.",
        "expected 4xx: state-change answers that are the correct refusal (race lost, past the "
        "end, not allowed), not errors. failed: a state change answered otherwise than the "
        "generated policy says (status or resulting phase), a transport error or timeout, a "
        "history that is not the moves made, or an old answer after a save.",
        "wrk errors: 5xx answers, any other non-2xx answer (every question is valid; a deny is a "
        "200), connect/read/write errors and timeouts. errors = wrk errors + failed + wrong "
        f"answers among {2 * o.checked} checked /authorize answers (before and after the load) + "
        "worker restarts + server log lines with a traceback, [ERROR] or [CRITICAL].",
        f"RSS: VmRSS of every worker, sampled every {o.sample_every:g} s: sum of the workers "
        f"(largest worker). Warm-up: the first {o.warmup_share:.0%} of the load "
        f"({o.warmup_s:g} s). After warm-up: median of the samples in the {o.window_s:g} s after "
        f"it; at end: median of the samples in the last {o.window_s:g} s of load; growth is of "
        "the sum.",
        f"This run: wrk errors {f.errors} (5xx {f.server_errors}, other non-2xx {f.unexpected}, "
        + ", ".join(f"{k} {n}" for k, n in f.socket.items())
        + f"; non-2xx statuses {others or 'none'}); state changes: {_counts(t.calls)}; "
        f"expected 4xx: {_counts(t.refused)}; failed: {_counts(t.failures)}; wrong answers "
        f"{result.wrong_answers}; worker restarts {result.restarts}; server log errors "
        f"{result.log_errors}; {m.samples} RSS samples, peak sum {m.peak:.1f} MiB.",
    ]


if __name__ == "__main__":
    sys.exit(main())
