"""The OpenAPI 3.1 description of the HTTP API, served at /openapi.json, derived from the routes
and the shapes their views declare (shapes.py): what it says is what the service enforces."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from flask import current_app
from pydantic import TypeAdapter
from pydantic.json_schema import JsonSchemaMode
from werkzeug.routing import Rule

from service import shapes
from service.shapes import Operation

REF = "#/components/schemas/{model}"
_EXTENSION = "workflow_authz.openapi"
ERROR_TEXTS = {
    400: "Malformed request; `field` names the field at fault.",
    401: "Missing or invalid API key.",
    403: "The key is not valid for that tenant (code forbidden), or the policy does not let the "
    "role do this (code not_allowed).",
    404: "Unknown tenant or assessment.",
    409: "Conflict with the current state.",
    413: "Request body too large.",
    429: "Too many failed authentications from this address; see Retry-After.",
    503: "The store cannot be read: nothing is allowed.",
}
PATH_PARAMETERS = {"assessment_id": shapes.AssessmentId, "tenant": shapes.Ident}


def served() -> bytes:
    """The document as JSON, derived once per app (the routes and shapes never change while it
    runs): a public endpoint must not rebuild schemas for every caller."""
    found: bytes | None = current_app.extensions.get(_EXTENSION)
    if found is None:
        found = current_app.extensions[_EXTENSION] = shapes.to_json(openapi_document())
    return found


def openapi_document() -> shapes.OpenApiDocument:
    """The whole description: every endpoint, its bodies, answers and errors."""
    operations = list(_operations())
    refs, schemas = _schemas(operations)
    paths: dict[str, Any] = {}
    for rule, method, view, op in operations:
        paths.setdefault(_path(rule), {})[method] = _operation(rule, view, op, refs)
    return shapes.OpenApiDocument.model_construct(
        openapi="3.1.0",
        info={
            "title": "workflow-authz",
            "version": "1",
            "description": "Who may view, edit and advance assessments at each workflow phase.",
        },
        security=[{"bearer": []}],
        paths=paths,
        components={
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key from `workflow-authz keys create`.",
                }
            },
            "schemas": schemas,
        },
    )


def _operations() -> Iterator[tuple[Rule, str, Any, Operation]]:
    """Each declared (rule, method) of the app, in the order the routes were added."""
    for rule in current_app.url_map.iter_rules():
        view = current_app.view_functions[rule.endpoint]
        op = shapes.declared(view)
        if op is None:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            yield rule, method.lower(), view, op


Key = tuple[type, JsonSchemaMode]


def _schemas(
    operations: list[tuple[Rule, str, Any, Operation]],
) -> tuple[dict[Key, Any], dict[str, Any]]:
    """JSON Schemas of every declared body and answer (and the error), with their references."""
    wanted: dict[Key, None] = {(shapes.ErrorBody, "serialization"): None}
    for *_, op in operations:
        if op.body is not None:
            wanted[(op.body, "validation")] = None
        for kind in op.answers.values():
            wanted[(kind, "serialization")] = None
    inputs = [(key, key[1], shapes.adapter(key[0])) for key in wanted]
    refs, defs = TypeAdapter.json_schemas(inputs, ref_template=REF)
    return {key: ref for (key, _), ref in refs.items()}, dict(defs.get("$defs", {}))


def _operation(rule: Rule, view: Any, op: Operation, refs: dict[Key, Any]) -> dict[str, Any]:
    """One operation: its summary, parameters, body, answers and errors."""
    described: dict[str, Any] = {"summary": _summary(view)}
    if op.public:
        described["security"] = []
    parameters = _path_parameters(rule) + _query_parameters(op)
    if parameters:
        described["parameters"] = parameters
    if op.body is not None:
        described["requestBody"] = {"required": True, "content": _json(refs[op.body, "validation"])}
    answers = {
        str(status): {
            "description": model.__doc__ or "",
            "content": _json(refs[model, "serialization"]),
        }
        for status, model in op.answers.items()
    }
    error = refs[shapes.ErrorBody, "serialization"]
    errors = {
        str(status): {"description": ERROR_TEXTS[status], "content": _json(error)}
        for status in sorted(op.errors)
    }
    if op.text is not None:
        answers["200"] = {
            "description": op.text,
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    described["responses"] = answers | errors
    return described


def _summary(view: Any) -> str:
    """The view's docstring, on one line."""
    return " ".join((view.__doc__ or "").split())


def _json(schema: Any) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _path(rule: Rule) -> str:
    """Flask's `/assessments/<assessment_id>` as OpenAPI's `/assessments/{assessment_id}`."""
    return re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)


def _path_parameters(rule: Rule) -> list[dict[str, Any]]:
    """The rule's path variables, each with its declared shape."""
    return [
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": shapes.adapter(PATH_PARAMETERS[name]).json_schema(),
        }
        for name in rule.arguments
    ]


def _query_parameters(op: Operation) -> list[dict[str, Any]]:
    """The declared query's fields, each a parameter with its schema."""
    if op.query is None:
        return []
    schema = op.query.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    return [
        {"name": name, "in": "query", "required": name in required, "schema": field}
        for name, field in schema["properties"].items()
    ]
