"""The OpenID AuthZEN Authorization API 1.0 as other systems call it, on SQLite and PostgreSQL,
after the standard's own examples: evaluation and the fixed mapping, evaluations (defaults
replaced whole, the three semantics and their truncated arrays, an item's own error), resource,
subject and action search with pagination (to the end without loss or repetition while
assessments move), PDP metadata and X-Request-ID; keys, tenants, the decision log and metrics as
on the native API; unknown fields ignored, structural errors a 400 in the native error shape."""

from __future__ import annotations

import functools
import json
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from flask import Flask
from prometheus_client import REGISTRY
from sqlalchemy import insert, text

from service import assessments, create_app, keys, pages, policy_changes, shapes, transitions
from service.cli import default_cells
from service.db import Database
from service.decision_log import Write
from service.errors import InvalidRequest
from service.models import Assessment
from service.policies import PolicyEngine
from tests.cells import MATRIX
from tests.conftest import Api

EVALUATION, EVALUATIONS = "/access/v1/evaluation", "/access/v1/evaluations"
SEARCHES = ("subject", "resource", "action")
REQUEST_ID = "bfe9eb29-ab87-4ca3-be83-a1d5d8305716"
"""The standard's example request identifier."""
Placed = Callable[..., None]


def role(name: str) -> dict[str, str]:
    return {"type": "role", "id": name}


def phase(area_phase: str) -> dict[str, str]:
    return {"type": "phase", "id": area_phase}


def assessment(assessment_id: str) -> dict[str, str]:
    return {"type": "assessment", "id": assessment_id}


def action(name: str) -> dict[str, str]:
    return {"name": name}


def search(kind: str) -> str:
    return f"/access/v1/search/{kind}"


def ask(api: Api, subject: Any, name: str, resource: Any) -> Any:
    """One evaluation's answer (its body)."""
    body = {"subject": subject, "action": action(name), "resource": resource}
    response = api.post(EVALUATION, body)
    assert response.status_code == 200, response.json
    return response.json


def found(api: Api, kind: str, body: dict[str, Any]) -> list[str]:
    """Every result of a search, walking its pages to the end."""
    ids: list[str] = []
    token = None
    while True:
        asked = body if token is None else body | {"page": body.get("page", {}) | {"token": token}}
        answer = api.post(search(kind), asked)
        assert answer.status_code == 200, answer.json
        ids += [r["name"] if kind == "action" else r["id"] for r in answer.json["results"]]
        token = answer.json["page"]["next_token"]
        if not token:
            return ids


@pytest.fixture
def placed(db: Database, policy_engine: PolicyEngine) -> Placed:
    """Register an assessment and move it by the responsible roles to a phase (real transitions)."""

    def place(assessment_id: str, area: str, at: str, tenant: str = "default") -> None:
        area_def = policy_engine.workflow.area_by_id[area]
        with db.write() as conn:
            key = keys.authenticate(conn, f"Bearer {keys.create(conn, 'placing', None)}")
            created = Write("create")
            transitions.start(
                conn, policy_engine, tenant, assessment_id, area, key=key, actor="t", log=created
            )
            for p in area_def.phases[: area_def.index(at)]:
                responsible = p.responsible or ""
                transitions.move(
                    conn,
                    policy_engine,
                    tenant,
                    assessment_id,
                    "advance",
                    responsible,
                    "t",
                    p.id,
                    key=key,
                    log=Write("transition"),
                )

    return place


def _log(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        json.loads(r.getMessage()) for r in caplog.records if r.name == "workflow_authz.decisions"
    ]


# -- evaluation ----------------------------------------------------------------------------------


def test_every_default_cell_is_the_native_decision(api: Api) -> None:
    items = [
        {"subject": role(r), "action": action(x), "resource": phase(f"{a}/{p}")}
        for r, a, p, x, _ in MATRIX
    ]
    native = api.post(
        "/authorize/batch",
        {
            "requests": [
                dict(id=str(i), role=r, action=x, area=a, phase=p)
                for i, (r, a, p, x, _) in enumerate(MATRIX)
            ]
        },
    ).json["results"]
    answers = api.post(EVALUATIONS, {"evaluations": items}).json["evaluations"]
    assert len(answers) == len(MATRIX) == len(native)
    for (_, a, p, _, allowed), got, same in zip(MATRIX, answers, native, strict=True):
        assert got["decision"] is allowed is same["allowed"]
        context = got["context"]
        assert (context["area"], context["phase"], context["policy_version"]) == (a, p, 1)
        assert context["reason_admin"] == {"en": same["reason"]}
        assert context.get("rule") == same["rule"]  # absent on a deny: no null is sent
        assert len(context["decision_id"]) == 32


