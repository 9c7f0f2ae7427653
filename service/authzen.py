"""The OpenID AuthZEN Authorization API 1.0, beside the native API and over the same decisions,
keys and tenants: evaluation, evaluations (boxcars and their three semantics), subject, resource
and action search, and the PDP metadata at /.well-known/authzen-configuration.

`/access/v1/...` is tenant default, `/tenants/<tenant>/access/v1/...` that tenant. The mapping
is fixed (other systems rely on it): the role is `subject.properties.role`, else the `id` of a
subject of type "role"; the action is the action's `name`; the resource is an assessment (decided
at its current phase) or a phase `<area>/<phase>`. Every decision goes through
decisions.decide_all, so keys, tenants, the decision log and the metrics behave exactly as on the
native API. A question the definition cannot answer (an unknown role, action, area, phase or
assessment) is a deny whose context carries the error; a body of the wrong structure is a 400 in
the native error shape; unknown fields are ignored, as the standard requires.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from flask import Blueprint, Response, current_app, request
from sqlalchemy import Connection

from service import assessments, decisions, pages, shapes
from service.api import ERRORS, counted, keyed, retrying, stored_facts
from service.db import store
from service.decisions import Answer, Asked, Question
from service.errors import InvalidRequest, NotFound, ServiceError
from service.keys import Key
from service.policies import Decision, policy_engine
from service.policies.store import DEFAULT_TENANT, require_version
from service.workflows import IDENTIFIER_RULE, Workflow, is_identifier

bp = Blueprint("authzen", __name__)
ACCESS = "/access/v1"
TENANT = "/tenants/<tenant>"
ASSESSMENT, PHASE, ROLE = "assessment", "phase", "role"
"""The resource types and the subject type the mapping knows."""
ENTITIES = ("subject", "action", "resource", "context")
"""The parts of an evaluation a boxcar's top level gives defaults for."""
ENDPOINTS = {
    "access_evaluation_endpoint": "/evaluation",
    "access_evaluations_endpoint": "/evaluations",
    "search_subject_endpoint": "/search/subject",
    "search_resource_endpoint": "/search/resource",
    "search_action_endpoint": "/search/action",
}
"""The PDP metadata's endpoints, under the tenant's `/access/v1`."""


# -- the mapping: the standard's entities as the native question (pure) ----------------------


def role_of(subject: shapes.AuthzenSubject) -> str:
    """The role a subject acts in: `properties.role`, else the id of a subject of type "role";
    InvalidRequest when it names none."""
    properties = subject.properties or {}
    if "role" in properties:
        role = properties["role"]
        if not isinstance(role, str):
            raise InvalidRequest(
                "subject.properties.role must be a string", field="subject.properties.role"
            )
        return role
    if subject.type == ROLE:
        return subject.id
    raise InvalidRequest(
        'the subject names no role: give subject.properties.role, or a subject of type "role"',
        field="subject",
    )


def place_of(resource: shapes.AuthzenResource) -> dict[str, str] | InvalidRequest:
    """Where a resource is, as the native question's fields (`assessment`, or `area` and
    `phase`); the error, to answer as a deny, when the mapping knows no such resource."""
    if resource.type == ASSESSMENT:
        return {"assessment": resource.id}
    if resource.type == PHASE:
        area, slash, phase = resource.id.partition("/")
        if slash and area and phase:
            return {"area": area, "phase": phase}
        return InvalidRequest(
            f"a phase's id is <area>/<phase>, not {resource.id!r}", field="resource.id"
        )
    return InvalidRequest(
        f"unknown resource type {resource.type!r}: {ASSESSMENT} or {PHASE}", field="resource.type"
    )


def question(tenant: str, evaluation: shapes.EvaluationBody) -> Asked:
    """The native question an evaluation asks, or the error to answer it with (a deny); raises
    InvalidRequest when its subject names no role."""
    role = role_of(evaluation.subject)
    where = place_of(evaluation.resource)
    if isinstance(where, ServiceError):
        return where
    return Question(tenant, role, evaluation.action.name, **where)


