"""The API's shapes are declared once (service/shapes.py): every endpoint enforces exactly the body
and query its view declares, and /openapi.json says exactly that. These tests walk the declared
operations, so an endpoint added without a declaration, or a declaration the view does not
enforce, fails here."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask

from service import shapes
from service.errors import InvalidRequest
from tests.conftest import Api

EXAMPLES: dict[type[shapes.Body], dict[str, Any]] = {
    shapes.QuestionBody: {
        "role": "parent",
        "action": "view",
        "area": "behaviour",
        "phase": "completed",
    },
    shapes.Place: {"role": "parent", "area": "behaviour", "phase": "completed"},
    shapes.BatchBody: {"requests": []},
    shapes.CreateBody: {"id": "s1", "area": "behaviour"},
    shapes.MoveBody: {"role": "mentor", "actor": "m"},
    shapes.ReopenBody: {"role": "headteacher", "actor": "h", "reason": "typo"},
    shapes.BulkAdvanceBody: {"role": "mentor", "actor": "m", "ids": ["s1"]},
    shapes.EvaluationBody: {
        "subject": {"type": "role", "id": "parent"},
        "action": {"name": "view"},
        "resource": {"type": "phase", "id": "behaviour/completed"},
    },
    shapes.EvaluationsBody: {
        "subject": {"type": "role", "id": "parent"},
        "action": {"name": "view"},
        "evaluations": [{"resource": {"type": "phase", "id": "behaviour/completed"}}],
    },
    shapes.SubjectSearchBody: {
        "subject": {"type": "role"},
        "action": {"name": "view"},
        "resource": {"type": "phase", "id": "behaviour/completed"},
    },
    shapes.ResourceSearchBody: {
        "subject": {"type": "role", "id": "parent"},
        "action": {"name": "view"},
        "resource": {"type": "phase"},
    },
    shapes.ActionSearchBody: {
        "subject": {"type": "role", "id": "parent"},
        "resource": {"type": "phase", "id": "behaviour/completed"},
    },
}
"""A valid body of each declared shape."""
NOTHING_REQUIRED = {shapes.EvaluationsBody}
"""Bodies whose every field may be left out: a boxcar's items may each bring every entity."""


def _ignores_extras(model: type[shapes.Body]) -> bool:
    """AuthZEN's bodies ignore unknown fields (the standard says so); native ones refuse them."""
    return model.model_config.get("extra") == "ignore"


def _without_ids(answer: Any) -> Any:
    """An answer less its decision ids, which differ between two askings of one question."""
    if isinstance(answer, dict):
        return {k: _without_ids(v) for k, v in answer.items() if k != "decision_id"}
    if isinstance(answer, list):
        return [_without_ids(v) for v in answer]
    return answer


def _operations(app: Flask) -> list[tuple[str, str, shapes.Operation]]:
    """(path, method, operation) of every declared API route, with `s1` for the assessment id."""
    found = []
    for rule in app.url_map.iter_rules():
        op = shapes.declared(app.view_functions[rule.endpoint])
        if op is not None:
            path = rule.rule.replace("<assessment_id>", "s1").replace("<tenant>", "default")
            found += [(path, m, op) for m in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})]
    return found


def test_every_api_route_declares_its_shapes(app: Flask) -> None:
    api_routes = {
        r.rule for r in app.url_map.iter_rules() if r.endpoint.startswith(("api.", "authzen."))
    }
    declared = {
        r.rule
        for r in app.url_map.iter_rules()
        if shapes.declared(app.view_functions[r.endpoint]) is not None
    }
    assert api_routes == declared


def test_every_declared_body_has_an_example_here(app: Flask) -> None:
    bodies = {op.body for _, _, op in _operations(app) if op.body is not None}
    assert bodies == set(EXAMPLES)


def test_each_body_refuses_an_unknown_field_naming_it(app: Flask, api: Api) -> None:
    for path, _, op in _operations(app):
        if op.body is None or _ignores_extras(op.body):
            continue
        response = api.post(path, EXAMPLES[op.body] | {"surplus": 1})
        assert response.status_code == 400, (path, response.json)
        assert response.json["error"] == {
            "code": "invalid_request",
            "message": "unknown field 'surplus'",
            "field": "surplus",
        }


def test_each_authzen_body_ignores_unknown_fields_at_every_level(app: Flask, api: Api) -> None:
    standard = [(p, op) for p, _, op in _operations(app) if op.body and _ignores_extras(op.body)]
    assert len(standard) == 2 * 5  # five endpoints, each for tenant default and by tenant
    for path, op in standard:
        assert op.body is not None
        example = EXAMPLES[op.body]
        surplus = {k: v | {"surplus": 1} if isinstance(v, dict) else v for k, v in example.items()}
        plain, extra = api.post(path, example), api.post(path, surplus | {"surplus": [1]})
        assert plain.status_code == extra.status_code == 200, (path, extra.json)
        assert _without_ids(plain.json) == _without_ids(extra.json), path


def test_each_required_field_the_document_names_is_required_by_the_service(
    app: Flask, api: Api
) -> None:
    schemas = app.test_client().get("/openapi.json").json["components"]["schemas"]
    for path, _, op in _operations(app):
        if op.body is None:
            continue
        required = schemas[op.body.__name__].get("required", [])
        assert bool(required) is (op.body not in NOTHING_REQUIRED), op.body
        for name in required:
            body = {k: v for k, v in EXAMPLES[op.body].items() if k != name}
            response = api.post(path, body)
            assert response.status_code == 400, (path, name, response.json)
            assert response.json["error"]["field"] == name


