"""The OpenAPI 3.1 description of the HTTP API, served at /openapi.json."""

from __future__ import annotations

from typing import Any

IDENT = {"type": "string", "pattern": "^[a-z][a-z0-9_]*$", "maxLength": 64}
ASSESSMENT_ID = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"}
TIMESTAMP = {"type": "string", "format": "date-time"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    texts = {
        400: "Malformed request; `field` names the field at fault.",
        401: "Missing or invalid API key.",
        403: "The key is not valid for that tenant (code forbidden), or the policy does not let "
        "the role do this (code not_allowed).",
        404: "Unknown tenant or assessment.",
        409: "Conflict with the current state.",
        413: "Request body too large.",
        429: "Too many failed authentications from this address; see Retry-After.",
        503: "The store cannot be read: nothing is allowed.",
    }
    return {str(s): _json(_ref("Error"), texts[s]) for s in statuses}


def _schemas() -> dict[str, Any]:
    question = {
        "tenant": {**IDENT, "description": "Defaults to `default`."},
        "role": IDENT,
        "action": IDENT,
        "assessment": ASSESSMENT_ID,
        "area": IDENT,
        "phase": IDENT,
    }
    state = {
        "tenant": IDENT,
        "id": ASSESSMENT_ID,
        "area": IDENT,
        "phase": IDENT,
        "version": {"type": "integer", "minimum": 1},
        "created_at": TIMESTAMP,
        "updated_at": TIMESTAMP,
    }
    return {
        "ErrorObject": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "field": {"type": "string"},
            },
        },
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {"error": _ref("ErrorObject")},
        },
        "Question": {
            "type": "object",
            "description": "Either `assessment`, or `area` and `phase`.",
            "required": ["role", "action"],
            "additionalProperties": False,
            "properties": question,
        },
        "BatchQuestion": {
            "type": "object",
            "required": ["id", "role", "action"],
            "additionalProperties": False,
            "properties": {"id": {"type": "string", "minLength": 1, "maxLength": 128}, **question},
        },
        "Decision": {
            "type": "object",
            "required": [
                "decision_id",
                "allowed",
                "tenant",
                "role",
                "action",
                "area",
                "phase",
                "policy_version",
                "rule",
                "reason",
            ],
            "properties": {
                "decision_id": {
                    "type": "string",
                    "description": "Also in the X-Decision-Id header and the decision log.",
                },
                "allowed": {"type": "boolean"},
                "tenant": IDENT,
                "role": IDENT,
                "action": IDENT,
                "area": IDENT,
                "phase": IDENT,
                "assessment": {"type": ["string", "null"]},
                "policy_version": {"type": "integer"},
                "rule": {
                    "type": ["array", "null"],
                    "items": {"type": "string"},
                    "description": "The row that allowed it: tenant, role, area, phase, action.",
                },
                "reason": {"type": "string"},
            },
        },
        "BatchResult": {
            "type": "object",
            "required": ["id"],
            "description": "A Decision plus `id`, or `id` and `error` for an invalid item.",
            "properties": {"id": {"type": "string"}, "error": _ref("ErrorObject")},
        },
        "State": {"type": "object", "required": list(state), "properties": state},
        "StateWithHistory": {
            "allOf": [
                _ref("State"),
                {
                    "type": "object",
                    "required": ["history"],
                    "properties": {
                        "history": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["from_phase", "to_phase", "role", "actor", "at"],
                                "properties": {
                                    "from_phase": IDENT,
                                    "to_phase": IDENT,
                                    "role": IDENT,
                                    "actor": {"type": "string"},
                                    "at": TIMESTAMP,
                                    "policy_version": {"type": "integer"},
                                    "action": {"enum": ["advance", "reopen"]},
                                    "reason": {"type": ["string", "null"]},
                                },
                            },
                        }
                    },
                },
            ]
        },
    }


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _move_operation(
    summary: str, id_path: dict[str, Any], reason: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An advance or a reopen (which also requires a reason) of one assessment."""
    properties: dict[str, Any] = {
        "tenant": IDENT,
        "role": IDENT,
        "actor": {"type": "string", "minLength": 1, "maxLength": 200},
        "expected_phase": IDENT,
    }
    if reason is not None:
        properties["reason"] = reason
    body = {
        "type": "object",
        "required": ["role", "actor"] + (["reason"] if reason is not None else []),
        "additionalProperties": False,
        "properties": properties,
    }
    return {
        "post": {
            "summary": summary,
            "parameters": [id_path],
            "requestBody": _body(body),
            "responses": {
                "200": _json(_ref("State"), "The new state."),
                **_errors(400, 401, 403, 404, 409, 413, 503, 429),
            },
        }
    }


def _paths() -> dict[str, Any]:
    tenant_query = {"name": "tenant", "in": "query", "required": False, "schema": IDENT}
    id_path = {"name": "assessment_id", "in": "path", "required": True, "schema": ASSESSMENT_ID}
    return {
        "/authorize": {
            "post": {
                "summary": "May a role perform an action on an assessment, or at a phase?",
                "requestBody": _body(_ref("Question")),
                "responses": {
                    "200": _json(_ref("Decision"), "The answer; a deny is allowed: false."),
                    **_errors(400, 401, 403, 404, 413, 503, 429),
                },
            }
        },
        "/authorize/batch": {
            "post": {
                "summary": "Decide up to 1000 questions; results in request order.",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["requests"],
                        "additionalProperties": False,
                        "properties": {
                            "requests": {
                                "type": "array",
                                "maxItems": 1000,
                                "items": _ref("BatchQuestion"),
                            }
                        },
                    }
                ),
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["results"],
                            "properties": {
                                "results": {"type": "array", "items": _ref("BatchResult")}
                            },
                        },
                        "One result per item.",
                    ),
                    **_errors(400, 401, 413, 503, 429),
                },
            }
        },
        "/assessments": {
            "post": {
                "summary": "Register an assessment at its area's first phase.",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["id", "area"],
                        "additionalProperties": False,
                        "properties": {"tenant": IDENT, "id": ASSESSMENT_ID, "area": IDENT},
                    }
                ),
                "responses": {
                    "201": _json(_ref("State"), "Created."),
                    **_errors(400, 401, 403, 404, 409, 413, 503, 429),
                },
            }
        },
        "/assessments/{assessment_id}": {
            "get": {
                "summary": "An assessment's state and transition history.",
                "parameters": [id_path, tenant_query],
                "responses": {
                    "200": _json(_ref("StateWithHistory"), "The state."),
                    **_errors(400, 401, 403, 404, 503, 429),
                },
            }
        },
        "/assessments/{assessment_id}/advance": _move_operation(
            "Advance to the next phase (responsible role only; compare-and-set).", id_path
        ),
        "/assessments/{assessment_id}/reopen": _move_operation(
            "Move back one phase (action reopen); the reason is kept in history.",
            id_path,
            reason={"type": "string", "minLength": 1, "maxLength": 500},
        ),
        "/events": {
            "get": {
                "summary": "The external-systems feed: assessments newly visible, or no longer "
                "visible, to external systems, after a cursor, oldest first.",
                "parameters": [
                    tenant_query,
                    {
                        "name": "after",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "maxLength": 200},
                        "description": "The cursor of the previous page; omit to start.",
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000},
                    },
                ],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["events", "cursor"],
                            "properties": {
                                "cursor": {"type": "string"},
                                "events": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "required": [
                                            "assessment",
                                            "area",
                                            "phase",
                                            "visible",
                                            "cause",
                                            "policy_version",
                                            "at",
                                        ],
                                        "properties": {
                                            "assessment": ASSESSMENT_ID,
                                            "area": IDENT,
                                            "phase": IDENT,
                                            "visible": {"type": "boolean"},
                                            "cause": {"enum": ["created", "transition", "policy"]},
                                            "policy_version": {"type": "integer"},
                                            "at": TIMESTAMP,
                                        },
                                    },
                                },
                            },
                        },
                        "A page of events and the cursor to ask with next.",
                    ),
                    **_errors(400, 401, 403, 404, 503, 429),
                },
            }
        },
        "/assessments/advance": {
            "post": {
                "summary": "Advance many assessments; each succeeds or fails on its own.",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["role", "actor", "ids"],
                        "additionalProperties": False,
                        "properties": {
                            "tenant": IDENT,
                            "role": IDENT,
                            "actor": {"type": "string", "minLength": 1, "maxLength": 200},
                            "expected_phase": IDENT,
                            "ids": {
                                "type": "array",
                                "minItems": 1,
                                "maxItems": 1000,
                                "items": ASSESSMENT_ID,
                            },
                        },
                    }
                ),
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["results"],
                            "properties": {
                                "results": {
                                    "type": "array",
                                    "description": "Per id, in order: the new State, or "
                                    "`id` and `error` as a single advance would give.",
                                    "items": {"type": "object", "required": ["id"]},
                                }
                            },
                        },
                        "One result per id.",
                    ),
                    **_errors(400, 401, 403, 413, 503, 429),
                },
            }
        },
        "/permissions": {
            "post": {
                "summary": "Every action a role may take on an assessment or at a phase.",
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["role"],
                        "additionalProperties": False,
                        "description": "Either `assessment`, or `area` and `phase`.",
                        "properties": {
                            "tenant": IDENT,
                            "role": IDENT,
                            "assessment": ASSESSMENT_ID,
                            "area": IDENT,
                            "phase": IDENT,
                        },
                    }
                ),
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["actions", "phase", "policy_version"],
                            "properties": {
                                "tenant": IDENT,
                                "role": IDENT,
                                "area": IDENT,
                                "phase": IDENT,
                                "assessment": {"type": ["string", "null"]},
                                "actions": {"type": "array", "items": IDENT},
                                "policy_version": {"type": "integer"},
                            },
                        },
                        "The permitted actions, in the workflow definition's order.",
                    ),
                    **_errors(400, 401, 403, 404, 413, 503, 429),
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness and store check.",
                "security": [],
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {
                                "status": {"type": "string"},
                                "store": {"type": "string"},
                            },
                        },
                        "Healthy.",
                    ),
                    **_errors(503),
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document.",
                "security": [],
                "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1.")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "Prometheus text format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    }


def openapi_document() -> dict[str, Any]:
    """The whole description: every endpoint, its bodies, answers and errors."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "workflow-authz",
            "version": "1",
            "description": "Who may view, edit and advance assessments at each workflow phase.",
        },
        "security": [{"bearer": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key from `workflow-authz keys create`.",
                }
            },
            "schemas": _schemas(),
        },
    }