def decision(answer: Answer | ServiceError, stopped: bool = False) -> shapes.AccessDecision:
    """An answer as the standard's decision; `stopped` marks the deny that ended a
    deny_on_first_deny boxcar, as the standard's example does (code "200": it was decided)."""
    reason = DENY_ON_FIRST_DENY if stopped else None
    if isinstance(answer, ServiceError):
        code = str(answer.status) if stopped else None
        error = shapes.AccessError(answer.status, answer.message)
        return shapes.AccessDecision(False, shapes.ErrorContext(error, code, reason))
    d = answer.decision
    code = "200" if stopped else None
    context = shapes.DecisionContext(
        decision_id=answer.decision_id,
        policy_version=d.policy_version,
        area=d.area,
        phase=d.phase,
        reason_admin={"en": d.reason},
        rule=list(d.rule) if d.rule else None,
        code=code,
        reason=reason,
    )
    return shapes.AccessDecision(d.allowed, context)


def allowed(answer: Answer | ServiceError) -> bool:
    """True for a decision that allows; an error is a deny."""
    return isinstance(answer, Answer) and answer.decision.allowed


def denied(answer: Answer | ServiceError) -> bool:
    return not allowed(answer)


EXECUTE_ALL, DENY_ON_FIRST_DENY, PERMIT_ON_FIRST_PERMIT = (
    "execute_all",
    "deny_on_first_deny",
    "permit_on_first_permit",
)
STOPS: dict[str, Callable[[Answer | ServiceError], bool] | None] = {
    EXECUTE_ALL: None,
    DENY_ON_FIRST_DENY: denied,
    PERMIT_ON_FIRST_PERMIT: allowed,
}
"""After which answer each semantic stops a boxcar (None: it answers every item)."""


def item(tenant: str, defaults: dict[str, Any], raw: Any) -> Asked:
    """One boxcar item as a question: its own entities replace the defaults whole (an entity it
    leaves out or sends as null is the default's); a malformed item is its own error."""
    if not isinstance(raw, dict):
        return InvalidRequest("an evaluation must be an object", field="evaluations")
    merged = defaults | {name: raw[name] for name in ENTITIES if raw.get(name) is not None}
    try:
        return question(tenant, shapes.validate(shapes.EvaluationBody, merged))
    except InvalidRequest as error:
        return error


def defaults_of(body: shapes.EvaluationItem) -> dict[str, Any]:
    """The entities the top level of a boxcar gives (its defaults)."""
    return {name: getattr(body, name) for name in ENTITIES if getattr(body, name) is not None}


def page_of(kind: str, tenant: str, body: Any) -> pages.Page:
    """The page a search body asks for, its token bound to the search (its kind, tenant and
    entities; the entity searched for has no id to bind)."""
    asked: shapes.PageRequest = body.page or shapes.PageRequest()
    parameters = body.model_dump(mode="json", exclude={"page"}, exclude_none=True)
    return pages.start([kind, tenant, parameters], asked.token, asked.limit)


# -- the views ---------------------------------------------------------------------------------


def _tenant(key: Key, tenant: str) -> None:
    """A tenant named by the path: an identifier the key may act for (400, 403)."""
    if not is_identifier(tenant):
        raise InvalidRequest(f"tenant must be an identifier: {IDENTIFIER_RULE}", field="tenant")
    key.require_tenant(tenant)


def _decide(
    conn: Connection,
    key: Key,
    asked: Sequence[Asked],
    until: Callable[[Answer | ServiceError], bool] | None = None,
) -> list[Answer | ServiceError]:
    """The answers, counted; an unknown tenant (the path's, so the whole request's) is raised."""
    answers = counted(decisions.decide_all(stored_facts(conn), key, asked, until=until))
    for answer in answers:
        if isinstance(answer, ServiceError) and answer.field == "tenant":
            raise answer
    return answers


def _respond(answer: object) -> Response:
    """An AuthZEN answer: no null fields (the standard omits a property rather than send null)."""
    return shapes.respond(answer, omit_null=True)