def test_the_standards_https_example_on_an_assessment(api: Api, placed: Placed) -> None:
    placed("maths-7b", "assessment", "course_registration")
    body = {
        "subject": {"type": "user", "id": "alice@example.com", "properties": {"role": "parent"}},
        "resource": assessment("maths-7b"),
        "action": {"name": "view", "properties": {"method": "GET"}},
        "context": {"time": "1985-10-26T01:22-07:00"},
    }
    headers = {"Authorization": f"Bearer {api.key}", "X-Request-ID": REQUEST_ID}
    before = api.client.post(EVALUATION, json=body, headers=headers)
    assert before.status_code == 200 and before.content_type == "application/json"
    assert before.headers["X-Request-ID"] == REQUEST_ID
    assert before.json["decision"] is False
    assert before.json["context"]["phase"] == "course_registration"
    assert before.headers["X-Decision-Id"] == before.json["context"]["decision_id"]
    for mover in ("course_teacher", "headteacher"):
        assert (
            api.post("/assessments/maths-7b/advance", {"role": mover, "actor": "t"}).status_code
            == 200
        )
    after = api.client.post(EVALUATION, json=body, headers=headers).json
    assert after["decision"] is True and after["context"]["phase"] == "completed"
    assert after["context"]["rule"] == ["default", "parent", "assessment", "completed", "view"]


@pytest.mark.parametrize(
    ("subject", "allowed"),
    [
        ({"type": "user", "id": "alice", "properties": {"role": "parent"}}, True),
        (role("parent"), True),
        (role("course_teacher"), False),
        ({"type": "role", "id": "course_teacher", "properties": {"role": "parent"}}, True),
        ({"type": "user", "id": "parent", "properties": {"dept": "x", "role": "mentor"}}, True),
    ],
)
def test_the_role_is_properties_role_else_the_id_of_a_role_subject(
    api: Api, subject: dict[str, Any], allowed: bool
) -> None:
    assert ask(api, subject, "view", phase("behaviour/completed"))["decision"] is allowed


@pytest.mark.parametrize(
    ("subject", "field", "message"),
    [
        (
            {"type": "user", "id": "alice@example.com"},
            "subject",
            'the subject names no role: give subject.properties.role, or a subject of type "role"',
        ),
        (
            {"type": "user", "id": "a", "properties": {"role": 7}},
            "subject.properties.role",
            "subject.properties.role must be a string",
        ),
    ],
)
def test_a_subject_without_a_role_is_a_400(
    api: Api, subject: dict[str, Any], field: str, message: str
) -> None:
    for path in (EVALUATION, search("resource"), search("action")):
        body = {
            "subject": subject,
            "action": action("view"),
            "resource": phase("behaviour/completed"),
        }
        response = api.post(path, body)
        assert response.status_code == 400, path
        assert response.json == {
            "error": {"code": "invalid_request", "message": message, "field": field}
        }


@pytest.mark.parametrize(
    ("who", "what", "resource", "status", "message"),
    [
        ("janitor", "view", phase("behaviour/completed"), 400, "unknown role 'janitor'"),
        ("parent", "delete", phase("behaviour/completed"), 400, "unknown action 'delete'"),
        ("parent", "view", phase("attendance/completed"), 400, "unknown area 'attendance'"),
        (
            "parent",
            "view",
            phase("behaviour/course_registration"),
            400,
            "unknown phase 'course_registration' of area 'behaviour'",
        ),
        (
            "parent",
            "view",
            phase("behaviour"),
            400,
            "a phase's id is <area>/<phase>, not 'behaviour'",
        ),
        (
            "parent",
            "view",
            {"type": "document", "id": "1"},
            400,
            "unknown resource type 'document': assessment or phase",
        ),
        (
            "parent",
            "view",
            assessment("nope"),
            404,
            "unknown assessment 'nope' in tenant 'default'",
        ),
    ],
)
def test_what_the_definition_cannot_answer_is_a_deny_with_its_error(
    api: Api, who: str, what: str, resource: dict[str, str], status: int, message: str
) -> None:
    answer = ask(api, role(who), what, resource)
    assert answer == {
        "decision": False,
        "context": {"error": {"status": status, "message": message}},
    }


