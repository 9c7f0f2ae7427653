"""The JSON API for apps: authorize (single, batch), permissions, assessments, the feed, health,
OpenAPI and metrics. Thin views: each authenticates, validates its declared shapes (shapes.py),
calls the domain module that owns the question, and answers with a declared shape."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, ParamSpec, TypeVar

from flask import Blueprint, Response, after_this_request, request
from sqlalchemy import Connection, text
from werkzeug.exceptions import HTTPException

from service import assessments, decisions, events, keys, shapes, transitions
from service.db import store
from service.decision_log import Write
from service.decisions import Answer, Question
from service.errors import InvalidRequest, ServiceError, Unauthorized, Unavailable
from service.keys import Key
from service.metrics import count_decision, exposition
from service.openapi import served
from service.policies import policy_engine
from service.policies.store import require_version
from service.throttle import API_BY_ADDRESS, API_BY_PREFIX, client, throttle
from service.webhooks import leases
from service.workflows import ADVANCE, REOPEN

bp = Blueprint("api", __name__)
P = ParamSpec("P")
R = TypeVar("R")

ERRORS = (400, 401, 403, 404, 413, 429, 503)
"""What every keyed endpoint may answer besides its success."""


def retrying(view: Callable[P, R]) -> Callable[P, R]:
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


@contextmanager
def keyed(write: bool = False) -> Iterator[tuple[Connection, Key]]:
    """A read (or write) transaction and the caller's key, checked before anything else of the
    request is read: an unauthenticated body is never parsed."""
    db = store()
    with db.write() if write else db.read() as conn:
        yield conn, _authenticate(conn)


@contextmanager
def deciding() -> Iterator[tuple[decisions.Stored, Key]]:
    """A decision's read transaction, its facts and the caller's key, for the decision views.

    A key this process has not verified yet is read and checked first, as in `keyed`. A key it
    has (keys.KnownKeys) costs no statement of its own: the decision's first statement confirms
    that its row is still live (decisions.Stored), or one of its own does before any answer, an
    error answer included. So a revocation committed anywhere governs the very next request,
    and a request under a revoked key gets 401 whatever its body (which may then have been
    parsed: only a key once valid gets that far)."""
    header = request.headers.get("Authorization")
    pending = keys.known_keys().recall(header)
    if pending is None:
        with store().read() as conn:
            yield decisions.Stored(conn, policy_engine()), _authenticate(conn)
        return
    try:
        with ExitStack() as opened:
            facts = decisions.Stored(None, policy_engine(), pending, opened)
            try:
                yield facts, pending.key
            except (ServiceError, HTTPException) as error:
                refused = isinstance(error, Unauthorized)  # by LIVE already
                if isinstance(error, ServiceError) and (refused or error.status >= 500):
                    raise  # a store failure fails closed as it is
                pending.confirm(facts.reading)  # a revoked key's refusal is a 401, not a 400
                raise
            pending.confirm(facts.reading)
    except Unauthorized:
        _refused(header)
        raise


def _authenticate(conn: Connection) -> Key:
    """The caller's key, read and checked (and remembered, see `deciding`). A valid key always
    passes, whatever other requests did; a failure is counted (`_refused`)."""
    header = request.headers.get("Authorization")
    try:
        return keys.authenticate(conn, header, keys.known_keys())
    except Unauthorized:
        _refused(header)
        raise


def _refused(header: str | None) -> None:
    """Count a failed authentication per address and per key prefix; once either is over its
    limit, answer 429 instead."""
    counted = [(API_BY_ADDRESS, client(request.remote_addr))]
    prefix = keys.named_prefix(header)
    counted += [(API_BY_PREFIX, prefix)] if prefix else []
    for budget, identifier in counted:
        throttle().check(budget, identifier)
    for budget, identifier in counted:
        throttle().fail(budget, identifier)


def stored_facts(conn: Connection) -> decisions.Stored:
    """What a decision reads, on the request's connection."""
    return decisions.Stored(conn, policy_engine())


def _question(place: shapes.Place, action: str) -> Question:
    """A validated body as the question decisions.py answers."""
    place = place.checked()
    return Question(place.tenant, place.role, action, place.assessment, place.area, place.phase)


def counted(answers: list[Answer | ServiceError]) -> list[Answer | ServiceError]:
    """The answers, each decision counted in the metrics."""
    for answer in answers:
        if isinstance(answer, Answer):
            count_decision(answer.decision.allowed)
    return answers


def _decision(answer: Answer) -> dict[str, Any]:
    """The fields of a decision's answer shape."""
    d = answer.decision
    return dict(
        decision_id=answer.decision_id,
        allowed=d.allowed,
        tenant=d.tenant,
        role=d.role,
        action=d.action,
        area=d.area,
        phase=d.phase,
        assessment=answer.assessment,
        policy_version=d.policy_version,
        rule=list(d.rule) if d.rule else None,
        reason=d.reason,
    )


