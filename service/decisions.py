"""Authorization questions from the API: parse them, read what they need, and decide.

A question names either an assessment (its current phase is read from the state table) or an
area and phase. A batch reads every tenant's policy version and every assessment it names in
one transaction, then decides each item on its own; an invalid item gets its own error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, tuple_

from service import decision_log
from service.assessments import ASSESSMENT_ID, Subject, subject
from service.errors import InvalidRequest, NotFound, ServiceError
from service.keys import Key
from service.models import Assessment, PolicyVersion
from service.policies import Decision, PolicyEngine
from service.policy_store import require_version
from service.workflows import is_identifier

DEFAULT_TENANT = "default"
MAX_BATCH = 1000
QUESTION_FIELDS = frozenset({"tenant", "role", "action", "assessment", "area", "phase"})


@dataclass(frozen=True)
class Question:
    """One validated authorization question."""

    tenant: str
    role: str
    action: str
    assessment: str | None = None
    area: str | None = None
    phase: str | None = None


def parse_question(body: Mapping[str, Any], extra: frozenset[str] = frozenset()) -> Question:
    """Validate the shape of a question; InvalidRequest names the first field at fault."""
    _refuse_unknown(body, QUESTION_FIELDS | extra)
    return _question(body, identifier(body, "action"))


def parse_listing(body: Mapping[str, Any]) -> Question:
    """A question without an action, for listing every permitted action (POST /permissions)."""
    _refuse_unknown(body, QUESTION_FIELDS - {"action"})
    return _question(body, "")


def _refuse_unknown(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidRequest(f"unknown field {unknown[0]!r}", field=unknown[0])


def _question(body: Mapping[str, Any], action: str) -> Question:
    """Tenant, role and either an assessment or an area and phase."""
    tenant = identifier(body, "tenant", default=DEFAULT_TENANT)
    role = identifier(body, "role")
    if "assessment" in body:
        for name in ("area", "phase"):
            if name in body:
                raise InvalidRequest(
                    "give either assessment, or area and phase; not both", field=name
                )
        assessment = body["assessment"]
        if not isinstance(assessment, str) or not ASSESSMENT_ID.match(assessment):
            raise InvalidRequest("assessment must be an assessment id string", field="assessment")
        return Question(tenant, role, action, assessment=assessment)
    if "area" not in body and "phase" not in body:
        raise InvalidRequest("give assessment, or area and phase", field="assessment")
    return Question(
        tenant, role, action, area=identifier(body, "area"), phase=identifier(body, "phase")
    )


def identifier(body: Mapping[str, Any], name: str, default: str | None = None) -> str:
    """A required (or defaulted) identifier field: [a-z][a-z0-9_]*, at most 64 characters."""
    if name not in body:
        if default is not None:
            return default
        raise InvalidRequest(f"missing field {name!r}", field=name)
    value = body[name]
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string", field=name)
    if not is_identifier(value):
        raise InvalidRequest(
            f"{name} must match [a-z][a-z0-9_]* (at most 64 characters)", field=name
        )
    return value


def answer(conn: Connection, engine: PolicyEngine, question: Question) -> Decision:
    """Decide one question, reading the assessment's phase or the tenant's version first."""
    return _decide(engine, question, locate(conn, question), conn)


def permitted(conn: Connection, engine: PolicyEngine, question: Question) -> dict[str, Any]:
    """Every action the role may take on the assessment or at the phase: the buttons to show."""
    found = locate(conn, question)
    actions = engine.permitted(
        question.tenant,
        question.role,
        found.area,
        found.phase,
        version=found.policy_version,
        conn=conn,
    )
    return {
        "tenant": question.tenant,
        "role": question.role,
        "area": found.area,
        "phase": found.phase,
        "assessment": question.assessment,
        "actions": actions,
        "policy_version": found.policy_version,
    }


def locate(conn: Connection, question: Question) -> Subject:
    """The area, phase and policy version a question is about (the assessment's current phase)."""
    if question.assessment is not None:
        return subject(conn, question.tenant, question.assessment)
    version = require_version(conn, question.tenant)
    return Subject(question.area or "", question.phase or "", version)


def answer_batch(
    conn: Connection, engine: PolicyEngine, key: Key, items: Sequence[Any]
) -> list[dict[str, Any]]:
    """Answer every item in order; each is a decision or its own error, never both."""
    parsed = [_parse_item(key, i, item) for i, item in enumerate(items)]
    questions = [q for _, q in parsed if isinstance(q, Question)]
    versions = _versions(conn, {q.tenant for q in questions})
    subjects = _subjects(conn, [q for q in questions if q.assessment is not None])
    return [
        _batch_result(engine, conn, key, item_id, q, versions, subjects) for item_id, q in parsed
    ]


def to_json(decision: Decision, assessment: str | None, key: Key) -> dict[str, Any]:
    """The spec's answer object, under a new decision id written to the decision log."""
    answer = {
        "allowed": decision.allowed,
        "tenant": decision.tenant,
        "role": decision.role,
        "action": decision.action,
        "area": decision.area,
        "phase": decision.phase,
        "assessment": assessment,
        "policy_version": decision.policy_version,
        "rule": list(decision.rule) if decision.rule else None,
        "reason": decision.reason,
    }
    return {"decision_id": decision_log.record(answer, key), **answer}


def _decide(engine: PolicyEngine, q: Question, s: Subject, conn: Connection) -> Decision:
    return engine.decide(
        q.tenant, q.role, s.area, s.phase, q.action, version=s.policy_version, conn=conn
    )


def _parse_item(key: Key, index: int, item: Any) -> tuple[str, Question | ServiceError]:
    """Validate one batch item: an object with a string id, a valid question, a permitted tenant."""
    if not isinstance(item, dict):
        return str(index), InvalidRequest(f"requests[{index}] must be an object", field="requests")
    item_id = item.get("id")
    if not isinstance(item_id, str) or not 0 < len(item_id) <= 128:
        return str(index), InvalidRequest(
            "each request needs an id string of 1-128 characters", field="id"
        )
    try:
        question = parse_question(item, extra=frozenset({"id"}))
        key.require_tenant(question.tenant)
    except ServiceError as error:
        return item_id, error
    return item_id, question


def _batch_result(
    engine: PolicyEngine,
    conn: Connection,
    key: Key,
    item_id: str,
    q: Question | ServiceError,
    versions: Mapping[str, int],
    subjects: Mapping[tuple[str, str], Subject],
) -> dict[str, Any]:
    try:
        if isinstance(q, ServiceError):
            raise q
        if q.tenant not in versions:
            raise NotFound(f"unknown tenant {q.tenant!r}", field="tenant")
        if q.assessment is not None:
            found = subjects.get((q.tenant, q.assessment))
            if found is None:
                raise NotFound(
                    f"unknown assessment {q.assessment!r} in tenant {q.tenant!r}",
                    field="assessment",
                )
        else:
            found = Subject(q.area or "", q.phase or "", versions[q.tenant])
        return {"id": item_id, **to_json(_decide(engine, q, found, conn), q.assessment, key)}
    except ServiceError as error:
        if error.status >= 500:
            raise
        return {"id": item_id, "error": error.to_dict()}


def _versions(conn: Connection, tenants: set[str]) -> dict[str, int]:
    if not tenants:
        return {}
    rows = conn.execute(
        select(PolicyVersion.tenant, PolicyVersion.version).where(PolicyVersion.tenant.in_(tenants))
    )
    return {r.tenant: r.version for r in rows}


def _subjects(conn: Connection, questions: list[Question]) -> dict[tuple[str, str], Subject]:
    if not questions:
        return {}
    keys = {(q.tenant, q.assessment or "") for q in questions}
    rows = conn.execute(
        select(
            Assessment.tenant,
            Assessment.id,
            Assessment.area,
            Assessment.phase,
            PolicyVersion.version,
        )
        .join(PolicyVersion, PolicyVersion.tenant == Assessment.tenant)
        .where(tuple_(Assessment.tenant, Assessment.id).in_(keys))
    )
    return {(r.tenant, r.id): Subject(r.area, r.phase, r.version) for r in rows}
