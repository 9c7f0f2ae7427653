"""POST /authorize and /authorize/batch as other apps use them, on SQLite and PostgreSQL: every
default cell, both question forms, denies as answers, precise 400s, keys and tenants."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from service import policy_changes
from tests.cells import CELL_IDS, MATRIX
from tests.conftest import Api


def _ask(api: Api, **question: Any) -> Any:
    return api.post("/authorize", question)


@pytest.mark.parametrize(("role", "area", "phase", "action", "allowed"), MATRIX, ids=CELL_IDS)
def test_every_default_cell_through_the_api(
    api: Api, role: str, area: str, phase: str, action: str, allowed: bool
) -> None:
    response = _ask(api, role=role, action=action, area=area, phase=phase)
    assert response.status_code == 200
    body = response.json
    assert body["allowed"] is allowed
    assert (body["tenant"], body["role"], body["action"], body["area"], body["phase"]) == (
        "default",
        role,
        action,
        area,
        phase,
    )
    assert body["policy_version"] == 1
    assert body["rule"] == (["default", role, area, phase, action] if allowed else None)
    assert body["reason"].startswith("Allowed" if allowed else "Denied")


def test_assessment_form_decides_on_the_current_phase(api: Api) -> None:
    assert api.post("/assessments", {"id": "t1-2026", "area": "assessment"}).status_code == 201
    ask = dict(role="parent", action="view", assessment="t1-2026")
    first = _ask(api, **ask).json
    assert (first["allowed"], first["phase"], first["area"]) == (
        False,
        "course_registration",
        "assessment",
    )
    for role in ("course_teacher", "headteacher"):
        assert (
            api.post("/assessments/t1-2026/advance", {"role": role, "actor": "x"}).status_code
            == 200
        )
    last = _ask(api, **ask).json
    assert (last["allowed"], last["phase"], last["assessment"]) == (True, "completed", "t1-2026")
    assert last["rule"] == ["default", "parent", "assessment", "completed", "view"]


def test_tenant_defaults_to_default(api: Api) -> None:
    assert _ask(
        api, tenant="default", role="parent", action="view", area="behaviour", phase="completed"
    ).json["allowed"]


BASE = {"role": "parent", "action": "view", "area": "behaviour", "phase": "completed"}
DROP = object()


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"role": "janitor"}, "role"),
        ({"role": "Parent"}, "role"),
        ({"role": 7}, "role"),
        ({"role": DROP}, "role"),
        ({"action": "delete"}, "action"),
        ({"action": ""}, "action"),
        ({"area": "attendance"}, "area"),
        ({"phase": "course_registration"}, "phase"),
        ({"phase": None}, "phase"),
        ({"phase": DROP}, "phase"),
        ({"tenant": "North Side"}, "tenant"),
        ({"tenant": "x" * 65}, "tenant"),
        ({"actor": "stray"}, "actor"),
        ({"assessment": "a1"}, "area"),
        ({"assessment": "a b", "area": DROP, "phase": DROP}, "assessment"),
        ({"area": DROP, "phase": DROP}, "assessment"),
    ],
)
def test_every_malformed_field_is_a_400_naming_it(
    api: Api, change: dict[str, Any], field: str
) -> None:
    question = {k: v for k, v in (BASE | change).items() if v is not DROP}
    response = api.post("/authorize", question)
    assert response.status_code == 400, response.json
    assert response.json["error"]["code"] == "invalid_request"
    assert response.json["error"]["field"] == field


@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'"text"', b"{"])
def test_a_body_that_is_not_a_json_object_is_a_400(api: Api, body: bytes) -> None:
    response = api.client.post(
        "/authorize", data=body, headers=api._auth(None), content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Basic abc", "Bearer wa_00000000_nope", "Bearer nonsense"]
)
def test_missing_or_invalid_key_is_401(api: Api, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = api.client.post("/authorize", json=BASE, headers=headers)
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"
    assert "allowed" not in response.json


def test_a_key_with_a_tampered_secret_is_401(api: Api) -> None:
    tampered = api.key[:-2] + ("AA" if not api.key.endswith("AA") else "BB")
    assert api.post("/authorize", BASE, key=tampered).status_code == 401


def test_key_of_another_tenant_is_403(
    api: Api, db: Any, make_key: Callable[[str | None], str], policy_engine: Any
) -> None:
    with db.write() as conn:
        policy_changes.create_tenant(
            conn, "north", [("parent", "behaviour", "completed", "view")], actor="t"
        )
    north_key = make_key("north")
    response = api.post("/authorize", BASE, key=north_key)
    assert response.status_code == 403 and response.json["error"]["code"] == "forbidden"
    assert api.post("/authorize", BASE | {"tenant": "north"}, key=north_key).json["allowed"] is True
    assert api.post("/authorize", BASE | {"tenant": "north"}).status_code == 403
    all_key = make_key(None)
    assert api.post("/authorize", BASE | {"tenant": "north"}, key=all_key).status_code == 200


def test_unknown_tenant_and_unknown_assessment_are_404(
    api: Api, make_key: Callable[[str | None], str]
) -> None:
    all_key = make_key(None)
    unknown_tenant = api.post("/authorize", BASE | {"tenant": "nowhere"}, key=all_key)
    assert unknown_tenant.status_code == 404 and unknown_tenant.json["error"]["field"] == "tenant"
    missing = api.post("/authorize", {"role": "parent", "action": "view", "assessment": "ghost"})
    assert missing.status_code == 404 and missing.json["error"]["field"] == "assessment"


def test_batch_answers_in_order_with_item_errors(api: Api) -> None:
    api.post("/assessments", {"id": "b1", "area": "behaviour"})
    requests = [
        {"id": "c1", "role": "mentor", "action": "edit", "assessment": "b1"},
        {"id": "c2", "role": "parent", "action": "view", "assessment": "b1"},
        {
            "id": "c3",
            "role": "janitor",
            "action": "view",
            "area": "behaviour",
            "phase": "completed",
        },
        {"id": "c4", "role": "parent", "action": "view", "assessment": "ghost"},
        {"id": "c5", "tenant": "north", "role": "parent", "action": "view", "assessment": "b1"},
        {"role": "parent", "action": "view", "assessment": "b1"},
        "not an object",
        {
            "id": "c8",
            "role": "headteacher",
            "action": "view",
            "area": "assessment",
            "phase": "completed",
        },
    ]
    response = api.post("/authorize/batch", {"requests": requests})
    assert response.status_code == 200
    results = response.json["results"]
    assert [r["id"] for r in results] == ["c1", "c2", "c3", "c4", "c5", "5", "6", "c8"]
    assert [r.get("allowed") for r in results] == [True, False, None, None, None, None, None, True]
    assert [r.get("error", {}).get("code") for r in results] == [
        None,
        None,
        "invalid_request",
        "not_found",
        "forbidden",
        "invalid_request",
        "invalid_request",
        None,
    ]
    assert results[2]["error"]["field"] == "role"
    assert results[0]["phase"] == "group_registration" and results[0]["policy_version"] == 1


def test_batch_limits(api: Api) -> None:
    item = {"id": "x", **BASE}
    assert api.post("/authorize/batch", {"requests": [item] * 1000}).status_code == 200
    too_many = api.post("/authorize/batch", {"requests": [item] * 1001})
    assert too_many.status_code == 400 and too_many.json["error"]["field"] == "requests"
    assert api.post("/authorize/batch", {"requests": {}}).status_code == 400
    assert (
        api.post("/authorize/batch", {"requests": [], "extra": 1}).json["error"]["field"] == "extra"
    )
    assert api.post("/authorize/batch", {"requests": []}).json == {"results": []}


def test_oversized_body_is_413(api: Api) -> None:
    response = api.post("/authorize", BASE | {"padding": "x" * 300_000})
    assert response.status_code == 413 and response.json["error"]["code"] == "too_large"


def test_unknown_routes_and_methods_answer_json(api: Api) -> None:
    assert api.get("/nope").json["error"]["code"] == "not_found"
    wrong_method = api.client.delete("/authorize")
    assert (
        wrong_method.status_code == 405
        and wrong_method.json["error"]["code"] == "method_not_allowed"
    )