def _error(error: ServiceError) -> shapes.ErrorObject:
    """The error object a batch item or a bulk id carries."""
    return shapes.ErrorObject(code=error.code, message=error.message, field=error.field)


@bp.post("/authorize")
@shapes.operation({200: shapes.Decision}, ERRORS, body=shapes.QuestionBody)
@retrying
def authorize() -> Response:
    """May a role perform an action on an assessment, or at a phase? A deny is a 200 answer
    with allowed false."""
    with deciding() as (facts, key):
        body: shapes.QuestionBody = shapes.body()
        answer = decisions.decide_one(facts, key, _question(body, body.action))
    counted([answer])
    response = shapes.respond(shapes.Decision(**_decision(answer)))
    response.headers["X-Decision-Id"] = answer.decision_id
    return response


@bp.post("/authorize/batch")
@shapes.operation({200: shapes.BatchResults}, ERRORS, body=shapes.BatchBody)
@retrying
def authorize_batch() -> Response:
    """Decide up to 1000 questions in one read of the store; results keep the request order."""
    with deciding() as (facts, key):
        items = shapes.body().requests
        asked = [_batch_item(i, item) for i, item in enumerate(items)]
        answers = counted(decisions.decide_all(facts, key, [q for _, q in asked]))
    rows = [
        shapes.batch_error(item_id, a.code, a.message, a.field)
        if isinstance(a, ServiceError)
        else {**_decision(a), "id": item_id}
        for (item_id, _), a in zip(asked, answers, strict=True)
    ]
    return shapes.respond_batch(rows)


def _batch_item(index: int, item: Any) -> tuple[str, decisions.Asked]:
    """One batch item's id and question, or the error that refuses it."""
    if not isinstance(item, dict):
        return str(index), InvalidRequest(f"requests[{index}] must be an object", field="requests")
    try:
        parsed = shapes.validate(shapes.BatchItem, item)
    except ServiceError as error:
        item_id = item.get("id")
        return (item_id if isinstance(item_id, str) and error.field != "id" else str(index)), error
    try:
        return parsed.id, _question(parsed, parsed.action)
    except ServiceError as error:
        return parsed.id, error


@bp.post("/permissions")
@shapes.operation({200: shapes.Permissions}, ERRORS, body=shapes.Place)
@retrying
def permissions() -> Response:
    """Every action a role may take on an assessment or at a phase: the buttons to show."""
    with deciding() as (facts, key):
        place: shapes.Place = shapes.body()
        question = _question(place, "")
        where, actions = decisions.permitted(facts, key, question)
    return shapes.respond(
        shapes.Permissions(
            tenant=question.tenant,
            role=question.role,
            area=where.area,
            phase=where.phase,
            assessment=question.assessment,
            actions=actions,
            policy_version=where.policy_version,
        )
    )


@bp.post("/assessments")
@shapes.operation({201: shapes.Written}, (*ERRORS, 409), body=shapes.CreateBody)
def create_assessment() -> Response:
    """Register an assessment at its area's first phase."""
    log = _answered_with(Write("create"))
    with log.logged(), keyed(write=True) as (conn, key):
        new: shapes.CreateBody = shapes.body()
        key.require_tenant(new.tenant)
        log.begin(key, new.tenant, new.id, actor=new.actor)
        state = transitions.start(
            conn, policy_engine(), new.tenant, new.id, new.area, key=key, actor=new.actor, log=log
        )
    return shapes.respond(_written(state, log), 201)


@bp.get("/assessments/<assessment_id>")
@shapes.operation({200: assessments.StateWithHistory}, ERRORS, query=shapes.TenantQuery)
@retrying
def get_assessment(assessment_id: str) -> Response:
    """An assessment's state, who registered it, and its whole transition history."""
    with keyed() as (conn, key):
        tenant = shapes.query().tenant
        key.require_tenant(tenant)
        assessments.check_id(assessment_id)
        found = assessments.get_with_history(conn, tenant, assessment_id)
    return shapes.respond(found)


@bp.post("/assessments/<assessment_id>/advance")
@shapes.operation({200: shapes.Written}, (*ERRORS, 409), body=shapes.MoveBody)
def advance_assessment(assessment_id: str) -> Response:
    """Advance to the next phase (the responsible role only); of concurrent moves of one
    assessment exactly one wins."""
    log = _answered_with(Write("transition"))
    with log.logged(), keyed(write=True) as (conn, key):
        move: shapes.MoveBody = shapes.body()
        state = _move(conn, key, move, assessment_id, ADVANCE, log=log)
    return shapes.respond(_written(state, log))


