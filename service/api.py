"""The JSON API for apps: authorize (single, batch), assessments, health, OpenAPI, metrics."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import Connection, text

from service import assessments, decisions, events, keys, policy_engine, store, transitions
from service.errors import InvalidRequest, ServiceError, Unauthorized, Unavailable
from service.keys import Key
from service.metrics import DECISIONS, exposition
from service.openapi import openapi_document
from service.policy_store import require_version
from service.throttle import FailureThrottle

bp = Blueprint("api", __name__)
P = ParamSpec("P")
R = TypeVar("R")

ACTOR_MAX = 200


def _retrying(view: Callable[P, R]) -> Callable[P, R]:
    """Run a read-only view once more when its store connection turned out to be dead (the
    database restarted): the pool is then renewed, and a read is safe to repeat."""

    @functools.wraps(view)
    def once_more(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return view(*args, **kwargs)
        except Unavailable as error:
            if not error.retryable:
                raise
            return view(*args, **kwargs)

    return once_more


def _body() -> dict[str, Any]:
    """The request's JSON object; InvalidRequest for anything else."""
    data = request.get_json(silent=True, force=True)
    if not isinstance(data, dict):
        raise InvalidRequest("the body must be a JSON object (Content-Type: application/json)")
    return data


def _authenticate(conn: Connection) -> Key:
    """The caller's key; failures are counted per address and too many get 429 for a while."""
    throttle: FailureThrottle = current_app.extensions["workflow_authz.throttle"]
    address = request.remote_addr or "unknown"
    throttle.check(address)
    try:
        return keys.authenticate(conn, request.headers.get("Authorization"))
    except Unauthorized:
        throttle.fail(address)
        raise


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}", field=unknown[0])


def _actor(body: dict[str, Any]) -> str:
    actor = body.get("actor")
    if (
        not isinstance(actor, str)
        or not actor.strip()
        or len(actor) > ACTOR_MAX
        or not actor.isprintable()
    ):
        raise InvalidRequest(
            f"actor must be a printable string of 1-{ACTOR_MAX} characters", field="actor"
        )
    return actor


@bp.post("/authorize")
@_retrying
def authorize() -> Response:
    """Decide one question; a deny is a 200 answer with allowed false."""
    body = _body()
    with store().read() as conn:
        key = _authenticate(conn)
        question = decisions.parse_question(body)
        key.require_tenant(question.tenant)
        decision = decisions.answer(conn, policy_engine(), question)
    DECISIONS.labels(str(decision.allowed).lower()).inc()
    answer = decisions.to_json(decision, question.assessment, key)
    response = jsonify(answer)
    response.headers["X-Decision-Id"] = answer["decision_id"]
    return response


@bp.post("/authorize/batch")
@_retrying
def authorize_batch() -> Response:
    """Decide up to 1000 questions in one read of the store; results keep the request order."""
    body = _body()
    with store().read() as conn:
        key = _authenticate(conn)
        _only(body, {"requests"})
        items = body.get("requests")
        if not isinstance(items, list):
            raise InvalidRequest("requests must be a list", field="requests")
        if len(items) > decisions.MAX_BATCH:
            raise InvalidRequest(
                f"at most {decisions.MAX_BATCH} requests per batch", field="requests"
            )
        results = decisions.answer_batch(conn, policy_engine(), key, items)
    for result in results:
        if "allowed" in result:
            DECISIONS.labels(str(result["allowed"]).lower()).inc()
    return jsonify({"results": results})


@bp.post("/assessments")
def create_assessment() -> tuple[Response, int]:
    """Register an assessment at its area's first phase."""
    body = _body()
    with store().write() as conn:
        key = _authenticate(conn)
        _only(body, {"tenant", "id", "area"})
        tenant = decisions.identifier(body, "tenant", default=decisions.DEFAULT_TENANT)
        key.require_tenant(tenant)
        assessment_id = assessments.check_id(body.get("id"))
        area = decisions.identifier(body, "area")
        state = transitions.start(conn, policy_engine(), tenant, assessment_id, area)
    return jsonify(state.to_json()), 201


@bp.get("/assessments/<assessment_id>")
@_retrying
def get_assessment(assessment_id: str) -> Response:
    """The assessment's state and its whole transition history."""
    with store().read() as conn:
        key = _authenticate(conn)
        _only(dict(request.args), {"tenant"})
        tenant = decisions.identifier(request.args, "tenant", default=decisions.DEFAULT_TENANT)
        key.require_tenant(tenant)
        assessments.check_id(assessment_id)
        state = assessments.get(conn, tenant, assessment_id)
        history = assessments.history(conn, tenant, assessment_id)
    return jsonify({**state.to_json(), "history": history})


@dataclass(frozen=True)
class MoveRequest:
    """Who moves an assessment, on whose behalf, why (reopen), and from which phase they think."""

    tenant: str
    role: str
    actor: str
    expected_phase: str | None
    reason: str | None = None


