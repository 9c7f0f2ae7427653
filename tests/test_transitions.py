"""Moving assessments (service/transitions.py) through the API, on SQLite and PostgreSQL: reopen
goes back one phase with a reason and only for the roles the policy lets; a bulk advance decides
each id on its own, so one failure never blocks another."""

from __future__ import annotations

from tests.conftest import Api, complete

REOPEN = {"role": "headteacher", "actor": "head", "reason": "marks entered for the wrong class"}


def test_reopen_moves_back_one_phase_and_history_keeps_the_reason(api: Api) -> None:
    complete(api, "r1")
    assert api.post("/authorize", {"role": "parent", "action": "view", "assessment": "r1"}).json[
        "allowed"
    ]
    response = api.post("/assessments/r1/reopen", REOPEN | {"expected_phase": "completed"})
    assert response.status_code == 200 and response.json["phase"] == "organisation_approval"
    history = api.get("/assessments/r1").json["history"]
    assert [(h["action"], h["from_phase"], h["to_phase"]) for h in history] == [
        ("advance", "course_registration", "organisation_approval"),
        ("advance", "organisation_approval", "completed"),
        ("reopen", "completed", "organisation_approval"),
    ]
    assert history[-1]["reason"] == REOPEN["reason"] and history[0]["reason"] is None
    # visibility follows the earlier phase again
    assert not api.post(
        "/authorize", {"role": "parent", "action": "view", "assessment": "r1"}
    ).json["allowed"]


def test_reopen_needs_a_reason(api: Api) -> None:
    complete(api, "r2")
    for body in (
        {"role": "headteacher", "actor": "h"},
        REOPEN | {"reason": " "},
        REOPEN | {"reason": 5},
    ):
        response = api.post("/assessments/r2/reopen", body)
        assert response.status_code == 400 and response.json["error"]["field"] == "reason"
    assert api.get("/assessments/r2").json["phase"] == "completed"


def test_reopen_by_a_role_without_the_right_is_403(api: Api) -> None:
    complete(api, "r3")
    response = api.post("/assessments/r3/reopen", REOPEN | {"role": "course_teacher"})
    assert response.status_code == 403 and response.json["error"]["code"] == "not_allowed"
    assert (
        "course_teacher may not reopen assessment in phase completed"
        in response.json["error"]["message"]
    )


def test_reopen_at_the_first_phase_is_409(api: Api) -> None:
    api.post("/assessments", {"id": "r4", "area": "behaviour"})
    response = api.post("/assessments/r4/reopen", REOPEN)
    assert response.status_code == 409 and "first phase" in response.json["error"]["message"]


def test_bulk_advance_mixes_successes_and_per_item_errors(api: Api) -> None:
    for assessment, area in [
        ("a1", "assessment"),
        ("a2", "assessment"),
        ("b1", "behaviour"),
        ("a3", "assessment"),
    ]:
        api.post("/assessments", {"id": assessment, "area": area})
    for role in ("course_teacher", "headteacher"):
        api.post("/assessments/a3/advance", {"role": role, "actor": "x"})
    ids = ["a1", "ghost", "b1", "a2", "a3", "bad id", 7, "a1"]
    response = api.post(
        "/assessments/advance", {"role": "course_teacher", "actor": "t.smith", "ids": ids}
    )
    assert response.status_code == 200
    results = response.json["results"]
    assert [r["id"] for r in results] == ["a1", "ghost", "b1", "a2", "a3", "bad id", None, "a1"]
    assert [r.get("phase") for r in results] == [
        "organisation_approval",
        None,
        None,
        "organisation_approval",
        None,
        None,
        None,
        None,
    ]
    assert [r.get("error", {}).get("code") for r in results] == [
        None,
        "not_found",
        "not_allowed",
        None,
        "conflict",
        "invalid_request",
        "invalid_request",
        "not_allowed",
    ]
    assert api.get("/assessments/b1").json["phase"] == "group_registration"
    assert len(api.get("/assessments/a1").json["history"]) == 1


def test_a_headteacher_completes_a_whole_term_in_one_call(api: Api) -> None:
    ids = [f"class-{i}" for i in range(30)]
    for assessment in ids:
        api.post("/assessments", {"id": assessment, "area": "behaviour"})
    api.post("/assessments/advance", {"role": "mentor", "actor": "m", "ids": ids})
    done = api.post(
        "/assessments/advance",
        {
            "role": "headteacher",
            "actor": "head",
            "ids": ids,
            "expected_phase": "organisation_approval",
        },
    ).json["results"]
    assert {r["phase"] for r in done} == {"completed"}


def test_bulk_advance_limits_and_validation(api: Api) -> None:
    body = {"role": "mentor", "actor": "m"}
    assert api.post("/assessments/advance", body | {"ids": []}).json["error"]["field"] == "ids"
    assert (
        api.post("/assessments/advance", body | {"ids": ["x"] * 1001}).json["error"]["field"]
        == "ids"
    )
    assert api.post("/assessments/advance", body | {"ids": "x"}).json["error"]["field"] == "ids"
    assert (
        api.post("/assessments/advance", {"actor": "m", "ids": ["x"]}).json["error"]["field"]
        == "role"
    )
    assert (
        api.post("/assessments/advance", body | {"ids": ["x"], "tenant": "north"}).status_code
        == 403
    )
