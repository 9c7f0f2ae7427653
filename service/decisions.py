"""How a request is decided: every question -- one from POST /authorize, a thousand from a batch,
the actions of POST /permissions, the cases of `workflow-authz test` -- goes through `decide_all`.

A question names either an assessment (its current phase is read from the state table) or an
area and phase. `decide_all` reads what the questions need from its Facts in one call per kind
(where the assessments are, with their tenants' policy versions; the versions of the tenants asked
about by phase; each tenant's policy), decides each question with the seam's pure `decide`, and
records each decision under a new id (the decision log, for the API). A question that cannot be
answered (a key not valid for the tenant, an unknown tenant, assessment or identifier) gets its
own error; only a store failure fails them all. The store's facts are `Stored`; the CLI's `test`
brings the facts of policy files (casetests.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import NamedTuple, Protocol

from sqlalchemy import Connection

from service import assessments, decision_log
from service.assessments import Subject
from service.db import Reading
from service.errors import Forbidden, NotFound, ServiceError
from service.keys import Key, Pending, riding
from service.policies import Decision, PolicyEngine, TenantPolicy, decide, validate
from service.policies.store import versions
from service.workflows import Workflow


@dataclass(frozen=True)
class Question:
    """One validated authorization question: about an assessment, or about an area and phase."""

    tenant: str
    role: str
    action: str
    assessment: str | None = None
    area: str | None = None
    phase: str | None = None


class Answer(NamedTuple):
    """A decision, the assessment it was about (if any) and its id in the decision log."""

    decision_id: str
    decision: Decision
    assessment: str | None


Asked = Question | ServiceError
"""A question, or the error that refused it before it could be asked (an invalid batch item)."""
Record = Callable[[Decision, str | None, Key], str]
"""Where a decision is recorded, returning its id, instead of the decision log."""


class Facts(Protocol):
    """What deciding reads: the definition, where assessments are, the tenants' policies."""

    @property
    def workflow(self) -> Workflow: ...

    def subjects(self, wanted: set[tuple[str, str]]) -> Mapping[tuple[str, str], Subject]:
        """Area, phase and policy version of each (tenant, assessment id) that exists."""
        ...

    def versions(self, tenants: set[str]) -> Mapping[str, int]:
        """The policy version of each tenant that exists."""
        ...

    def policy(self, tenant: str, version: int) -> TenantPolicy:
        """The tenant's policy at that version."""
        ...


class Stored:
    """The store's facts, read on one connection (`conn`; None: opened in `opened` the first
    time a statement about several rows needs one, see db.Reading), with the process's cache
    of tenant policies.

    With a `pending` key (one this process verified before, keys.Pending), the first statement
    that reads a subject or a version confirms the key too, and no policy is handed out for a
    decision before it was confirmed (by a statement of its own, if none carried it)."""

    __slots__ = ("engine", "pending", "reading")

    def __init__(
        self,
        conn: Connection | None,
        engine: PolicyEngine,
        pending: Pending | None = None,
        opened: ExitStack | None = None,
    ) -> None:
        self.engine = engine
        self.pending = pending
        self.reading = Reading(engine.db, conn, opened)

    @property
    def workflow(self) -> Workflow:
        return self.engine.workflow

    def subjects(self, wanted: set[tuple[str, str]]) -> Mapping[tuple[str, str], Subject]:
        return assessments.subjects(self.reading, wanted, riding(self.pending))

    def versions(self, tenants: set[str]) -> Mapping[str, int]:
        return versions(self.reading, tenants, riding(self.pending))

    def policy(self, tenant: str, version: int) -> TenantPolicy:
        if self.pending is not None:
            self.pending.confirm(self.reading)
        return self.engine.policy(tenant, version, self.reading.conn)


def decide_all(
    facts: Facts,
    key: Key,
    questions: Sequence[Asked],
    record: Record | None = None,
    until: Callable[[Answer | ServiceError], bool] | None = None,
) -> list[Answer | ServiceError]:
    """Answer every question in order: each an answer or its own error, never both. Nothing is
    read for a tenant the key may not ask about. Errors of the store (5xx) are raised: then
    nothing is answered, nothing is allowed, and nothing is recorded. With `until`, answering
    stops after the first answer it holds for: the questions after it are neither decided nor
    recorded (AuthZEN's short-circuiting evaluations). Decisions go to the decision log all at
    once (decision_log.record_all), or one by one to `record` (the policy checker's unlogged
    cases)."""
    asked = [_for_key(key, q) for q in questions]
    valid = [q for q in asked if isinstance(q, Question)]
    found = facts.subjects({(q.tenant, q.assessment) for q in valid if q.assessment})
    unplaced = {q.tenant for q in valid if (q.tenant, q.assessment) not in found}
    known = facts.versions(unplaced)  # by phase, or to tell an unknown tenant from an assessment
    if until is None:
        decided = [_decided(facts, q, found, known) for q in asked]
        return _recorded(key, asked, decided, record)
    answers: list[Answer | ServiceError] = []
    for question in asked:
        decision = _decided(facts, question, found, known)
        answers += _recorded(key, [question], [decision], record)
        if until(answers[-1]):
            break
    return answers


def decide_one(facts: Facts, key: Key, question: Question) -> Answer:
    """A single question is a batch of one; its error is raised."""
    (result,) = decide_all(facts, key, [question])
    if isinstance(result, ServiceError):
        raise result
    return result


def permitted(facts: Facts, key: Key, question: Question) -> tuple[Subject, list[str]]:
    """Where the question is about, and every action the role may take there (the buttons to
    show): one question per action of the definition, through the same path as any other."""
    asked = [replace(question, action=action) for action in facts.workflow.actions]
    answers: list[Answer] = []
    for result in decide_all(facts, key, asked):
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


def _decided(
    facts: Facts,
    question: Asked,
    found: Mapping[tuple[str, str], Subject],
    known: Mapping[str, int],
) -> Decision | ServiceError:
    """One question's decision, not yet recorded; or the error that keeps it from being made."""
    try:
        if isinstance(question, ServiceError):
            raise question
        where = _locate(question, found, known)
        cell = (question.role, where.area, where.phase, question.action)
        area = validate(facts.workflow, role=cell[0], action=cell[3], area=cell[1], phase=cell[2])
        return decide(facts.policy(question.tenant, where.policy_version), area, cell)
    except ServiceError as error:
        if error.status >= 500:
            raise
        return error


def _recorded(
    key: Key,
    asked: Sequence[Asked],
    decided: Sequence[Decision | ServiceError],
    record: Record | None,
) -> list[Answer | ServiceError]:
    """The decisions recorded, each as its answer under its new id; the errors as they are."""
    about = [
        (d, q.assessment)
        for q, d in zip(asked, decided, strict=True)
        if isinstance(d, Decision) and isinstance(q, Question)
    ]
    if record is None:
        ids = decision_log.record_all(about, key)
    else:
        ids = [record(d, assessment, key) for d, assessment in about]
    made = iter(zip(ids, about, strict=True))
    answers: list[Answer | ServiceError] = []
    for d in decided:
        if isinstance(d, ServiceError):
            answers.append(d)
        else:
            decision_id, (decision, assessment) = next(made)
            answers.append(Answer(decision_id, decision, assessment))
    return answers


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
