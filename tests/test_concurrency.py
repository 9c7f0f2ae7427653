"""Concurrent advances of one assessment, on SQLite and PostgreSQL: exactly one wins, the others
get 409, and the history holds exactly one transition."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from flask import Flask

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