GOOD = {
    "subject": role("parent"),
    "action": action("view"),
    "resource": phase("behaviour/completed"),
}


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        (b"[]", None, shapes.NOT_AN_OBJECT),
        (b"not json", None, shapes.NOT_AN_OBJECT),
        (json.dumps({"action": GOOD["action"], "resource": GOOD["resource"]}), "subject", None),
        (json.dumps({"subject": GOOD["subject"], "resource": GOOD["resource"]}), "action", None),
        (json.dumps({"subject": GOOD["subject"], "action": GOOD["action"]}), "resource", None),
        (json.dumps(GOOD | {"subject": {"id": "parent"}}), "subject.type", None),
        (json.dumps(GOOD | {"resource": {"type": "phase"}}), "resource.id", None),
        (json.dumps(GOOD | {"action": {"names": "view"}}), "action.name", None),
        (json.dumps(GOOD | {"subject": {"type": "role", "id": 7}}), "subject.id", "subject.id: "),
        (json.dumps(GOOD | {"action": {"name": ["view"]}}), "action.name", "action.name: "),
        (
            json.dumps(GOOD | {"subject": role("parent") | {"properties": "x"}}),
            "subject.properties",
            "subject.properties: ",
        ),
        (json.dumps(GOOD | {"context": "1985-10-26"}), "context", "context: "),
        (json.dumps(GOOD | {"subject": "parent"}), "subject", "subject: "),
    ],
)
def test_a_structurally_wrong_request_is_a_400_in_the_native_shape(
    api: Api, raw: str | bytes, field: str | None, message: str | None
) -> None:
    for path in (EVALUATION, EVALUATIONS):
        response = api.client.post(
            path, data=raw, headers={"Authorization": f"Bearer {api.key}", "X-Request-ID": "r1"}
        )
        assert response.status_code == 400, (path, response.json)
        assert response.headers["X-Request-ID"] == "r1"
        error = response.json["error"]
        assert error["code"] == "invalid_request" and error.get("field") == field
        if message is None:
            assert error["message"] == f"missing field {field!r}"
        else:
            assert error["message"].startswith(message)


# -- evaluations ---------------------------------------------------------------------------------

ALLOW, DENY = "assessment/completed", "assessment/course_registration"
"""Phases where a parent may, and may not, view."""
MARK = {"code": "200", "reason": "deny_on_first_deny"}


@pytest.mark.parametrize(
    ("semantic", "places", "expected"),
    [
        # the standard's example: documents 1 and 3 may be read, 2 not
        ("execute_all", [ALLOW, DENY, ALLOW], [True, False, True]),
        (None, [ALLOW, DENY, ALLOW], [True, False, True]),
        ("deny_on_first_deny", [ALLOW, DENY, ALLOW], [True, False]),
        ("permit_on_first_permit", [ALLOW, DENY, ALLOW], [True]),
        ("deny_on_first_deny", [ALLOW, ALLOW, ALLOW], [True, True, True]),
        ("permit_on_first_permit", [DENY, DENY, ALLOW, DENY], [False, False, True]),
        ("permit_on_first_permit", [DENY, DENY], [False, False]),
        ("deny_on_first_deny", [DENY, ALLOW], [False]),
    ],
)
def test_each_semantic_answers_as_the_standard_shows(
    api: Api,
    caplog: pytest.LogCaptureFixture,
    semantic: str | None,
    places: list[str],
    expected: list[bool],
) -> None:
    caplog.set_level(logging.INFO, logger="workflow_authz.decisions")
    body: dict[str, Any] = {
        "subject": {"type": "user", "id": "alice@example.com", "properties": {"role": "parent"}},
        "action": action("view"),
        "evaluations": [{"resource": phase(p)} for p in places],
    }
    if semantic is not None:
        body["options"] = {"evaluations_semantic": semantic, "another_option": "value"}
    answers = api.post(EVALUATIONS, body).json["evaluations"]
    assert [a["decision"] for a in answers] == expected
    stopped_on_deny = semantic == "deny_on_first_deny" and not expected[-1]
    for i, answer in enumerate(answers):
        marked = stopped_on_deny and i == len(answers) - 1
        assert {k: answer["context"].get(k) for k in MARK} == (
            MARK if marked else dict.fromkeys(MARK)
        )
    # only what was answered was decided: one log line per answer, none for the items cut off
    assert [line["decision_id"] for line in _log(caplog)] == [
        a["context"]["decision_id"] for a in answers
    ]


def test_an_items_own_entity_replaces_the_default_whole(api: Api) -> None:
    """The standard's example with a default action the third item overrides, plus a subject
    replaced whole (the default's role property does not leak into it) and a null entity."""
    body = {
        "subject": {
            "type": "user",
            "id": "alice@example.com",
            "properties": {"role": "headteacher"},
        },
        "context": {"time": "2024-05-31T15:22-07:00"},
        "action": action("view"),
        "evaluations": [
            {"resource": phase("assessment/completed")},
            {"resource": phase("behaviour/group_registration")},
            {"action": action("advance"), "resource": phase("assessment/completed")},
            {"subject": role("parent"), "resource": phase("behaviour/group_registration")},
            {"subject": None, "resource": phase("behaviour/group_registration")},
            {"resource": phase("behaviour/group_registration"), "context": {"time": "now"}},
        ],
    }
    answers = api.post(EVALUATIONS, body).json["evaluations"]
    assert [a["decision"] for a in answers] == [True, True, False, False, True, True]
    assert "final phase" in answers[2]["context"]["reason_admin"]["en"]
    assert "parent may not view" in answers[3]["context"]["reason_admin"]["en"]


