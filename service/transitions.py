"""Advancing an assessment: policy check, then compare-and-set on its version, plus history."""

from __future__ import annotations

from sqlalchemy import Connection, insert, update

from service import assessments
from service.assessments import State
from service.errors import Conflict, InvalidRequest, NotAllowed
from service.models import Assessment, Transition, utcnow
from service.policies import PolicyEngine, require_version


def advance(
    conn: Connection,
    engine: PolicyEngine,
    tenant: str,
    assessment_id: str,
    *,
    role: str,
    actor: str,
    expected_phase: str | None = None,
) -> State:
    """Move the assessment to its next phase if `role` may advance the current one.

    The update only applies if the assessment still has the version we read (compare-and-set),
    so of several concurrent advances exactly one wins; the others get Conflict. The history row
    is written in the same transaction, so state and history never disagree.
    """
    state = assessments.get(conn, tenant, assessment_id)
    area = engine.workflow.area_by_id[state.area]
    if expected_phase is not None and area.phase(expected_phase) is None:
        raise InvalidRequest(
            f"unknown phase {expected_phase!r} of area {state.area!r}", field="expected_phase"
        )
    decision = engine.decide(
        tenant,
        role,
        state.area,
        state.phase,
        "advance",
        version=require_version(conn, tenant),
        conn=conn,
    )
    if expected_phase is not None and expected_phase != state.phase:
        raise Conflict(
            f"assessment {assessment_id!r} is in phase {state.phase}, not {expected_phase}",
            field="expected_phase",
        )
    following = area.next_phase(state.phase)
    if following is None:
        raise Conflict(f"assessment {assessment_id!r} is in the final phase {state.phase}")
    if not decision.allowed:
        raise NotAllowed(decision.reason, field="role")
    now = utcnow()
    changed = conn.execute(
        update(Assessment)
        .where(
            Assessment.tenant == tenant,
            Assessment.id == assessment_id,
            Assessment.version == state.version,
        )
        .values(phase=following.id, version=state.version + 1, updated_at=now)
    )
    if changed.rowcount != 1:
        raise Conflict(f"assessment {assessment_id!r} was changed concurrently; read it and retry")
    conn.execute(
        insert(Transition).values(
            tenant=tenant,
            assessment_id=assessment_id,
            from_phase=state.phase,
            to_phase=following.id,
            role=role,
            actor=actor,
            policy_version=decision.policy_version,
            at=now,
        )
    )
    return State(
        tenant, assessment_id, state.area, following.id, state.version + 1, state.created_at, now
    )
