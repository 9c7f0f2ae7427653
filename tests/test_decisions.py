"""How a request is decided (service/decisions.py): a single question is a batch of one, a batch
reads what it needs in one query per kind however many questions it holds, /permissions asks one
question per action through the same path, and every answer is logged where it is made."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import pytest
from sqlalchemy import event

from service import decisions, policy_changes
from service.cli import default_cells
from service.db import Database
from service.decisions import Answer, Question, Stored
from service.errors import Forbidden, InvalidRequest, NotFound, ServiceError, Unavailable
from service.keys import Key
from service.policies import Decision, PolicyEngine
from tests.conftest import Api

ALL = Key(0, "test", None)


NORTH_ONLY = Key(1, "north", "north")


BY_PHASE = Question("default", "parent", "view", area="behaviour", phase="completed")


def _create(api: Api, *ids: str, area: str = "behaviour") -> None:
    for assessment_id in ids:
        assert api.post("/assessments", {"id": assessment_id, "area": area}).status_code == 201


@contextmanager
def _statements(db: Database) -> Iterator[list[str]]:
    """Every SQL statement the store runs inside the block."""
    seen: list[str] = []

    def count(*args: object) -> None:
        seen.append(str(args[2]))

    event.listen(db.reader, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(db.reader, "before_cursor_execute", count)


def _answers(
    db: Database, engine: PolicyEngine, key: Key, questions: list[decisions.Asked]
) -> list[Answer | ServiceError]:
    with db.read() as conn:
        return decisions.decide_all(Stored(conn, engine), key, questions)


def test_a_single_question_is_answered_as_a_batch_of_one(
    api: Api, db: Database, policy_engine: PolicyEngine
) -> None:
    _create(api, "b1")
    about = Question("default", "mentor", "advance", assessment="b1")
    with db.read() as conn:
        one = decisions.decide_one(Stored(conn, policy_engine), ALL, about)
    [batch] = _answers(db, policy_engine, ALL, [about])
    assert isinstance(batch, Answer)
    assert (one.decision, one.assessment) == (batch.decision, batch.assessment)
    assert one.decision.allowed and one.decision.phase == "group_registration"
    assert one.decision_id != batch.decision_id  # each answer is its own line in the log


def test_a_batch_reads_assessments_and_versions_in_one_query_each(
    api: Api, db: Database, policy_engine: PolicyEngine
) -> None:
    ids = [f"q{i}" for i in range(30)]
    _create(api, *ids)
    questions: list[decisions.Asked] = [
        Question("default", "mentor", "edit", assessment=i) for i in ids
    ]
    questions += [BY_PHASE] * 30 + [
        Question("nowhere", "parent", "view", area="behaviour", phase="completed")
    ]
    policy_engine.policy("default", 1)  # resident: the rows are not what is counted here
    with _statements(db) as seen:
        answers = _answers(db, policy_engine, ALL, questions)
    assert len(seen) == 2, seen
    assert all(isinstance(a, Answer) and a.decision.allowed for a in answers[:60])
    assert isinstance(answers[60], NotFound) and answers[60].field == "tenant"


def test_each_question_fails_alone_and_the_rest_are_answered(
    api: Api, db: Database, policy_engine: PolicyEngine
) -> None:
    _create(api, "f1")
    refused = InvalidRequest("bad item", field="role")
    questions: list[decisions.Asked] = [
        refused,
        Question("default", "janitor", "view", assessment="f1"),
        Question("default", "parent", "view", assessment="missing"),
        Question("nowhere", "parent", "view", assessment="f1"),
        BY_PHASE,
    ]
    answers = _answers(db, policy_engine, ALL, questions)
    assert answers[0] is refused
    assert isinstance(answers[1], InvalidRequest) and answers[1].field == "role"
    assert isinstance(answers[2], NotFound) and answers[2].field == "assessment"
    assert isinstance(answers[3], NotFound) and answers[3].field == "tenant"
    assert isinstance(answers[4], Answer) and answers[4].decision.allowed


def test_until_stops_after_the_first_answer_it_holds_for_and_records_no_more(
    db: Database, policy_engine: PolicyEngine
) -> None:
    """AuthZEN's short-circuiting boxcars: what follows the deciding answer is not decided."""
    recorded: list[Decision] = []

    def record(decision: Decision, assessment: str | None, key: Key) -> str:
        recorded.append(decision)
        return str(len(recorded))

    def deny(answer: Answer | ServiceError) -> bool:
        return isinstance(answer, ServiceError) or not answer.decision.allowed

    denied = replace(BY_PHASE, role="course_teacher")
    questions: list[decisions.Asked] = [BY_PHASE, BY_PHASE, denied, BY_PHASE, denied]
    with db.read() as conn:
        answers = decisions.decide_all(Stored(conn, policy_engine), ALL, questions, record, deny)
    assert [a.decision.allowed for a in answers if isinstance(a, Answer)] == [True, True, False]
    assert len(answers) == 3 and [d.role for d in recorded] == [
        "parent",
        "parent",
        "course_teacher",
    ]