@pytest.mark.parametrize("items", [None, []])
def test_without_items_evaluations_answers_like_one_evaluation(
    api: Api, items: list[Any] | None
) -> None:
    body = dict(GOOD) | ({} if items is None else {"evaluations": items})
    single, boxcar = api.post(EVALUATION, GOOD).json, api.post(EVALUATIONS, body).json
    assert set(boxcar) == {"decision", "context"} and boxcar["decision"] is True
    assert {k: v for k, v in boxcar["context"].items() if k != "decision_id"} == {
        k: v for k, v in single["context"].items() if k != "decision_id"
    }
    missing = api.post(EVALUATIONS, {"action": GOOD["action"], "resource": GOOD["resource"]})
    assert missing.status_code == 400 and missing.json["error"]["field"] == "subject"


def test_an_items_own_error_is_its_own_deny(api: Api, placed: Placed) -> None:
    placed("t1", "assessment", "completed")
    body = {
        "subject": role("parent"),
        "action": action("view"),
        "evaluations": [
            {"resource": assessment("t1")},
            5,
            {"action": action("view")},
            {"resource": {"type": "assessment"}},
            {"resource": assessment("t1"), "subject": role("janitor")},
            {"resource": assessment("t2")},
            {"resource": assessment("t1"), "subject": {"type": "user", "id": "u"}},
            {"resource": phase("behaviour/completed")},
        ],
    }
    response = api.post(EVALUATIONS, body)
    assert response.status_code == 200
    answers = response.json["evaluations"]
    assert [a["decision"] for a in answers] == [True] + [False] * 6 + [True]
    errors = [a["context"].get("error") for a in answers]
    assert errors[0] is None and errors[-1] is None
    assert errors[1:7] == [
        {"status": 400, "message": "an evaluation must be an object"},
        {"status": 400, "message": "missing field 'resource'"},
        {"status": 400, "message": "missing field 'resource.id'"},
        {"status": 400, "message": "unknown role 'janitor'"},
        {"status": 404, "message": "unknown assessment 't2' in tenant 'default'"},
        {
            "status": 400,
            "message": "the subject names no role: give subject.properties.role, or a subject "
            'of type "role"',
        },
    ]


def test_a_boxcar_holds_at_most_1000_items(api: Api) -> None:
    item = {"resource": phase("behaviour/completed")}
    body = {"subject": role("parent"), "action": action("view"), "evaluations": [item] * 1000}
    assert len(api.post(EVALUATIONS, body).json["evaluations"]) == 1000
    refused = api.post(EVALUATIONS, body | {"evaluations": [item] * 1001})
    assert refused.status_code == 400 and refused.json["error"]["field"] == "evaluations"
    unknown = api.post(EVALUATIONS, body | {"options": {"evaluations_semantic": "first"}})
    assert unknown.status_code == 400
    assert unknown.json["error"]["field"] == "options.evaluations_semantic"


# -- keys, tenants, the decision log, metrics, request ids ----------------------------------------


def _bodies() -> dict[str, dict[str, Any]]:
    """A valid body for each AuthZEN POST endpoint (under /access/v1)."""
    return {
        "/evaluation": GOOD,
        "/evaluations": GOOD,
        "/search/subject": GOOD | {"subject": {"type": "role"}},
        "/search/resource": GOOD | {"resource": {"type": "phase"}},
        "/search/action": {"subject": GOOD["subject"], "resource": GOOD["resource"]},
    }


def test_keys_and_tenants_apply_as_on_the_native_api(
    api: Api, db: Database, make_key: Callable[[str | None], str]
) -> None:
    with db.write() as conn:
        cells = set(default_cells()) - {("parent", "behaviour", "completed", "view")}
        policy_changes.create_tenant(conn, "other", cells, actor="test")
    other, every = make_key("other"), make_key(None)
    for path, body in _bodies().items():
        assert api.client.post(f"/access/v1{path}", json=body).status_code == 401
        assert api.post(f"/access/v1{path}", body, key="wa_x_y").status_code == 401
        assert api.post(f"/access/v1{path}", body, key=other).status_code == 403
        assert api.post(f"/tenants/other/access/v1{path}", body).status_code == 403
        assert api.post(f"/tenants/other/access/v1{path}", body, key=other).status_code == 200
        assert api.post(f"/tenants/default/access/v1{path}", body).status_code == 200
        unknown = api.post(f"/tenants/nope/access/v1{path}", body, key=every)
        assert unknown.status_code == 404 and unknown.json["error"]["field"] == "tenant"
        invalid = api.post(f"/tenants/No-pe/access/v1{path}", body, key=every)
        assert invalid.status_code == 400 and invalid.json["error"]["field"] == "tenant"
    # each tenant is decided by its own policy
    assert api.post(EVALUATION, GOOD).json["decision"] is True
    assert (
        api.post("/tenants/other/access/v1/evaluation", GOOD, key=other).json["decision"] is False
    )


