"""Moving assessments (service/transitions.py) through the API, on SQLite and PostgreSQL: reopen
goes back one phase with a reason and only for the roles the policy lets; a bulk advance decides
each id on its own, so one failure never blocks another; every move and creation keeps the API key
that made it beside the actor its caller named, and an actor or reason that would read otherwise
than it is stored (controls, bidirectional overrides, a form other than NFC) is refused."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from service import keys
from service.db import Database
from service.models import ApiKey, Assessment, Transition
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


# -- who did it ------------------------------------------------------------------------------------


def _key(db: Database, name: str) -> tuple[str, int]:
    """A new key for tenant default named `name`, and its id."""
    with db.write() as conn:
        token = keys.create(conn, name, "default")
        key_id = conn.execute(select(ApiKey.id).where(ApiKey.name == name)).scalar_one()
    return token, key_id


def test_each_create_and_move_records_the_key_beside_the_actor(api: Api, db: Database) -> None:
    office, office_id = _key(db, "school office")
    intern, intern_id = _key(db, "intern laptop")
    created = api.post("/assessments", {"id": "w1", "area": "behaviour", "actor": "ms_lee"}, office)
    assert created.status_code == 201
    # A Cyrillic а looks like the office's "admin" and is printable NFC text: accepted, and the
    # key recorded beside it tells the two apart.
    lookalike = "\u0430dmin"
    moves = [
        ("advance", {"role": "mentor", "actor": "admin"}, office),
        ("advance", {"role": "headteacher", "actor": lookalike}, intern),
        ("reopen", REOPEN | {"actor": lookalike}, intern),
    ]
    for action, body, key in moves:
        assert api.post(f"/assessments/w1/{action}", body, key).status_code == 200
    found = api.get("/assessments/w1").json
    assert (found["created_actor"], found["created_key_name"]) == ("ms_lee", "school office")
    assert [(h["action"], h["actor"], h["key_name"]) for h in found["history"]] == [
        ("advance", "admin", "school office"),
        ("advance", lookalike, "intern laptop"),
        ("reopen", lookalike, "intern laptop"),
    ]
    with db.read() as conn:
        rows = conn.execute(
            select(Transition.key_id, Transition.key_name).order_by(Transition.id)
        ).all()
        creator = conn.execute(
            select(Assessment.created_key_id, Assessment.created_key_name, Assessment.created_actor)
        ).one()
    assert [tuple(r) for r in rows] == [
        (office_id, "school office"),
        (intern_id, "intern laptop"),
        (intern_id, "intern laptop"),
    ]
    assert tuple(creator) == (office_id, "school office", "ms_lee")


def test_an_assessment_created_without_an_actor_still_records_its_key(api: Api) -> None:
    assert api.post("/assessments", {"id": "w2", "area": "behaviour"}).status_code == 201
    found = api.get("/assessments/w2").json
    assert (found["created_actor"], found["created_key_name"]) == (None, "test key for default")


ADVANCE = ("/assessments/r5/advance", {"role": "headteacher"})
REOPEN_AT = ("/assessments/r5/reopen", REOPEN)
CREATE = ("/assessments", {"id": "r6", "area": "behaviour"})
BULK = ("/assessments/advance", {"role": "headteacher", "ids": ["r5"]})


@pytest.mark.parametrize(
    ("where", "field", "value", "words"),
    [
        (ADVANCE, "actor", "head\u202eteacher", "U+202E RIGHT-TO-LEFT OVERRIDE (character 5), a "),
        (ADVANCE, "actor", "he\u2066ad", "U+2066 LEFT-TO-RIGHT ISOLATE (character 3), a format"),
        (ADVANCE, "actor", "head\u200f", "U+200F RIGHT-TO-LEFT MARK (character 5), a format"),
        (ADVANCE, "actor", "he\u200bad", "U+200B ZERO WIDTH SPACE (character 3), a format"),
        (ADVANCE, "actor", "head\x07", "U+0007 (character 5), a control character (Unicode cat"),
        (ADVANCE, "actor", "line\nbreak", "U+000A (character 5), a control character"),
        (ADVANCE, "actor", "e\u0301", "NFC, which it stops being at U+0301 COMBINING ACUTE"),
        (REOPEN_AT, "reason", "typo\u202c", "U+202C POP DIRECTIONAL FORMATTING (character 5)"),
        (REOPEN_AT, "reason", "cafe\u0301", "NFC, which it stops being at U+0301 COMBINING"),
        (CREATE, "actor", "\u202dms_lee", "U+202D LEFT-TO-RIGHT OVERRIDE (character 1), a "),
        (BULK, "actor", "\u2067x", "U+2067 RIGHT-TO-LEFT ISOLATE (character 1), a format"),
    ],
)
def test_an_actor_or_reason_that_reads_otherwise_is_a_400_naming_it_and_writes_nothing(
    api: Api,
    db: Database,
    caplog: pytest.LogCaptureFixture,
    where: tuple[str, dict[str, Any]],
    field: str,
    value: str,
    words: str,
) -> None:
    caplog.set_level(logging.INFO, logger="workflow_authz.decisions")
    complete(api, "r5")
    caplog.clear()
    with db.read() as conn:
        before = _counts(conn)
    path, body = where
    response = api.post(path, {"actor": "head"} | body | {field: value})
    assert response.status_code == 400, response.json
    error = response.json["error"]
    assert error["field"] == field and error["code"] == "invalid_request"
    assert error["message"].startswith(f"{field} must ") and words in error["message"], error
    assert "X-Decision-Id" not in response.headers
    with db.read() as conn:
        assert _counts(conn) == before
    assert [r for r in caplog.records if r.name == "workflow_authz.decisions"] == []


def _counts(conn: Any) -> tuple[int, int, str]:
    """How many transitions and assessments the store has, and r5's phase."""
    return (
        conn.execute(select(func.count()).select_from(Transition)).scalar_one(),
        conn.execute(select(func.count()).select_from(Assessment)).scalar_one(),
        conn.execute(select(Assessment.phase).where(Assessment.id == "r5")).scalar_one(),
    )


def test_the_exact_words_of_a_refused_actor(api: Api) -> None:
    api.post("/assessments", {"id": "r7", "area": "behaviour"})
    body = {"role": "mentor", "actor": "ms\u202elee"}
    assert api.post("/assessments/r7/advance", body).json["error"]["message"] == (
        "actor must not hold U+202E RIGHT-TO-LEFT OVERRIDE (character 3), a format character "
        "(Unicode category Cf)"
    )
    body["actor"] = "Rene\u0301"
    assert api.post("/assessments/r7/advance", body).json["error"]["message"] == (
        "actor must be in Unicode normal form NFC, which it stops being at U+0301 COMBINING "
        "ACUTE ACCENT (character 5): send the text composed (NFC)"
    )
    body["actor"] = "Ren\u00e9"  # the same name, composed
    assert api.post("/assessments/r7/advance", body).status_code == 200


def test_the_document_describes_the_actor_rule_and_the_key_in_the_history(app: Flask) -> None:
    schemas = app.test_client().get("/openapi.json").json["components"]["schemas"]
    actor = schemas["MoveBody"]["properties"]["actor"]
    assert "Unicode normal form NFC" in actor["description"], actor
    assert "actor" in schemas["CreateBody"]["properties"]
    assert "actor" not in schemas["CreateBody"].get("required", [])
    assert "key_name" in schemas["Step"]["required"]
    assert {"created_key_name", "created_actor"} <= set(schemas["StateWithHistory"]["required"])
