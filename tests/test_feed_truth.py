"""The external-systems feed is the truth, on SQLite and PostgreSQL, under real concurrency.

Two `workflow-authz serve` processes share one store. Against each, writer threads create,
advance, reopen and bulk-advance assessments of one area (a seeded random schedule), while an
admin logged in to each server's form keeps toggling which of the area's phases External systems
may see. Afterwards, for every assessment:

- the feed (GET /events, every page) replayed gives exactly the visibility that the final policy
  and the assessment's phase imply;
- every event says what the policy said at the version it records (rebuilt from the audit);
- every event is a change: an assessment's events alternate visible, not visible, visible...

And, on PostgreSQL, the trace behind the bug, step by step: a create, advance or reopen sent while
a save that changes the visibility of its phase has not committed waits for that save, then
decides with the version the save made.
"""

from __future__ import annotations

import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select, text

from bench.admin_form import Browser
from bench.internals import form_fields, workflow
from bench.server import Server, create_admin, create_api_key, serving, wait_ready
from service import policy_changes
from service.db import Database
from service.limits import MAX_PAGE
from service.models import Assessment, PolicyChange
from service.policies import PolicyEngine
from service.policies.store import DEFAULT_TENANT, current_version, tenant_cells
from service.workflows import VIEW, Cell, Workflow
from tests.conftest import Api

AREA = "assessment"
SEED = 20260110
INITIAL = 12
"""Assessments registered before the race starts."""
WRITERS = 3
"""Writer threads per server."""
OPERATIONS = 60
"""Requests of each writer thread."""
REOPEN_REASON = "marks entered for the wrong class"
OK = {200, 201}
REFUSED = {403, 409}
"""A move decided against (the role may not, or another writer moved it first): expected."""


@dataclass
class Race:
    """The two servers, their store, a key, an admin login, and what the race did."""

    servers: tuple[Server, Server]
    db: Database
    key: str
    login: tuple[str, str]
    flow: Workflow
    ids: list[str] = field(default_factory=list)
    saves: int = 0
    statuses: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def pick(self, rng: random.Random, k: int = 1) -> list[str]:
        with self.lock:
            return rng.sample(self.ids, k)


@pytest.fixture
def race(store_url: str) -> Iterator[Race]:
    key, login = create_api_key(store_url), create_admin(store_url)
    db = Database(store_url, 2)
    with (
        serving(store_url, workers=2, wait=False) as a,
        serving(store_url, workers=2, wait=False) as b,
    ):
        wait_ready(a)
        wait_ready(b)
        yield Race((a, b), db, key, login, workflow())
    db.dispose()


def _writer(race: Race, server: Server, rng: random.Random, name: str) -> None:
    """OPERATIONS requests: mostly one move of a random assessment, some creates and bulk
    advances. Every answer is a success or a refusal; anything else fails the test."""
    for n in range(OPERATIONS):
        roll = rng.random()
        if roll < 0.06:
            statuses = [_create(race, server, f"{name}-{n}").status]
        elif roll < 0.14:
            statuses = _bulk_advance(race, server, rng, name)
        else:
            statuses = [_move(race, server, rng, race.pick(rng)[0], name).status]
        with race.lock:
            for status in statuses:
                race.statuses[status] += 1
        assert set(statuses) <= OK | REFUSED, statuses


def _bulk_advance(race: Race, server: Server, rng: random.Random, actor: str) -> list[int]:
    """Advance three random assessments in one request by one role (right for some of them):
    the status a single advance would have answered for each."""
    role = rng.choice(["course_teacher", "headteacher"])
    body = {"role": role, "actor": actor, "ids": race.pick(rng, 3)}
    reply = server.post_json("/assessments/advance", body, race.key)
    assert reply.status == 200, reply.body[:300]
    return [200 if "phase" in r else _status(r["error"]["code"]) for r in reply.json()["results"]]


def _status(code: str) -> int:
    """The status a single move would have answered for a bulk item's error code."""
    return {"not_allowed": 403, "conflict": 409}.get(code, 500)


def _create(race: Race, server: Server, assessment: str) -> Any:
    reply = server.post_json("/assessments", {"id": assessment, "area": AREA}, race.key)
    if reply.status == 201:
        with race.lock:
            race.ids.append(assessment)
    return reply


