"""How a request is decided: every question -- one from POST /authorize, a thousand from a batch,
the actions of POST /permissions -- goes through `decide_all`.

A question names either an assessment (its current phase is read from the state table) or an
area and phase. `decide_all` reads what the questions need in one query per kind (the assessments
with their tenants' policy versions; the versions of the tenants asked about by phase), decides
each question with the seam's pure `decide`, and writes each decision to the decision log under a
new id. A question that cannot be answered (unknown tenant or assessment, a key not valid for the
tenant, an unknown identifier) gets its own error; only a store failure fails them all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from sqlalchemy import Connection

from service import assessments, decision_log
from service.assessments import Subject
from service.errors import Forbidden, NotFound, ServiceError
from service.keys import Key
from service.policies import Decision, PolicyEngine, decide
from service.policies.store import versions


@dataclass(frozen=True)
class Question:
    """One validated authorization question: about an assessment, or about an area and phase."""

    tenant: str
    role: str
    action: str
    assessment: str | None = None
    area: str | None = None
    phase: str | None = None


@dataclass(frozen=True)
class Answer:
    """A decision, the assessment it was about (if any) and its id in the decision log."""

    decision_id: str
    decision: Decision
    assessment: str | None


Asked = Question | ServiceError
"""A question, or the error that refused it before it could be asked (an invalid batch item)."""


def decide_all(
    conn: Connection, engine: PolicyEngine, key: Key, questions: Sequence[Asked]
) -> list[Answer | ServiceError]:
    """Answer every question in order: each an answer or its own error, never both. Nothing is
    read for a tenant the key may not ask about. Errors of the store (5xx) are raised: then
    nothing is answered, and nothing is allowed."""
    asked = [_for_key(key, q) for q in questions]
    valid = [q for q in asked if isinstance(q, Question)]
    found = assessments.subjects(conn, {(q.tenant, q.assessment) for q in valid if q.assessment})
    unplaced = {q.tenant for q in valid if (q.tenant, q.assessment) not in found}
    known = versions(conn, unplaced)  # by phase, or to tell an unknown tenant from an assessment
    return [_answer(conn, engine, key, q, found, known) for q in asked]


def decide_one(conn: Connection, engine: PolicyEngine, key: Key, question: Question) -> Answer:
    """A single question is a batch of one; its error is raised."""
    (result,) = decide_all(conn, engine, key, [question])
    if isinstance(result, ServiceError):
        raise result
    return result


def permitted(
    conn: Connection, engine: PolicyEngine, key: Key, question: Question
) -> tuple[Subject, list[str]]:
    """Where the question is about, and every action the role may take there (the buttons to
    show): one question per action of the definition, through the same path as any other."""
    asked = [replace(question, action=action) for action in engine.workflow.actions]
    answers: list[Answer] = []
    for result in decide_all(conn, engine, key, asked):
        if isinstance(result, ServiceError):  # all are about one place: they fail alike
            raise result
        answers.append(result)
    first = answers[0].decision
    where = Subject(first.area, first.phase, first.policy_version)
    return where, [a.decision.action for a in answers if a.decision.allowed]


def _for_key(key: Key, question: Asked) -> Asked:
    """The question, or Forbidden when the key is not valid for its tenant."""
    if isinstance(question, Question):
        try:
            key.require_tenant(question.tenant)
        except Forbidden as error:
            return error
    return question


def _answer(
    conn: Connection,
    engine: PolicyEngine,
    key: Key,
    question: Asked,
    found: Mapping[tuple[str, str], Subject],
    known: Mapping[str, int],
) -> Answer | ServiceError:
    """One question's answer, logged; or the error that keeps it from being answered."""
    try:
        if isinstance(question, ServiceError):
            raise question
        where = _locate(question, found, known)
        area = engine.validate(
            role=question.role, action=question.action, area=where.area, phase=where.phase
        )
        policy = engine.policy(question.tenant, where.policy_version, conn)
        decision = decide(policy, area, (question.role, where.area, where.phase, question.action))
    except ServiceError as error:
        if error.status >= 500:
            raise
        return error
    decision_id = decision_log.record(decision, question.assessment, key)
    return Answer(decision_id, decision, question.assessment)


def _locate(
    question: Question, found: Mapping[tuple[str, str], Subject], known: Mapping[str, int]
) -> Subject:
    """The area, phase and policy version a question is about; NotFound naming what is unknown."""
    if question.assessment is not None:
        subject = found.get((question.tenant, question.assessment))
        if subject is not None:
            return subject
    if question.tenant not in known:
        raise NotFound(f"unknown tenant {question.tenant!r}", field="tenant")
    if question.assessment is not None:
        raise assessments.not_found(question.tenant, question.assessment, field="assessment")
    return Subject(question.area or "", question.phase or "", known[question.tenant])