@bp.post(f"{ACCESS}/evaluation")
@bp.post(f"{TENANT}{ACCESS}/evaluation")
@shapes.operation({200: shapes.AccessDecision}, ERRORS, body=shapes.EvaluationBody)
@retrying
def evaluation(tenant: str = DEFAULT_TENANT) -> Response:
    """AuthZEN Access Evaluation: may the subject take the action on the resource? A deny, or a
    question the definition cannot answer, is a 200 with decision false."""
    with keyed() as (conn, key):
        _tenant(key, tenant)
        (answer,) = _decide(conn, key, [question(tenant, shapes.body())])
    response = _respond(decision(answer))
    if isinstance(answer, Answer):
        response.headers["X-Decision-Id"] = answer.decision_id
    return response


@bp.post(f"{ACCESS}/evaluations")
@bp.post(f"{TENANT}{ACCESS}/evaluations")
@shapes.operation({200: shapes.AccessEvaluations}, ERRORS, body=shapes.EvaluationsBody)
@retrying
def evaluations(tenant: str = DEFAULT_TENANT) -> Response:
    """AuthZEN Access Evaluations: up to 1000 evaluations in one read of the store, answered in
    request order; each item's own error is its own deny. With no items, one evaluation."""
    with keyed() as (conn, key):
        _tenant(key, tenant)
        body: shapes.EvaluationsBody = shapes.body()
        defaults = defaults_of(body)
        if not body.evaluations:
            single = shapes.validate(shapes.EvaluationBody, defaults)
            (answer,) = _decide(conn, key, [question(tenant, single)])
            one = decision(answer)
            return _respond(shapes.AccessEvaluations(decision=one.decision, context=one.context))
        semantic = body.options.evaluations_semantic if body.options else EXECUTE_ALL
        asked = [item(tenant, defaults, raw) for raw in body.evaluations]
        answers = _decide(conn, key, asked, until=STOPS[semantic])
    stopped = semantic == DENY_ON_FIRST_DENY and denied(answers[-1])
    found = [decision(a, stopped and i == len(answers) - 1) for i, a in enumerate(answers)]
    return _respond(shapes.AccessEvaluations(evaluations=found))


def _permitted(conn: Connection, key: Key, asked: Sequence[Asked]) -> list[Decision]:
    """The decisions that allow, of the questions a search asks through the one decision path
    (recorded and counted like any other); an unknown role, action or place allows nothing."""
    answers = _decide(conn, key, asked)
    return [a.decision for a in answers if isinstance(a, Answer) and a.decision.allowed]


def _workflow() -> Workflow:
    return policy_engine().workflow


def _places(
    conn: Connection, key: Key, tenant: str, role: str, action: str, area: str | None
) -> list[tuple[str, str]]:
    """The (area, phase) places, of `area` if given, at which the role may take the action, in
    the definition's order: one question per phase, through the one decision path."""
    asked = [
        Question(tenant, role, action, area=a.id, phase=p.id)
        for a in _workflow().areas
        if area in (None, a.id)
        for p in a.phases
    ]
    return [(d.area, d.phase) for d in _permitted(conn, key, asked)]


@bp.post(f"{ACCESS}/search/resource")
@bp.post(f"{TENANT}{ACCESS}/search/resource")
@shapes.operation({200: shapes.FoundEntities}, ERRORS, body=shapes.ResourceSearchBody)
@retrying
def search_resource(tenant: str = DEFAULT_TENANT) -> Response:
    """AuthZEN Resource Search: the tenant's assessments on which the role may take the action
    at their current phase, in id order (`resource.properties.area` narrows them to one area);
    or, for type phase, the phases where it may. Paged, never cut silently."""
    with keyed() as (conn, key):
        _tenant(key, tenant)
        body: shapes.ResourceSearchBody = shapes.body()
        page, role = page_of("resource", tenant, body), role_of(body.subject)
        kind, area = body.resource.type, _area(body.resource)
        require_version(conn, tenant)
        places: list[tuple[str, str]] = []
        if kind in (ASSESSMENT, PHASE):
            places = _places(conn, key, tenant, role, body.action.name, area)
        if kind == ASSESSMENT:
            found = assessments.ids_at(conn, tenant, places, page.after, page.limit + 1)
        else:
            every = [f"{a.id}/{p.id}" for a in _workflow().areas for p in a.phases]
            phases = [f"{a}/{p}" for a, p in places]
            found = list(pages.following(page, phases, every)[: page.limit + 1])
    ids, answer = page.answer(found)
    return _respond(shapes.FoundEntities(answer, [shapes.FoundEntity(kind, i) for i in ids]))