def test_the_document_forbids_extra_fields_wherever_the_service_does(app: Flask) -> None:
    schemas = app.test_client().get("/openapi.json").json["components"]["schemas"]
    for model in EXAMPLES:
        forbidden = not _ignores_extras(model)
        assert schemas[model.__name__].get("additionalProperties", True) is not forbidden, model


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        (b"", None, shapes.NOT_AN_OBJECT),
        (b"[1]", None, shapes.NOT_AN_OBJECT),
        (
            b'{"role": 7, "action": "view"}',
            "role",
            "role must be an identifier: [a-z][a-z0-9_]*, at most 64 characters",
        ),
        (b'{"action": "view"}', "role", "missing field 'role'"),
        (
            b'{"role": "parent", "action": "view", "area": "Behaviour", "phase": "completed"}',
            "area",
            "area must be an identifier: [a-z][a-z0-9_]*, at most 64 characters",
        ),
        (
            b'{"role": "Parent", "action": "view"}',
            "role",
            "role must be an identifier: [a-z][a-z0-9_]*, at most 64 characters",
        ),
    ],
)
def test_a_finding_becomes_the_services_error_naming_the_field(
    raw: bytes, field: str | None, message: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        shapes.parse_json(shapes.QuestionBody, raw)
    assert (refused.value.field, refused.value.message) == (field, message)


@pytest.mark.parametrize(
    ("actor", "words"),
    [
        ("a\u0085", "U+0085 (character 2), a control character (Unicode category Cc)"),
        ("\ufeffa", "U+FEFF ZERO WIDTH NO-BREAK SPACE (character 1), a format character"),
        ("a\u2028b", "U+2028 LINE SEPARATOR (character 2), a line separator (Unicode category"),
        ("a\u00a0b", "U+00A0 NO-BREAK SPACE (character 2), a space other than U+0020"),
        ("a\ue000", "U+E000 (character 2), a private-use character (Unicode category Co)"),
        ("a\u0378", "U+0378 (character 2), an unassigned code point (Unicode category Cn)"),
        ("\u212b", "NFC, which it stops being at U+212B ANGSTROM SIGN (character 1)"),
        ("a\u0316\u0301", "NFC, which it stops being at U+0301 COMBINING ACUTE ACCENT (char"),
        ("   ", "must not be blank"),
    ],
)
def test_free_text_names_the_character_that_keeps_it_from_reading_as_stored(
    actor: str, words: str
) -> None:
    raw = json.dumps({"role": "mentor", "actor": actor}).encode()
    with pytest.raises(InvalidRequest) as refused:
        shapes.parse_json(shapes.MoveBody, raw)
    assert refused.value.field == "actor" and words in refused.value.message


@pytest.mark.parametrize("actor", ["\u0430dmin", "Ren\u00e9", "O'Brien", "李明", "ms lee (ICT)"])
def test_printable_nfc_text_is_free_text_look_alikes_included(actor: str) -> None:
    raw = json.dumps({"role": "mentor", "actor": actor}).encode()
    assert shapes.parse_json(shapes.MoveBody, raw).actor == actor


def test_an_unknown_field_is_reported_before_any_other_finding() -> None:
    with pytest.raises(InvalidRequest) as refused:
        shapes.parse_json(shapes.QuestionBody, b'{"role": "Parent", "acton": "view"}')
    assert refused.value.field == "acton"


def test_answers_serialise_as_declared() -> None:
    error = shapes.ErrorBody(error=shapes.ErrorObject(code="conflict", message="taken"))
    assert error.model_dump_json() == '{"error":{"code":"conflict","message":"taken"}}'
    named = shapes.ErrorBody(
        error=shapes.ErrorObject(code="invalid_request", message="bad", field="role")
    )
    assert '"field":"role"' in named.model_dump_json()


TRICKY = [
    "plain",
    "é ünï 中文 🙂",
    'quote " back \\ slash',
    "ctl \x00 \x1f \t \n \x7f",
    "\u2028/\u2029",
]


@pytest.mark.parametrize("text", TRICKY)
def test_a_batch_of_plain_rows_is_the_bytes_of_its_declared_results(text: str) -> None:
    """The batch answer is built as plain rows for speed: its bytes must be those the declared
    BatchResults serialises to, decisions (a deny without a rule, an assessment or not) and
    errors (with and without a field) alike, whatever the strings hold."""
    allowed = dict(
        decision_id="ab" * 16,
        allowed=True,
        tenant="t",
        role=text,
        action="advance",
        area="a",
        phase="p",
        assessment=text,
        policy_version=3,
        rule=["t", text, "a", "p", "advance"],
        reason=f"Allowed: {text}.",
    )
    denied = {**allowed, "allowed": False, "assessment": None, "rule": None}
    rows = [
        {**allowed, "id": text},
        {**denied, "id": "2"},
        shapes.batch_error(text, "not_found", f"unknown {text!r}", "assessment"),
        shapes.batch_error("4", "forbidden", text, None),
    ]
    declared = shapes.BatchResults(
        [
            shapes.BatchDecision(**{**allowed, "id": text}),
            shapes.BatchDecision(**{**denied, "id": "2"}),
            shapes.BatchError(
                text,
                shapes.ErrorObject(
                    code="not_found", message=f"unknown {text!r}", field="assessment"
                ),
            ),
            shapes.BatchError("4", shapes.ErrorObject(code="forbidden", message=text)),
        ]
    )
    assert shapes.batch_json(rows) == shapes.to_json(declared)


def test_a_batch_row_json_cannot_encode_ends_as_the_declared_results_do() -> None:
    """A lone surrogate: orjson refuses it; the declared serialiser's error is what escapes."""
    rows = [shapes.batch_error("\ud800", "invalid_request", "bad", None)]
    with pytest.raises(ValueError, match="surrogates not allowed"):
        shapes.batch_json(rows)
