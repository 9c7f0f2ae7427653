"""Bulk advance (each id on its own: one failure never blocks another) and the permissions
listing (which buttons an app should show), on SQLite and PostgreSQL."""

from __future__ import annotations

from tests.conftest import Api


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


def test_permissions_list_the_buttons_to_show(api: Api) -> None:
    api.post("/assessments", {"id": "p1", "area": "assessment"})
    teacher = api.post("/permissions", {"role": "course_teacher", "assessment": "p1"}).json
    assert teacher == {
        "tenant": "default",
        "role": "course_teacher",
        "area": "assessment",
        "phase": "course_registration",
        "assessment": "p1",
        "actions": ["view", "edit", "advance"],
        "policy_version": 1,
    }
    head = api.post(
        "/permissions", {"role": "headteacher", "area": "assessment", "phase": "completed"}
    ).json
    assert head["actions"] == ["view", "edit", "reopen"]
    parent = api.post("/permissions", {"role": "parent", "assessment": "p1"}).json
    assert parent["actions"] == []


def test_permissions_refuse_bad_questions(api: Api) -> None:
    assert (
        api.post("/permissions", {"role": "parent", "action": "view", "assessment": "p"}).json[
            "error"
        ]["field"]
        == "action"
    )
    assert api.post("/permissions", {"role": "parent", "assessment": "ghost"}).status_code == 404
    assert (
        api.post(
            "/permissions", {"role": "nobody", "area": "behaviour", "phase": "completed"}
        ).json["error"]["field"]
        == "role"
    )