def test_a_key_of_another_tenant_gets_forbidden_and_nothing_of_that_tenant_is_read(
    api: Api, db: Database, policy_engine: PolicyEngine
) -> None:
    _create(api, "k1")
    about_default = Question("default", "parent", "view", assessment="k1")
    with _statements(db) as seen:
        answers = _answers(db, policy_engine, NORTH_ONLY, [BY_PHASE, about_default])
    assert seen == []
    assert all(isinstance(a, Forbidden) and a.field == "tenant" for a in answers)


def test_permissions_are_one_question_per_action_of_the_definition(
    api: Api, db: Database, policy_engine: PolicyEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="workflow_authz.decisions")
    _create(api, "p1")
    asked = Question("default", "mentor", "", assessment="p1")
    with db.read() as conn:
        where, actions = decisions.permitted(Stored(conn, policy_engine), ALL, asked)
    expected = []
    for action in policy_engine.workflow.actions:
        with db.read() as conn:
            if decisions.decide_one(
                Stored(conn, policy_engine), ALL, replace(asked, action=action)
            ).decision.allowed:
                expected.append(action)
    assert (where.area, where.phase, actions) == ("behaviour", "group_registration", expected)
    assert expected == ["view", "edit", "advance"]
    lines = [
        json.loads(r.getMessage()) for r in caplog.records if r.name == "workflow_authz.decisions"
    ]
    logged = [line["action"] for line in lines if line["event"] == "decision"]
    assert logged[: len(policy_engine.workflow.actions)] == list(policy_engine.workflow.actions)


def test_decisions_are_logged_where_they_are_made_not_where_they_are_formatted(
    db: Database, policy_engine: PolicyEngine, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="workflow_authz.decisions")
    answers = _answers(db, policy_engine, ALL, [BY_PHASE, replace(BY_PHASE, role="learner")])
    lines = [
        json.loads(r.getMessage()) for r in caplog.records if r.name == "workflow_authz.decisions"
    ]
    assert [line["decision_id"] for line in lines] == [
        a.decision_id for a in answers if isinstance(a, Answer)
    ]
    assert [line["role"] for line in lines] == ["parent", "learner"]


def test_a_store_failure_while_deciding_fails_the_whole_batch(
    api: Api, db: Database, policy_engine: PolicyEngine
) -> None:
    _create(api, "s1")
    policy_engine.forget("default")  # the batch must read the tenant's rows, and cannot
    with db.write() as conn:
        conn.exec_driver_sql("DROP TABLE casbin_rule")
    asked = [BY_PHASE, Question("default", "parent", "view", assessment="s1")]
    with pytest.raises(Unavailable):
        _answers(db, policy_engine, ALL, asked)


def test_a_store_failure_in_a_batch_logs_none_of_the_decisions_made_before_it(
    api: Api, db: Database, policy_engine: PolicyEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing is answered when the store fails: the decisions made before the failure (the
    default tenant's, from its cached policy) are not in the log either."""
    with db.write() as conn:
        policy_changes.create_tenant(conn, "north", default_cells(), actor="test")
    assert not isinstance(_answers(db, policy_engine, ALL, [BY_PHASE])[0], ServiceError)
    policy_engine.forget("north")  # its rows must be read, and cannot be
    with db.write() as conn:
        conn.exec_driver_sql("DROP TABLE casbin_rule")
    caplog.set_level(logging.INFO, logger="workflow_authz.decisions")
    caplog.clear()
    with pytest.raises(Unavailable):
        _answers(db, policy_engine, ALL, [BY_PHASE, replace(BY_PHASE, tenant="north")])
    assert [r for r in caplog.records if r.name == "workflow_authz.decisions"] == []


def test_permissions_list_the_buttons_to_show(api: Api) -> None:
    api.post("/assessments", {"id": "p1", "area": "assessment"})
    teacher = api.post("/permissions", {"role": "course_teacher", "assessment": "p1"}).json
    assert teacher == {
        "tenant": "default",
        "role": "course_teacher",
        "area": "assessment",
        "phase": "course_registration",
        "assessment": "p1",
        "actions": ["view", "edit", "advance"],
        "policy_version": 1,
    }
    head = api.post(
        "/permissions", {"role": "headteacher", "area": "assessment", "phase": "completed"}
    ).json
    assert head["actions"] == ["view", "edit", "reopen"]
    parent = api.post("/permissions", {"role": "parent", "assessment": "p1"}).json
    assert parent["actions"] == []


def test_permissions_refuse_bad_questions(api: Api) -> None:
    assert (
        api.post("/permissions", {"role": "parent", "action": "view", "assessment": "p"}).json[
            "error"
        ]["field"]
        == "action"
    )
    assert api.post("/permissions", {"role": "parent", "assessment": "ghost"}).status_code == 404
    assert (
        api.post(
            "/permissions", {"role": "nobody", "area": "behaviour", "phase": "completed"}
        ).json["error"]["field"]
        == "role"
    )