def _move(race: Race, server: Server, rng: random.Random, assessment: str, actor: str) -> Any:
    """Read the assessment, then advance or reopen it from the phase read (by the role whose
    move it is): a 409 when another writer moved it in between."""
    read = server.request("GET", f"/assessments/{assessment}", headers=_auth(race.key))
    phase = read.json()["phase"]
    area = race.flow.area_by_id[AREA]
    moves = []
    if not area.is_final(phase):
        moves.append(("advance", area.phases[area.index(phase)].responsible))
    if area.index(phase) > 0:
        moves.append(("reopen", "headteacher"))
    action, role = rng.choice(moves)
    body = {"role": role, "actor": actor, "expected_phase": phase}
    if action == "reopen":
        body["reason"] = REOPEN_REASON
    return server.post_json(f"/assessments/{assessment}/{action}", body, race.key)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _admin(race: Race, server: Server, rng: random.Random, writing: threading.Event) -> None:
    """While writers run, flip External systems' view of a random phase of the area through
    the server's form, as a browser would post it (a form gone stale meanwhile is refused)."""
    browser = Browser(server)
    browser.log_in(*race.login)
    area = race.flow.area_by_id[AREA]
    feed_role = race.flow.feed_role
    assert feed_role is not None
    while writing.is_set():
        version, cells = _policy(race.db)
        cells ^= {(feed_role, AREA, rng.choice(area.phases).id, VIEW)}
        fields = [("tenant", DEFAULT_TENANT), ("version", str(version)), ("step", "save")]
        reply = browser.post_form(
            f"/admin/workflow/{AREA}", fields + form_fields(race.flow, area, cells)
        )
        assert reply.status in (303, 409), reply.body[:300]
        if reply.status == 303:
            with race.lock:
                race.saves += 1


def _policy(db: Database) -> tuple[int, set[Cell]]:
    """The tenant's version and cells of the area (a version older than the cells only makes
    the form's save refused as stale)."""
    with db.read() as conn:
        version = current_version(conn, DEFAULT_TENANT)
        assert version is not None
        return version, set(tenant_cells(conn, DEFAULT_TENANT, AREA))


def _run(race: Race) -> None:
    """The writers and admins of both servers at once, released together by a barrier."""
    for i in range(INITIAL):
        assert _create(race, race.servers[i % 2], f"a{i}").status == 201
    writing = threading.Event()
    writing.set()
    writers = [
        partial(_writer, race, server, random.Random(f"{SEED}-{s}-{w}"), f"w{s}{w}")
        for s, server in enumerate(race.servers)
        for w in range(WRITERS)
    ]
    admins = [
        partial(_admin, race, server, random.Random(f"{SEED}-admin-{s}"), writing)
        for s, server in enumerate(race.servers)
    ]
    start = threading.Barrier(len(writers) + len(admins))
    with ThreadPoolExecutor(len(writers) + len(admins)) as pool:
        saving = [pool.submit(_released, start, job) for job in admins]
        moving = [pool.submit(_released, start, job) for job in writers]
        try:
            for done in moving:
                done.result()
        finally:
            writing.clear()
        for done in saving:
            done.result()


def _released(start: threading.Barrier, job: Callable[[], None]) -> None:
    start.wait()
    job()


def _feed(server: Server, key: str) -> list[dict[str, Any]]:
    """Every event of the tenant's feed, page after page."""
    events: list[dict[str, Any]] = []
    cursor = ""
    while True:
        reply = server.request(
            "GET", f"/events?limit={MAX_PAGE}&after={cursor}", headers=_auth(key)
        )
        assert reply.status == 200, reply.body[:300]
        page = reply.json()
        if not page["events"]:
            return events
        events += page["events"]
        cursor = page["cursor"]


def _cells_by_version(db: Database, first: int, cells: set[Cell]) -> dict[int, frozenset[Cell]]:
    """The tenant's cells at every version from `first` on, rebuilt from the audit."""
    with db.read() as conn:
        audit = conn.execute(
            select(PolicyChange)
            .where(PolicyChange.tenant == DEFAULT_TENANT, PolicyChange.version > first)
            .order_by(PolicyChange.version, PolicyChange.id)
        ).all()
    by_version = {first: frozenset(cells)}
    current = set(cells)
    for row in audit:
        cell = (row.role, row.area, row.phase, row.action)
        current = current | {cell} if row.after else current - {cell}
        by_version[row.version] = frozenset(current)
    return by_version