def test_decisions_are_logged_and_counted_like_the_native_ones(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="workflow_authz.decisions")
    allowed = {"allowed": "true"}
    before = REGISTRY.get_sample_value("workflow_authz_decisions_total", allowed) or 0.0
    answer = api.post(EVALUATION, GOOD).json
    [line] = _log(caplog)
    assert line["decision_id"] == answer["context"]["decision_id"]
    assert (line["role"], line["area"], line["phase"], line["action"]) == (
        "parent",
        "behaviour",
        "completed",
        "view",
    )
    assert line["key"] == "test key for default" and line["allowed"] is True
    assert REGISTRY.get_sample_value("workflow_authz_decisions_total", allowed) == before + 1
    metrics = api.client.get("/metrics").get_data(as_text=True)
    assert (
        'workflow_authz_http_requests_total{endpoint="/access/v1/evaluation",method="POST",'
        'status="200"}' in metrics
    )


def test_x_request_id_is_echoed_on_every_answer(api: Api) -> None:
    def sent(method: str, path: str, body: Any = None, key: str | None = api.key) -> int:
        headers = {"X-Request-ID": REQUEST_ID} | ({"Authorization": f"Bearer {key}"} if key else {})
        response = api.client.open(path, method=method, json=body, headers=headers)
        assert response.headers["X-Request-ID"] == REQUEST_ID, (method, path)
        return response.status_code

    for path, body in _bodies().items():
        assert sent("POST", f"/access/v1{path}", body) == 200
        assert sent("POST", f"/access/v1{path}", {"subject": 1}) == 400
        assert sent("POST", f"/access/v1{path}", body, key=None) == 401
        assert sent("POST", f"/tenants/nope/access/v1{path}", body) == 403
        assert sent("GET", f"/access/v1{path}") == 405
    assert sent("GET", "/.well-known/authzen-configuration", key=None) == 200
    assert sent("GET", "/.well-known/authzen-configuration/tenants/nope", key=None) == 404
    assert "X-Request-ID" not in api.post(EVALUATION, GOOD).headers


# -- resource search -----------------------------------------------------------------------------

SPREAD = [
    ("a01", "assessment", "course_registration"),
    ("a02", "assessment", "completed"),
    ("b03", "behaviour", "completed"),
    ("a04", "assessment", "organisation_approval"),
    ("b05", "behaviour", "group_registration"),
    ("b06", "behaviour", "organisation_approval"),
    ("a07", "assessment", "completed"),
    ("B08", "behaviour", "completed"),
]


@pytest.mark.parametrize(
    ("who", "what", "narrowed", "expected"),
    [
        ("parent", "view", None, ["B08", "a02", "a07", "b03"]),
        ("parent", "view", "assessment", ["a02", "a07"]),
        ("course_teacher", "edit", None, ["a01", "a04"]),
        ("headteacher", "advance", None, ["a04", "b06"]),
        ("headteacher", "view", "behaviour", ["B08", "b03", "b05", "b06"]),
        ("mentor", "reopen", None, []),
        ("janitor", "view", None, []),
        ("parent", "delete", None, []),
        ("parent", "view", "attendance", []),
    ],
)
def test_resource_search_finds_the_assessments_the_role_may_act_on_now(
    api: Api, placed: Placed, who: str, what: str, narrowed: str | None, expected: list[str]
) -> None:
    for assessment_id, area, at in SPREAD:
        placed(assessment_id, area, at)
    resource: dict[str, Any] = {"type": "assessment", "id": "ignored"}
    if narrowed is not None:
        resource["properties"] = {"area": narrowed}
    body = {"subject": role(who), "action": action(what), "resource": resource}
    ids = found(api, "resource", body)
    assert ids == expected == sorted(expected)  # in id order
    for assessment_id in ids:  # every result, evaluated, is allowed (the standard's semantics)
        assert ask(api, role(who), what, assessment(assessment_id))["decision"] is True
    unknown_type = found(api, "resource", body | {"resource": {"type": "document"}})
    assert unknown_type == []


def test_resource_search_by_phase_lists_where_the_role_may_act(api: Api) -> None:
    body = {
        "subject": role("headteacher"),
        "action": action("reopen"),
        "resource": {"type": "phase"},
    }
    expected = [
        "behaviour/organisation_approval",
        "behaviour/completed",
        "assessment/organisation_approval",
        "assessment/completed",
    ]
    assert found(api, "resource", body) == expected
    assert found(api, "resource", body | {"page": {"limit": 3}}) == expected
    narrowed = body | {"resource": {"type": "phase", "properties": {"area": "assessment"}}}
    assert found(api, "resource", narrowed) == expected[2:]


def test_the_standards_pagination_example(api: Api, placed: Placed) -> None:
    for assessment_id in ("123", "456", "789"):
        placed(assessment_id, "assessment", "completed")
    body = {
        "subject": {"type": "user", "id": "alice@example.com", "properties": {"role": "parent"}},
        "action": action("view"),
        "resource": {"type": "assessment"},
        "page": {"limit": 2},
    }
    first = api.post(search("resource"), body)
    assert list(json.loads(first.data)) == ["page", "results"]  # page first, as recommended
    assert first.json["page"]["count"] == 2 and first.json["page"]["next_token"]
    assert first.json["results"] == [assessment("123"), assessment("456")]
    second = api.post(
        search("resource"), body | {"page": {"token": first.json["page"]["next_token"]}}
    )
    assert second.json == {"page": {"next_token": "", "count": 1}, "results": [assessment("789")]}


