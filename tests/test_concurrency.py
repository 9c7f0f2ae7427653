"""Concurrent advances of one assessment, on SQLite and PostgreSQL: exactly one wins, the others
get 409, and the history holds exactly one transition."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from flask import Flask

from service import policy_changes
from tests.conftest import Api

RACERS = 20


def _race(app: Flask, api: Api, body: dict[str, str]) -> list[int]:
    """Send RACERS identical advances at once (released together by a barrier)."""
    start = threading.Barrier(RACERS)

    def advance(i: int) -> int:
        client = Api(app.test_client(), api.key)
        start.wait()
        return client.post("/assessments/race/advance", body | {"actor": f"t{i}"}).status_code

    with ThreadPoolExecutor(RACERS) as pool:
        return sorted(pool.map(advance, range(RACERS)))


def test_twenty_concurrent_advances_exactly_one_succeeds(app: Flask, api: Api) -> None:
    assert api.post("/assessments", {"id": "race", "area": "assessment"}).status_code == 201
    statuses = _race(app, api, {"role": "course_teacher", "expected_phase": "course_registration"})
    assert statuses == [200] + [409] * (RACERS - 1)
    state = api.get("/assessments/race").json
    assert state["phase"] == "organisation_approval" and state["version"] == 2
    assert len(state["history"]) == 1


def test_without_expected_phase_the_losers_are_refused_by_the_new_phase(
    app: Flask, api: Api
) -> None:
    """A loser that reads the state after the winner committed finds a phase it may not advance."""
    api.post("/assessments", {"id": "race", "area": "assessment"})
    statuses = _race(app, api, {"role": "course_teacher"})
    assert statuses[0] == 200 and set(statuses[1:]) <= {403, 409}
    assert len(api.get("/assessments/race").json["history"]) == 1


def test_concurrent_advances_with_expected_phase_walk_one_phase_at_a_time(
    app: Flask, api: Api
) -> None:
    api.post("/assessments", {"id": "steps", "area": "behaviour"})
    start = threading.Barrier(10)

    def advance(i: int) -> int:
        client = Api(app.test_client(), api.key)
        role, phase = (
            ("mentor", "group_registration") if i % 2 else ("headteacher", "organisation_approval")
        )
        start.wait()
        body = {"role": role, "actor": f"a{i}", "expected_phase": phase}
        return client.post("/assessments/steps/advance", body).status_code

    with ThreadPoolExecutor(10) as pool:
        statuses = list(pool.map(advance, range(10)))
    history = api.get("/assessments/steps").json["history"]
    assert statuses.count(200) == len(history) <= 2
    assert [h["from_phase"] for h in history] == ["group_registration", "organisation_approval"][
        : len(history)
    ]


def test_fifty_parallel_advances_over_ten_assessments(app: Flask, api: Api) -> None:
    """Each assessment moves exactly one phase per responsible step; no lost or doubled history."""
    ids = [f"bulk-{i}" for i in range(10)]
    for assessment in ids:
        api.post("/assessments", {"id": assessment, "area": "assessment"})
    start = threading.Barrier(50)

    def advance(i: int) -> tuple[str, int]:
        client = Api(app.test_client(), api.key)
        assessment = ids[i % 10]
        start.wait()
        body = {"role": "course_teacher", "actor": f"a{i}", "expected_phase": "course_registration"}
        return assessment, client.post(f"/assessments/{assessment}/advance", body).status_code

    with ThreadPoolExecutor(50) as pool:
        outcomes = list(pool.map(advance, range(50)))
    for assessment in ids:
        statuses = sorted(status for a, status in outcomes if a == assessment)
        assert statuses == [200, 409, 409, 409, 409], assessment
        state = api.get(f"/assessments/{assessment}").json
        assert state["phase"] == "organisation_approval" and len(state["history"]) == 1


def test_two_concurrent_policy_saves_exactly_one_wins(app: Flask) -> None:
    """Both saves start from version 1; one commits, the other is refused as stale."""
    from sqlalchemy import select

    from service.errors import Conflict
    from service.models import PolicyChange
    from service.policies.store import tenant_cells

    engine = app.extensions["workflow_authz.policies"]
    db = app.extensions["workflow_authz.db"]
    with db.read() as conn:
        base = set(tenant_cells(conn, "default"))
    edits = {
        "ada": base | {("parent", "behaviour", "organisation_approval", "view")},
        "bo": base - {("learner", "assessment", "completed", "view")},
    }
    start = threading.Barrier(2)

    def save(actor: str) -> str:
        start.wait()
        try:
            with db.write() as conn:
                policy_changes.save(
                    conn, engine, "default", edits[actor], actor=actor, expected_version=1
                )
        except Conflict:
            return "stale"
        return "saved"

    with ThreadPoolExecutor(2) as pool:
        outcome = dict(zip(edits, pool.map(save, edits), strict=True))
    assert sorted(outcome.values()) == ["saved", "stale"]
    winner = next(actor for actor, result in outcome.items() if result == "saved")
    with db.read() as conn:
        assert set(tenant_cells(conn, "default")) == edits[winner]
        audit = conn.execute(select(PolicyChange.actor, PolicyChange.version)).all()
    assert [tuple(a) for a in audit] == [(winner, 2)]
