"""Every decision and every write gets an id, returned in the answer and the X-Decision-Id header,
and one JSON log line with what an auditor needs -- the key's name and id, never the key itself."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from service.db import Database
from tests.conftest import Api, complete

QUESTION = {"role": "parent", "action": "view", "area": "behaviour", "phase": "completed"}


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        json.loads(r.getMessage()) for r in caplog.records if r.name == "workflow_authz.decisions"
    ]


def test_a_decision_has_an_id_in_body_header_and_log(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="workflow_authz.decisions")
    response = api.post("/authorize", QUESTION)
    decision_id = response.json["decision_id"]
    assert response.headers["X-Decision-Id"] == decision_id and len(decision_id) == 32
    [line] = _lines(caplog)
    assert line["decision_id"] == decision_id
    assert {
        k: line[k]
        for k in ("tenant", "role", "action", "area", "phase", "allowed", "policy_version")
    } == {
        "tenant": "default",
        "role": "parent",
        "action": "view",
        "area": "behaviour",
        "phase": "completed",
        "allowed": True,
        "policy_version": 1,
    }
    assert line["rule"] == ["default", "parent", "behaviour", "completed", "view"]
    assert line["key"] == "test key for default" and line["assessment"] is None
    assert api.key not in caplog.text and api.key.split("_", 2)[2] not in caplog.text


def test_batch_items_each_get_their_own_id(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="workflow_authz.decisions")
    items = [{"id": str(i), **QUESTION} for i in range(3)] + [{"id": "bad", "role": "x"}]
    results = api.post("/authorize/batch", {"requests": items}).json["results"]
    ids = [r.get("decision_id") for r in results]
    assert len(set(ids[:3])) == 3 and ids[3] is None
    assert [line["decision_id"] for line in _lines(caplog)] == ids[:3]


def test_permissions_log_one_decision_per_action_answered(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="workflow_authz.decisions")
    place = {"role": "mentor", "area": "behaviour", "phase": "group_registration"}
    assert api.post("/permissions", place).json["actions"] == ["view", "edit", "advance"]
    lines = _lines(caplog)
    assert [(line["event"], line["action"], line["allowed"]) for line in lines] == [
        ("decision", "view", True),
        ("decision", "edit", True),
        ("decision", "advance", True),
        ("decision", "reopen", False),
    ]
    assert len({line["decision_id"] for line in lines}) == 4
    assert {line["key"] for line in lines} == {"test key for default"}


WRITTEN = {"tenant": "default", "key": "test key for default", "key_id": 1}


def _one_line(caplog: pytest.LogCaptureFixture, response: Any) -> dict[str, Any]:
    """The one line a write logged, its id the answer's; the captured lines are then cleared."""
    [line] = _lines(caplog)
    caplog.clear()
    assert response.headers["X-Decision-Id"] == line["decision_id"] and len(line["at"]) == 27
    assert {k: line[k] for k in WRITTEN} == WRITTEN
    return line


def test_a_create_an_advance_and_a_reopen_each_log_one_line_with_the_answers_id(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="workflow_authz.decisions")
    created = api.post("/assessments", {"id": "w1", "area": "behaviour", "actor": "ms_lee"})
    line = _one_line(caplog, created)
    assert created.json["decision_id"] == line["decision_id"]
    assert line | {"decision_id": "", "at": ""} == WRITTEN | {
        "event": "create",
        "decision_id": "",
        "at": "",
        "actor": "ms_lee",
        "role": None,
        "action": None,
        "assessment": "w1",
        "from_phase": None,
        "to_phase": "group_registration",
        "policy_version": 1,
        "allowed": True,
        "status": None,
        "error": None,
    }
    moved = api.post("/assessments/w1/advance", {"role": "mentor", "actor": "ms_lee"})
    line = _one_line(caplog, moved)
    assert moved.json["decision_id"] == line["decision_id"]
    assert {k: line[k] for k in ("event", "actor", "role", "action", "assessment")} == {
        "event": "transition",
        "actor": "ms_lee",
        "role": "mentor",
        "action": "advance",
        "assessment": "w1",
    }
    assert (line["from_phase"], line["to_phase"], line["allowed"], line["status"]) == (
        "group_registration",
        "organisation_approval",
        True,
        None,
    )
    assert line["policy_version"] == 1
    reopened = api.post(
        "/assessments/w1/reopen", {"role": "headteacher", "actor": "head", "reason": "typo"}
    )
    line = _one_line(caplog, reopened)
    assert (line["action"], line["from_phase"], line["to_phase"], line["allowed"]) == (
        "reopen",
        "organisation_approval",
        "group_registration",
        True,
    )
    assert api.key not in caplog.text and api.key.split("_", 2)[2] not in caplog.text


def test_a_refused_write_logs_its_status_and_its_answer_carries_the_id(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="workflow_authz.decisions")
    api.post("/assessments", {"id": "w2", "area": "behaviour"})
    caplog.clear()
    refused = api.post("/assessments/w2/advance", {"role": "headteacher", "actor": "head"})
    assert refused.status_code == 403
    line = _one_line(caplog, refused)
    assert (line["allowed"], line["status"], line["error"]) == (False, 403, "not_allowed")
    assert (line["from_phase"], line["to_phase"]) == ("group_registration", "organisation_approval")
    assert line["policy_version"] == 1
    stale = {"role": "mentor", "actor": "m", "expected_phase": "completed"}
    conflict = api.post("/assessments/w2/advance", stale)
    line = _one_line(caplog, conflict)
    assert (conflict.status_code, line["status"], line["error"]) == (409, 409, "conflict")
    taken = api.post("/assessments", {"id": "w2", "area": "assessment"})
    line = _one_line(caplog, taken)
    assert (taken.status_code, line["event"], line["status"]) == (409, "create", 409)
    missing = api.post("/assessments/ghost/reopen", {"role": "h", "actor": "h", "reason": "r"})
    line = _one_line(caplog, missing)
    assert (missing.status_code, line["status"], line["from_phase"]) == (404, 404, None)


def test_each_item_of_a_bulk_advance_logs_its_own_line(
    api: Api, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="workflow_authz.decisions")
    complete(api, "done", area="behaviour")
    api.post("/assessments", {"id": "b1", "area": "behaviour"})
    caplog.clear()
    bulk = {"role": "mentor", "actor": "m", "ids": ["b1", "ghost", "done", "bad id", 7]}
    results = api.post("/assessments/advance", bulk).json["results"]
    lines = _lines(caplog)
    assert [r["decision_id"] for r in results[:3]] == [line["decision_id"] for line in lines]
    assert [(line["assessment"], line["status"]) for line in lines] == [
        ("b1", None),
        ("ghost", 404),
        ("done", 409),
    ]
    assert {line["event"] for line in lines} == {"transition"}
    # an id that is not one was never tried: no line, no id
    assert [r["decision_id"] for r in results[3:]] == [None, None]