def test_a_token_only_continues_the_search_it_came_from(api: Api, placed: Placed) -> None:
    for i in range(3):
        placed(f"s{i}", "assessment", "completed")
    body = {"subject": role("parent"), "action": action("view"), "resource": {"type": "assessment"}}
    token = api.post(search("resource"), body | {"page": {"limit": 1}}).json["page"]["next_token"]
    same = api.post(search("resource"), body | {"page": {"token": token, "limit": 1}})
    assert same.status_code == 200 and same.json["results"] == [assessment("s1")]
    changed = [
        body | {"action": action("edit")},
        body | {"subject": role("learner")},
        body | {"subject": {"type": "user", "id": "u", "properties": {"role": "parent"}}},
        body | {"resource": {"type": "assessment", "properties": {"area": "assessment"}}},
        body | {"resource": {"type": "phase"}},
        body | {"context": {"time": "now"}},
    ]
    for other in changed:
        refused = api.post(search("resource"), other | {"page": {"token": token}})
        assert refused.status_code == 400, other
        assert refused.json["error"]["field"] == "page.token"
    for path in (search("subject"), search("action")):
        refused = api.post(
            path, _bodies()[path.removeprefix("/access/v1")] | {"page": {"token": token}}
        )
        assert refused.status_code == 400 and refused.json["error"]["field"] == "page.token"
    for bad in ("garbage", "x" + token, token + "x", pages.encode_token("0" * 16, 1, "s0")):
        refused = api.post(search("resource"), body | {"page": {"token": bad}})
        assert refused.status_code == 400 and refused.json["error"]["field"] == "page.token"
    relimited = api.post(search("resource"), body | {"page": {"token": token, "limit": 2}})
    assert relimited.status_code == 400 and relimited.json["error"]["field"] == "page.limit"
    # the id of the entity searched for is ignored, and so is the token's binding to it
    ignored = body | {"resource": {"type": "assessment", "id": "s9"}, "page": {"token": token}}
    assert api.post(search("resource"), ignored).json["results"] == [assessment("s1")]


def test_pages_hold_exactly_their_limit_100_by_default_1_to_1000(api: Api, placed: Placed) -> None:
    for i in range(101):
        placed(f"p{i:03d}", "behaviour", "completed")
    body = {
        "subject": role("learner"),
        "action": action("view"),
        "resource": {"type": "assessment"},
    }
    first = api.post(search("resource"), body).json
    assert first["page"]["count"] == len(first["results"]) == 100
    rest = api.post(search("resource"), body | {"page": {"token": first["page"]["next_token"]}})
    assert rest.json == {"page": {"next_token": "", "count": 1}, "results": [assessment("p100")]}
    whole = api.post(search("resource"), body | {"page": {"limit": 101}}).json
    assert whole["page"] == {"next_token": "", "count": 101}
    sizes = []
    token = None
    while token != "":
        asked = {"limit": 7} | ({"token": token} if token else {})
        answer = api.post(search("resource"), body | {"page": asked}).json
        sizes.append(answer["page"]["count"])
        token = answer["page"]["next_token"]
    assert sizes == [7] * 14 + [3]
    for limit in (0, -1, 1001, "7"):
        refused = api.post(search("resource"), body | {"page": {"limit": limit}})
        assert refused.status_code == 400 and refused.json["error"]["field"] == "page.limit"
    assert (
        api.post(search("resource"), body | {"page": {"limit": 1000}}).json["page"]["count"] == 101
    )


