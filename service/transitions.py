"""Moving an assessment between phases: `advance` to the next phase, `reopen` back to the previous
one (with a reason). Policy check, then compare-and-set on the version, history and feed events,
all in the caller's one transaction."""

from __future__ import annotations

from sqlalchemy import Connection, insert, update

from service import assessments, events
from service.assessments import State
from service.errors import Conflict, InvalidRequest, NotAllowed
from service.models import REASON_LENGTH, Assessment, Transition, utcnow
from service.policies import PolicyEngine, TenantPolicy
from service.policy_store import require_version
from service.workflows import Area, Phase


def start(
    conn: Connection, engine: PolicyEngine, tenant: str, assessment_id: str, area: str
) -> State:
    """Register an assessment at its area's first phase; the feed hears of it if external
    systems may see that phase."""
    state = assessments.create(conn, engine.workflow, tenant, assessment_id, area)
    policy = engine.policy(tenant, require_version(conn, tenant), conn)
    if (events.EXTERNAL, area, state.phase, "view") in policy.cells:
        change = events.Change(assessment_id, area, state.phase, visible=True)
        events.append(conn, tenant, [change], cause="created", version=policy.version)
    return state


def move(
    conn: Connection,
    engine: PolicyEngine,
    tenant: str,
    assessment_id: str,
    action: str,
    role: str,
    actor: str,
    expected_phase: str | None,
    reason: str | None = None,
) -> State:
    """Apply one transition if the policy allows it: `advance` to the next phase, or `reopen`
    back to the previous one (which needs a reason).

    The update only applies if the assessment still has the version we read (compare-and-set),
    so of several concurrent moves exactly one wins; the others get Conflict. History and feed
    events are written in the same transaction, so state, history and feed never disagree.
    """
    if action == "reopen" and (reason is None or not reason.strip() or len(reason) > REASON_LENGTH):
        raise InvalidRequest(
            f"reopen needs a reason of 1-{REASON_LENGTH} characters", field="reason"
        )
    state = assessments.get(conn, tenant, assessment_id)
    area = engine.workflow.area_by_id[state.area]
    _check_expected(area, state, expected_phase)
    decision = engine.decide(
        tenant,
        role,
        state.area,
        state.phase,
        action,
        version=require_version(conn, tenant),
        conn=conn,
    )
    target = _target(area, state, action)
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
        .values(phase=target.id, version=state.version + 1, updated_at=now)
    )
    if changed.rowcount != 1:
        raise Conflict(f"assessment {assessment_id!r} was changed concurrently; read it and retry")
    conn.execute(
        insert(Transition).values(
            tenant=tenant,
            assessment_id=assessment_id,
            from_phase=state.phase,
            to_phase=target.id,
            role=role,
            actor=actor,
            policy_version=decision.policy_version,
            at=now,
            action=action,
            reason=reason,
        )
    )
    policy = engine.policy(tenant, decision.policy_version, conn)
    _record_visibility(conn, policy, state, target.id)
    return State(
        tenant, assessment_id, state.area, target.id, state.version + 1, state.created_at, now
    )


def _check_expected(area: Area, state: State, expected_phase: str | None) -> None:
    """Conflict when the caller believed the assessment was in another phase."""
    if expected_phase is None:
        return
    if area.phase(expected_phase) is None:
        raise InvalidRequest(
            f"unknown phase {expected_phase!r} of area {state.area!r}", field="expected_phase"
        )
    if expected_phase != state.phase:
        raise Conflict(
            f"assessment {state.id!r} is in phase {state.phase}, not {expected_phase}",
            field="expected_phase",
        )


def _target(area: Area, state: State, action: str) -> Phase:
    """The phase a move goes to; Conflict past either end of the area."""
    index = area.index(state.phase)
    if action == "advance":
        if index + 1 == len(area.phases):
            raise Conflict(f"assessment {state.id!r} is in the final phase {state.phase}")
        return area.phases[index + 1]
    if action == "reopen":
        if index == 0:
            raise Conflict(f"assessment {state.id!r} is in the first phase {state.phase}")
        return area.phases[index - 1]
    raise InvalidRequest(f"{action!r} does not move an assessment", field="action")


def _record_visibility(conn: Connection, policy: TenantPolicy, state: State, to_phase: str) -> None:
    seen_before = (events.EXTERNAL, state.area, state.phase, "view") in policy.cells
    seen_after = (events.EXTERNAL, state.area, to_phase, "view") in policy.cells
    change = events.Change(state.id, state.area, to_phase, seen_after)
    events.on_transition(conn, state.tenant, change, policy.version, seen_before)