def _phases(db: Database) -> dict[str, str]:
    """Every assessment's phase now."""
    with db.read() as conn:
        rows = conn.execute(
            select(Assessment.id, Assessment.phase).where(Assessment.tenant == DEFAULT_TENANT)
        )
        return {r.id: r.phase for r in rows}


def test_the_feed_replayed_is_what_the_policy_says(race: Race) -> None:
    with race.db.read() as conn:
        first = current_version(conn, DEFAULT_TENANT)
        assert first is not None
        cells = set(tenant_cells(conn, DEFAULT_TENANT))
    _run(race)
    events = _feed(race.servers[0], race.key)
    at = _cells_by_version(race.db, first, cells)
    final = at[max(at)]
    visible = race.flow.visible_to_feed
    assert race.statuses[200] > 0 and race.saves > 0, (dict(race.statuses), race.saves)

    untrue = [
        (e["assessment"], e["phase"], e["visible"], e["cause"], e["policy_version"])
        for e in events
        if e["visible"] != visible(at[e["policy_version"]], e["area"], e["phase"])
    ]
    seen: dict[str, list[bool]] = defaultdict(list)
    for e in events:
        seen[e["assessment"]].append(e["visible"])
    unchanged = sorted(
        a for a, said in seen.items() if any(x == y for x, y in pairwise([False, *said]))
    )
    replayed = {a: said[-1] for a, said in seen.items()}  # none: never visible
    phases = _phases(race.db)
    wrong = sorted(
        a for a, phase in phases.items() if replayed.get(a, False) != visible(final, AREA, phase)
    )
    summary = (
        f"{len(wrong)} of {len(phases)} assessments end with a wrong visibility, "
        f"{len(unchanged)} have an event that changed nothing, {len(untrue)} of {len(events)} "
        f"events disagree with the policy of their version; {race.saves} saves, "
        f"answers {dict(sorted(race.statuses.items()))}"
    )
    assert (wrong, unchanged, untrue) == ([], [], []), summary


TRACES = {
    # name: (advances of t1 before the save, the phase whose visibility the save turns on, the
    # request sent while the save is in flight, t1's feed afterwards)
    "create": (0, "course_registration", ("/assessments", {"id": "t1", "area": AREA}), [True]),
    "advance": (
        0,
        "organisation_approval",
        ("/assessments/t1/advance", {"role": "course_teacher", "actor": "teacher"}),
        [True],
    ),
    "reopen": (
        1,
        "organisation_approval",
        ("/assessments/t1/reopen", {"role": "headteacher", "actor": "head", "reason": "wrong"}),
        [True, False],  # the save's, then the reopen's
    ),
}


@pytest.mark.parametrize(
    "store_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
@pytest.mark.parametrize("trace", list(TRACES))
def test_a_write_sent_during_a_save_waits_for_it_and_decides_with_its_version(
    app: Flask, api: Api, db: Database, policy_engine: PolicyEngine, trace: str
) -> None:
    advances, phase, (path, body), feed = TRACES[trace]
    if trace != "create":
        assert api.post("/assessments", {"id": "t1", "area": AREA}).status_code == 201
    for _ in range(advances):
        move = {"role": "course_teacher", "actor": "teacher"}
        assert api.post("/assessments/t1/advance", move).status_code == 200
    seen = ("external_system", AREA, phase, VIEW)
    with ThreadPoolExecutor(1) as pool:
        with db.write() as conn:
            cells = set(tenant_cells(conn, DEFAULT_TENANT)) | {seen}
            policy_changes.save(conn, policy_engine, DEFAULT_TENANT, cells, actor="ada")
            sent = pool.submit(Api(app.test_client(), api.key).post, path, body)
            waited = _waits_for_a_lock(db, sent)
        assert sent.result().status_code in OK
    events = api.get("/events").json["events"]
    assert (waited, [e["visible"] for e in events]) == (True, feed)
    assert {e["policy_version"] for e in events} == {2}


def _waits_for_a_lock(db: Database, sent: Future[Any]) -> bool:
    """Poll until the request is done (False) or a backend of the test database waits for a
    lock (True): only the request can, as the save holds the tenant lock."""
    deadline = time.monotonic() + 30
    waiting = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while not sent.done():
        with db.read() as conn:
            if conn.execute(waiting).scalar_one():
                return True
        assert time.monotonic() < deadline, "the request neither finished nor waited"
        time.sleep(0.005)
    return False