@bp.post("/assessments/<assessment_id>/reopen")
@shapes.operation({200: shapes.Written}, (*ERRORS, 409), body=shapes.ReopenBody)
def reopen_assessment(assessment_id: str) -> Response:
    """Move back one phase (action reopen); the reason is kept in the history."""
    log = _answered_with(Write("transition"))
    with log.logged(), keyed(write=True) as (conn, key):
        move: shapes.ReopenBody = shapes.body()
        state = _move(conn, key, move, assessment_id, REOPEN, move.reason, log=log)
    return shapes.respond(_written(state, log))


@bp.post("/assessments/advance")
@shapes.operation({200: shapes.BulkResults}, ERRORS, body=shapes.BulkAdvanceBody)
def advance_assessments() -> Response:
    """Advance up to 1000 assessments, each in its own transaction: one failure blocks no other."""
    with keyed() as (conn, key):
        bulk: shapes.BulkAdvanceBody = shapes.body()
        key.require_tenant(bulk.tenant)
    return shapes.respond(shapes.BulkResults([_advance_one(key, bulk, i) for i in bulk.ids]))


def _advance_one(key: Key, bulk: shapes.BulkAdvanceBody, assessment_id: Any) -> Any:
    """One item of a bulk advance: the new state, or the error a single advance would give;
    each with its own decision id once it was tried."""
    log = Write("transition")
    try:
        with log.logged(), store().write() as conn:
            state = _move(conn, key, bulk, assessment_id, ADVANCE, log=log)
    except ServiceError as error:
        item_id = assessment_id if isinstance(assessment_id, str) else None
        return shapes.BulkError(item_id, _error(error), log.decision_id if log.begun else None)
    return _written(state, log)


def _move(
    conn: Connection,
    key: Key,
    move: shapes.MoveBody,
    assessment_id: Any,
    action: str,
    reason: str | None = None,
    *,
    log: Write,
) -> assessments.State:
    """Advance or reopen one assessment for a validated body; its line in the decision log is
    begun once the key may act for the tenant and the id is one."""
    key.require_tenant(move.tenant)
    assessment = assessments.check_id(assessment_id)
    log.begin(key, move.tenant, assessment, actor=move.actor, role=move.role, action=action)
    return transitions.move(
        conn,
        policy_engine(),
        move.tenant,
        assessment,
        action,
        move.role,
        move.actor,
        move.expected_phase,
        reason,
        key=key,
        log=log,
    )


def _answered_with(log: Write) -> Write:
    """A write whose decision id the answer carries in X-Decision-Id, success or error, once
    the write was begun."""

    @after_this_request
    def header(response: Response) -> Response:
        if log.begun:
            response.headers["X-Decision-Id"] = log.decision_id
        return response

    return log


def _written(state: assessments.State, log: Write) -> shapes.Written:
    """The answer to a write: the new state and the write's decision id."""
    return shapes.Written(**vars(state), decision_id=log.decision_id)


@bp.get("/events")
@shapes.operation({200: shapes.EventsPage}, ERRORS, query=shapes.FeedQuery)
@retrying
def feed() -> Response:
    """The external-systems feed: assessments newly visible, or no longer visible, to external
    systems, after a cursor, oldest first."""
    with keyed() as (conn, key):
        asked: shapes.FeedQuery = shapes.query()
        key.require_tenant(asked.tenant)
        require_version(conn, asked.tenant)
        found, cursor = events.page(conn, asked.tenant, asked.after, asked.limit)
    return shapes.respond(shapes.EventsPage(found, cursor))


@bp.get("/healthz")
@shapes.operation({200: shapes.Health}, (503,), public=True)
@retrying
def healthz() -> Response:
    """Liveness and store check: 200 when the store answers and the schema is current."""
    db = store()
    try:
        with db.read() as conn:
            conn.execute(text("SELECT 1"))
        current = db.is_current()
    except Unavailable:
        raise Unavailable("the store cannot be reached") from None
    if not current:
        raise Unavailable("the schema is not at the newest migration: run `workflow-authz init`")
    return shapes.respond(shapes.Health(status="ok", store=db.url.get_backend_name()))


@bp.get("/openapi.json")
@shapes.operation({200: shapes.OpenApiDocument}, public=True)
def openapi() -> Response:
    """This document."""
    return Response(served(), mimetype="application/json")


@bp.get("/metrics")
@shapes.operation({}, public=True, text="Prometheus text format.")
def metrics() -> Response:
    """Prometheus metrics; the webhook backlog as the store says now (left out when the store
    cannot be read: the other metrics still answer)."""
    try:
        with store().read() as conn:
            backlog = leases.backlog(conn)
    except Unavailable:
        backlog = None
    data, content_type = exposition(backlog)
    return Response(data, content_type=content_type)