def test_paging_to_the_end_while_assessments_move_neither_repeats_nor_skips(
    app: Flask, api: Api, placed: Placed
) -> None:
    """Headteachers may edit at organisation approval (both areas) and on a completed
    assessment. Stayers stay in that set (some never move, some move within it); leavers go out
    of it and back (behaviour: completed is outside); others never enter it. A thread moves
    stayers and leavers the whole time the walk goes, at least once between any two pages."""
    groups: dict[str, list[str]] = {"still": [], "within": [], "in_and_out": [], "never": []}
    places = {
        "still": ("assessment", "completed"),
        "within": ("assessment", "organisation_approval"),
        "in_and_out": ("behaviour", "organisation_approval"),
        "never": ("assessment", "course_registration"),
    }
    for i in range(48):
        group = list(places)[i % 4]
        groups[group].append(f"m{i:03d}")
        placed(f"m{i:03d}", *places[group])
    movers = groups["within"] + groups["in_and_out"]
    moves, stop, failures = [0], threading.Event(), []
    moved = threading.Condition()

    def move_all_the_time() -> None:
        client = Api(app.test_client(), api.key)
        at = dict.fromkeys(movers, "organisation_approval")
        while not stop.is_set():
            for m in movers:
                if at[m] == "organisation_approval":
                    body = {"role": "headteacher", "actor": "mover", "expected_phase": at[m]}
                    response = client.post(f"/assessments/{m}/advance", body)
                    at[m] = "completed"
                else:
                    body = {
                        "role": "headteacher",
                        "actor": "mover",
                        "reason": "again",
                        "expected_phase": at[m],
                    }
                    response = client.post(f"/assessments/{m}/reopen", body)
                    at[m] = "organisation_approval"
                if response.status_code != 200:
                    failures.append(response.json)
                    stop.set()
                with moved:
                    moves[0] += 1
                    moved.notify_all()
                if stop.is_set():
                    return

    def moved_past(count: int) -> bool:
        return moves[0] > count or stop.is_set()

    walker = Api(app.test_client(), api.key)
    body = {
        "subject": role("headteacher"),
        "action": action("edit"),
        "resource": {"type": "assessment"},
    }
    mover = threading.Thread(target=move_all_the_time)
    mover.start()
    seen: list[str] = []
    sizes: list[int] = []
    moves_at: list[int] = []
    token = None
    try:
        while True:
            with moved:  # let at least one more move land before each page
                assert moved.wait_for(functools.partial(moved_past, moves[0]), timeout=60)
            moves_at.append(moves[0])
            page = {"limit": 5} | ({"token": token} if token else {})
            answer = walker.post(search("resource"), body | {"page": page})
            assert answer.status_code == 200, answer.json
            ids = [r["id"] for r in answer.json["results"]]
            seen += ids
            sizes.append(len(ids))
            token = answer.json["page"]["next_token"]
            if not token:
                break
    finally:
        stop.set()
        mover.join()
    assert failures == []
    assert len(sizes) >= 6 and all(size == 5 for size in sizes[:-1]) and 1 <= sizes[-1] <= 5
    assert moves_at == sorted(set(moves_at))  # assessments moved between every two pages
    assert len(seen) == len(set(seen)) and seen == sorted(seen)  # no repeats, in id order
    assert set(groups["still"] + groups["within"]) <= set(seen)  # none that stayed is skipped
    assert not set(groups["never"]) & set(seen)
    assert set(seen) <= set(groups["still"] + groups["within"] + groups["in_and_out"])