def _move_request(
    body: dict[str, Any], key: Key, action: str, extra: frozenset[str] = frozenset()
) -> MoveRequest:
    """Validate the body of an advance or reopen; a reopen also needs a reason."""
    reopen = action == "reopen"
    _only(
        body,
        {"tenant", "role", "actor", "expected_phase"} | extra | ({"reason"} if reopen else set()),
    )
    tenant = decisions.identifier(body, "tenant", default=decisions.DEFAULT_TENANT)
    key.require_tenant(tenant)
    role = decisions.identifier(body, "role")
    expected = decisions.identifier(body, "expected_phase") if "expected_phase" in body else None
    reason = body.get("reason") if reopen else None
    if reopen and not isinstance(reason, str):
        raise InvalidRequest("reopen needs a reason (a string)", field="reason")
    return MoveRequest(tenant, role, _actor(body), expected, reason)


def _move(conn: Connection, move: MoveRequest, assessment_id: str) -> dict[str, Any]:
    """Advance, or reopen when the request has a reason; the new state as JSON."""
    state = transitions.move(
        conn,
        policy_engine(),
        move.tenant,
        assessments.check_id(assessment_id),
        "advance" if move.reason is None else "reopen",
        move.role,
        move.actor,
        move.expected_phase,
        move.reason,
    )
    return state.to_json()


@bp.post("/assessments/<assessment_id>/<any(advance, reopen):action>")
def move_assessment(assessment_id: str, action: str) -> Response:
    """Advance to the next phase, or reopen back to the previous one (with a reason), if the
    role may; of concurrent moves of one assessment exactly one wins."""
    body = _body()
    with store().write() as conn:
        move = _move_request(body, _authenticate(conn), action)
        return jsonify(_move(conn, move, assessment_id))


@bp.post("/assessments/advance")
def advance_assessments() -> Response:
    """Advance up to 1000 assessments, each in its own transaction: one failure blocks no other."""
    body = _body()
    with store().read() as conn:
        advance = _move_request(body, _authenticate(conn), "advance", extra=frozenset({"ids"}))
    ids = body.get("ids")
    if not isinstance(ids, list) or not 0 < len(ids) <= decisions.MAX_BATCH:
        raise InvalidRequest(
            f"ids must be a list of 1-{decisions.MAX_BATCH} assessment ids", field="ids"
        )
    return jsonify({"results": [_advance_one(advance, item) for item in ids]})


def _advance_one(advance: MoveRequest, assessment_id: Any) -> dict[str, Any]:
    """One item of a bulk advance: the new state, or the error a single advance would give."""
    try:
        with store().write() as conn:
            return _move(conn, advance, assessment_id)
    except ServiceError as error:
        return {
            "id": assessment_id if isinstance(assessment_id, str) else None,
            "error": error.to_dict(),
        }


@bp.post("/permissions")
@_retrying
def permissions() -> Response:
    """Which actions the role may take on an assessment (or at a phase): the buttons to show."""
    body = _body()
    with store().read() as conn:
        key = _authenticate(conn)
        question = decisions.parse_listing(body)
        key.require_tenant(question.tenant)
        return jsonify(decisions.permitted(conn, policy_engine(), question))


@bp.get("/events")
@_retrying
def feed() -> Response:
    """What external systems may newly see, or no longer see, after a cursor (oldest first)."""
    with store().read() as conn:
        key = _authenticate(conn)
        _only(dict(request.args), {"tenant", "after", "limit"})
        tenant = decisions.identifier(request.args, "tenant", default=decisions.DEFAULT_TENANT)
        key.require_tenant(tenant)
        require_version(conn, tenant)
        limit = _limit(request.args.get("limit"))
        return jsonify(events.page(conn, tenant, request.args.get("after"), limit))


def _limit(raw: str | None) -> int:
    if raw is None:
        return 100
    if not raw.isdigit() or not 1 <= int(raw) <= events.MAX_PAGE:
        raise InvalidRequest(
            f"limit must be a whole number from 1 to {events.MAX_PAGE}", field="limit"
        )
    return int(raw)


@bp.get("/healthz")
@_retrying
def healthz() -> tuple[Response, int]:
    """Liveness plus a store check: 200 when the store answers and the schema is current."""
    db = store()
    try:
        with db.read() as conn:
            conn.execute(text("SELECT 1"))
        current = db.is_current()
    except Unavailable:
        raise Unavailable("the store cannot be reached") from None
    if not current:
        raise Unavailable("the schema is not at the newest migration: run `workflow-authz init`")
    return jsonify({"status": "ok", "store": db.url.get_backend_name()}), 200


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document())


@bp.get("/metrics")
def metrics() -> Response:
    data, content_type = exposition()
    return Response(data, content_type=content_type)