def _area(resource: shapes.SoughtEntity) -> str | None:
    """The area `resource.properties.area` narrows a resource search to, if any."""
    area = (resource.properties or {}).get("area")
    if area is not None and not isinstance(area, str):
        raise InvalidRequest(
            "resource.properties.area must be a string", field="resource.properties.area"
        )
    return area


@bp.post(f"{ACCESS}/search/subject")
@bp.post(f"{TENANT}{ACCESS}/search/subject")
@shapes.operation({200: shapes.FoundEntities}, ERRORS, body=shapes.SubjectSearchBody)
@retrying
def search_subject(tenant: str = DEFAULT_TENANT) -> Response:
    """AuthZEN Subject Search: the roles ({"type": "role", "id"}) that may take the action on
    the resource, in the definition's order."""
    with keyed() as (conn, key):
        _tenant(key, tenant)
        body: shapes.SubjectSearchBody = shapes.body()
        page = page_of("subject", tenant, body)
        require_version(conn, tenant)
        roles = [r.id for r in _workflow().roles]
        where, found = place_of(body.resource), []
        if body.subject.type == ROLE and not isinstance(where, ServiceError):
            asked = [Question(tenant, r, body.action.name, **where) for r in roles]
            found = [d.role for d in _permitted(conn, key, asked)]
        found = list(pages.following(page, found, roles)[: page.limit + 1])
    ids, answer = page.answer(found)
    return _respond(shapes.FoundEntities(answer, [shapes.FoundEntity(ROLE, i) for i in ids]))


@bp.post(f"{ACCESS}/search/action")
@bp.post(f"{TENANT}{ACCESS}/search/action")
@shapes.operation({200: shapes.FoundActions}, ERRORS, body=shapes.ActionSearchBody)
@retrying
def search_action(tenant: str = DEFAULT_TENANT) -> Response:
    """AuthZEN Action Search: the actions the role may take on the resource, in the definition's
    order (the native /permissions answer)."""
    with keyed() as (conn, key):
        _tenant(key, tenant)
        body: shapes.ActionSearchBody = shapes.body()
        page, role = page_of("action", tenant, body), role_of(body.subject)
        require_version(conn, tenant)
        actions = list(_workflow().actions)
        where, found = place_of(body.resource), []
        if not isinstance(where, ServiceError):
            asked = [Question(tenant, role, action, **where) for action in actions]
            found = [d.action for d in _permitted(conn, key, asked)]
        found = list(pages.following(page, found, actions)[: page.limit + 1])
    ids, answer = page.answer(found)
    return _respond(shapes.FoundActions(answer, [shapes.FoundAction(i) for i in ids]))


@bp.get("/.well-known/authzen-configuration")
@bp.get("/.well-known/authzen-configuration/tenants/<tenant>")
@shapes.operation({200: shapes.PdpMetadata}, (404, 503), public=True)
@retrying
def configuration(tenant: str = DEFAULT_TENANT) -> Response:
    """AuthZEN PDP metadata: where the tenant's endpoints are (no key needed); 404 for an
    unknown tenant."""
    if not is_identifier(tenant):
        raise NotFound(f"unknown tenant {tenant!r}", field="tenant")
    with store().read() as conn:
        require_version(conn, tenant)
    origin = current_app.config["PUBLIC_URL"] or request.host_url
    named = "tenant" in (request.view_args or {})
    base = origin.rstrip("/") + (f"/tenants/{tenant}" if named else "")
    endpoints = {name: f"{base}{ACCESS}{path}" for name, path in ENDPOINTS.items()}
    response = _respond(shapes.PdpMetadata(policy_decision_point=base, **endpoints))
    response.headers["Cache-Control"] = "max-age=300"
    return response


@bp.after_app_request
def echo_request_id(response: Response) -> Response:
    """The standard's request identifier: an X-Request-ID sent is echoed on the answer (on
    every answer of the service, errors and unknown paths included)."""
    sent = request.headers.get("X-Request-ID")
    if sent is not None:
        response.headers["X-Request-ID"] = sent
    return response
