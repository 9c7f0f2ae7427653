"""Assessments through the API on SQLite and PostgreSQL: created at the first phase, walked to
the end by the responsible roles only, never past the final phase, with a complete history."""

from __future__ import annotations

from typing import Any

import pytest

from service import policy_changes
from tests.conftest import Api

WALKS = {
    "behaviour": [
        ("group_registration", "mentor"),
        ("organisation_approval", "headteacher"),
        ("completed", None),
    ],
    "assessment": [
        ("course_registration", "course_teacher"),
        ("organisation_approval", "headteacher"),
        ("completed", None),
    ],
}
ROLES = ["learner", "parent", "external_system", "mentor", "course_teacher", "headteacher"]


def _create(api: Api, assessment_id: str, area: str) -> Any:
    return api.post("/assessments", {"id": assessment_id, "area": area})


def test_create_starts_at_the_first_phase(api: Api) -> None:
    response = _create(api, "maths-7b", "assessment")
    assert response.status_code == 201
    state = response.json
    assert {k: state[k] for k in ("tenant", "id", "area", "phase", "version")} == {
        "tenant": "default",
        "id": "maths-7b",
        "area": "assessment",
        "phase": "course_registration",
        "version": 1,
    }
    assert state["created_at"].endswith("Z") and state["created_at"] == state["updated_at"]
    assert len(state.pop("decision_id")) == 32
    assert api.get("/assessments/maths-7b").json == state | {
        "created_key_name": "test key for default",
        "created_actor": None,
        "history": [],
    }


def test_creating_an_existing_assessment_is_409_and_changes_nothing(api: Api) -> None:
    _create(api, "a1", "behaviour")
    again = _create(api, "a1", "assessment")
    assert again.status_code == 409 and again.json["error"]["code"] == "conflict"
    assert api.get("/assessments/a1").json["area"] == "behaviour"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "a1", "area": "attendance"}, "area"),
        ({"id": "", "area": "behaviour"}, "id"),
        ({"id": "a/b", "area": "behaviour"}, "id"),
        ({"id": "x" * 129, "area": "behaviour"}, "id"),
        ({"area": "behaviour"}, "id"),
        ({"id": "a1"}, "area"),
        ({"id": "a1", "area": "behaviour", "phase": "completed"}, "phase"),
        ({"id": "a1", "area": "behaviour", "tenant": "Bad"}, "tenant"),
    ],
)
def test_create_refuses_bad_input(api: Api, body: dict[str, Any], field: str) -> None:
    response = api.post("/assessments", body)
    assert response.status_code == 400 and response.json["error"]["field"] == field


@pytest.mark.parametrize("area", sorted(WALKS))
def test_the_whole_workflow_walked_by_the_responsible_roles(api: Api, area: str) -> None:
    _create(api, "walk", area)
    walk = WALKS[area]
    for (phase, role), (following, _) in zip(walk, walk[1:], strict=False):
        for wrong in [r for r in ROLES if r != role]:
            refused = api.post("/assessments/walk/advance", {"role": wrong, "actor": "someone"})
            assert refused.status_code == 403, wrong
            assert refused.json["error"]["code"] == "not_allowed"
            assert (
                f"{wrong} may not advance {area} in phase {phase}"
                in refused.json["error"]["message"]
            )
        moved = api.post(
            "/assessments/walk/advance",
            {"role": role, "actor": f"{role}-1", "expected_phase": phase},
        )
        assert moved.status_code == 200 and moved.json["phase"] == following
    final = api.post("/assessments/walk/advance", {"role": "headteacher", "actor": "h"})
    assert final.status_code == 409 and "final phase" in final.json["error"]["message"]
    state = api.get("/assessments/walk").json
    assert state["phase"] == "completed" and state["version"] == 3
    assert [(h["from_phase"], h["to_phase"], h["role"], h["actor"]) for h in state["history"]] == [
        (walk[0][0], walk[1][0], walk[0][1], f"{walk[0][1]}-1"),
        (walk[1][0], walk[2][0], walk[1][1], f"{walk[1][1]}-1"),
    ]
    assert all(h["policy_version"] == 1 for h in state["history"])


def test_expected_phase_that_differs_is_409_and_nothing_moves(api: Api) -> None:
    _create(api, "e1", "behaviour")
    stale = api.post(
        "/assessments/e1/advance",
        {"role": "mentor", "actor": "m", "expected_phase": "organisation_approval"},
    )
    assert stale.status_code == 409 and stale.json["error"]["field"] == "expected_phase"
    assert api.get("/assessments/e1").json["version"] == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"actor": "m"}, "role"),
        ({"role": "mentor"}, "actor"),
        ({"role": "mentor", "actor": ""}, "actor"),
        ({"role": "mentor", "actor": "line\nbreak"}, "actor"),
        ({"role": "mentor", "actor": "m", "expected_phase": "nowhere"}, "expected_phase"),
        ({"role": "janitor", "actor": "m"}, "role"),
        ({"role": "mentor", "actor": "m", "why": "x"}, "why"),
    ],
)
def test_advance_refuses_bad_input(api: Api, body: dict[str, Any], field: str) -> None:
    _create(api, "e2", "behaviour")
    response = api.post("/assessments/e2/advance", body)
    assert response.status_code == 400 and response.json["error"]["field"] == field
    assert api.get("/assessments/e2").json["version"] == 1


def test_unknown_assessment_is_404_for_get_and_advance(api: Api) -> None:
    assert api.get("/assessments/ghost").status_code == 404
    response = api.post("/assessments/ghost/advance", {"role": "mentor", "actor": "m"})
    assert response.status_code == 404 and response.json["error"]["code"] == "not_found"


def test_get_refuses_unknown_query_parameters(api: Api) -> None:
    _create(api, "q1", "behaviour")
    assert api.get("/assessments/q1?tenant=default").status_code == 200
    assert api.get("/assessments/q1?tennant=default").json["error"]["field"] == "tennant"


def test_another_tenants_key_cannot_touch_assessments(
    api: Api, db: Any, policy_engine: Any, make_key: Any
) -> None:
    with db.write() as conn:
        policy_changes.create_tenant(conn, "north", [], actor="t")
    north = make_key("north")
    _create(api, "d1", "behaviour")
    assert api.get("/assessments/d1", key=north).status_code == 403
    assert api.get("/assessments/d1?tenant=default", key=north).status_code == 403
    assert api.post("/assessments", {"id": "n1", "area": "behaviour"}, key=north).status_code == 403
    assert (
        api.post("/assessments/d1/advance", {"role": "mentor", "actor": "m"}, key=north).status_code
        == 403
    )
    assert api.get("/assessments/d1").json["version"] == 1
    assert api.get("/assessments/d1?tenant=north", key=north).status_code == 404