def test_a_page_of_resource_search_is_one_statement_on_the_place_index(db: Database) -> None:
    """With enough assessments for the planner to choose, the statement reads
    ix_assessments_place in id order for each place (no scan of the table, no sort of it)."""
    rows = [
        {
            "tenant": "default",
            "id": f"x{i:05d}",
            "area": "assessment",
            "phase": ("course_registration", "organisation_approval", "completed")[i % 3],
            "version": 1,
            "created_at": datetime(2026, 1, 1, tzinfo=UTC),
            "updated_at": datetime(2026, 1, 1, tzinfo=UTC),
        }
        for i in range(3000)
    ]
    places = [("assessment", "organisation_approval"), ("assessment", "completed")]
    statement = assessments.ids_at_statement("default", places, "x00100", 101)
    with db.write() as conn:
        conn.execute(insert(Assessment), rows)
        conn.execute(text("ANALYZE"))
    with db.read() as conn:
        sql = str(statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        if conn.dialect.name == "sqlite":
            plan = "\n".join(r[-1] for r in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
            assert plan.count("USING COVERING INDEX ix_assessments_place") == 2, plan
            assert "SCAN assessments" not in plan, plan
        else:
            plan = "\n".join(r[0] for r in conn.execute(text(f"EXPLAIN {sql}")))
            assert plan.count("using ix_assessments_place") == 2, plan
            assert "Merge Append" in plan and "Seq Scan" not in plan, plan
        assert assessments.ids_at(conn, "default", places, "x00100", 3) == [
            "x00101",
            "x00103",
            "x00104",
        ]


# -- subject and action search -------------------------------------------------------------------


def test_subject_search_lists_the_roles_that_may(api: Api, placed: Placed) -> None:
    placed("done", "behaviour", "completed")
    audience_and_staff = ["learner", "parent", "external_system", "mentor", "headteacher"]
    for resource in (phase("behaviour/completed"), assessment("done")):
        body = {
            "subject": {"type": "role", "id": "ignored"},
            "action": action("view"),
            "resource": resource,
        }
        assert found(api, "subject", body) == audience_and_staff
        paged = api.post(search("subject"), body | {"page": {"limit": 2}}).json
        assert paged["results"] == [role("learner"), role("parent")]
        assert found(api, "subject", body | {"page": {"limit": 2}}) == audience_and_staff
        for unknown in ({"subject": {"type": "user"}}, {"action": action("fly")}):
            assert found(api, "subject", body | unknown) == []
    for resource in (assessment("gone"), {"type": "document", "id": "1"}, phase("x/y")):
        body = {"subject": {"type": "role"}, "action": action("view"), "resource": resource}
        assert found(api, "subject", body) == []


def test_action_search_is_the_native_permissions_answer(api: Api, placed: Placed) -> None:
    placed("q1", "assessment", "organisation_approval")
    cases = [
        ("headteacher", assessment("q1"), {"assessment": "q1"}),
        ("course_teacher", assessment("q1"), {"assessment": "q1"}),
        ("parent", phase("assessment/completed"), {"area": "assessment", "phase": "completed"}),
        (
            "mentor",
            phase("behaviour/group_registration"),
            {"area": "behaviour", "phase": "group_registration"},
        ),
        (
            "learner",
            phase("behaviour/group_registration"),
            {"area": "behaviour", "phase": "group_registration"},
        ),
    ]
    for who, resource, where in cases:
        native = api.post("/permissions", {"role": who} | where).json["actions"]
        body = {"subject": role(who), "resource": resource, "action": action("ignored")}
        assert found(api, "action", body) == native
        assert found(api, "action", body | {"page": {"limit": 1}}) == native
    assert (
        found(api, "action", {"subject": role("headteacher"), "resource": assessment("no")}) == []
    )
    assert found(api, "action", {"subject": role("janitor"), "resource": assessment("q1")}) == []


# -- PDP metadata and the pure parts -------------------------------------------------------------


def test_pdp_metadata_names_each_tenants_endpoints(
    app: Flask, api: Api, db: Database, make_key: Callable[[str | None], str]
) -> None:
    with db.write() as conn:
        policy_changes.create_tenant(conn, "north", default_cells(), actor="test")
    client = app.test_client()
    plain = client.get("/.well-known/authzen-configuration")
    assert plain.status_code == 200 and plain.content_type == "application/json"
    assert plain.json == {
        "policy_decision_point": "http://localhost",
        "access_evaluation_endpoint": "http://localhost/access/v1/evaluation",
        "access_evaluations_endpoint": "http://localhost/access/v1/evaluations",
        "search_subject_endpoint": "http://localhost/access/v1/search/subject",
        "search_resource_endpoint": "http://localhost/access/v1/search/resource",
        "search_action_endpoint": "http://localhost/access/v1/search/action",
    }
    north = client.get("/.well-known/authzen-configuration/tenants/north").json
    assert north["policy_decision_point"] == "http://localhost/tenants/north"
    for name, url in north.items():
        if name.endswith("_endpoint"):
            assert url.startswith("http://localhost/tenants/north/access/v1/")
    # each advertised endpoint answers its tenant
    path = north["access_evaluation_endpoint"].removeprefix("http://localhost")
    assert api.post(path, GOOD, key=make_key("north")).json["decision"] is True
    for unknown in ("nope", "No", "a.b"):
        refused = client.get(f"/.well-known/authzen-configuration/tenants/{unknown}")
        assert refused.status_code == 404 and refused.json["error"]["code"] == "not_found"


def test_pdp_metadata_names_the_public_url_when_set(store_url: str) -> None:
    app = create_app(
        {"DATABASE_URL": store_url, "TESTING": True, "PUBLIC_URL": "https://pdp.example.com/"}
    )
    try:
        answer = app.test_client().get("/.well-known/authzen-configuration/tenants/default").json
    finally:
        app.extensions["workflow_authz.db"].dispose()
    assert answer["policy_decision_point"] == "https://pdp.example.com/tenants/default"
    assert answer["search_resource_endpoint"] == (
        "https://pdp.example.com/tenants/default/access/v1/search/resource"
    )


def test_a_token_is_bound_to_its_search_and_carries_its_limit() -> None:
    first = pages.start(["resource", "default", {"a": 1}], None, None)
    assert (first.limit, first.after) == (pages.DEFAULT_LIMIT, None)
    ids, answer = first.answer([f"x{i}" for i in range(101)])
    assert len(ids) == answer.count == 100 and answer.next_token
    again = pages.start(["resource", "default", {"a": 1}], answer.next_token, None)
    assert (again.limit, again.after) == (100, "x99")
    with pytest.raises(InvalidRequest):
        pages.start(["resource", "default", {"a": 2}], answer.next_token, None)
    with pytest.raises(InvalidRequest):
        pages.start(["resource", "other", {"a": 1}], answer.next_token, None)
    assert first.answer(["x0"])[1] == shapes.PageAnswer(next_token="", count=1)
    assert first.answer([])[1] == shapes.PageAnswer(next_token="", count=0)


def test_a_small_lists_pages_follow_its_definition_order() -> None:
    universe = ["a", "b", "c", "d", "e"]
    page = pages.Page("0" * 16, 2, after="b")
    assert pages.following(page, ["a", "c", "e"], universe) == ["c", "e"]
    assert pages.following(pages.Page("0" * 16, 2), ["a", "c"], universe) == ["a", "c"]
    with pytest.raises(InvalidRequest):
        pages.following(pages.Page("0" * 16, 2, after="z"), ["a"], universe)
