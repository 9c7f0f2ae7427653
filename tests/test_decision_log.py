"""Every decision gets an id, returned in the answer and the X-Decision-Id header, and one JSON log
line with what an auditor needs -- and never the API key."""

from __future__ import annotations

import json
import logging

import pytest

from tests.conftest import Api

QUESTION = {"role": "parent", "action": "view", "area": "behaviour", "phase": "completed"}


def _lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, object]]:
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
    assert api.key not in caplog.text and api.key.split("_")[2] not in caplog.text


def test_batch_items_each_get_their_own_id(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="workflow_authz.decisions")
    items = [{"id": str(i), **QUESTION} for i in range(3)] + [{"id": "bad", "role": "x"}]
    results = api.post("/authorize/batch", {"requests": items}).json["results"]
    ids = [r.get("decision_id") for r in results]
    assert len(set(ids[:3])) == 3 and ids[3] is None
    assert [line["decision_id"] for line in _lines(caplog)] == ids[:3]
