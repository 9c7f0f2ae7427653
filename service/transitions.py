"""Moving an assessment between phases: `advance` to the next phase, `reopen` back to the previous
one (with a reason). Policy check, then compare-and-set on the version, history and feed events,
all in the caller's one transaction."""

from __future__ import annotations

from sqlalchemy import Connection, insert, update

from service import assessments, events
from service.assessments import State
from service.decision_log import Write
from service.errors import Conflict, InvalidRequest, NotAllowed
from service.keys import Key
from service.limits import MAX_REASON
from service.models import Assessment, Transition, utcnow
from service.policies import PolicyEngine, decide, validate
from service.workflows import ADVANCE, MOVES, REOPEN, Area, Phase


def start(
    conn: Connection,
    engine: PolicyEngine,
    tenant: str,
    assessment_id: str,
    area: str,
    *,
    key: Key,
    actor: str | None,
    log: Write,
) -> State:
    """Register an assessment at its area's first phase, by `key` (and the `actor` its caller
    names); the feed hears of it if external systems may see that phase."""
    state, version = assessments.create(
        conn, engine.workflow, tenant, assessment_id, area, key=key, actor=actor
    )
    log.to_phase, log.policy_version = state.phase, version
    policy = engine.policy(tenant, version, conn)
    events.on_create(conn, engine.workflow, policy.cells, policy.version, state)
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
    *,
    key: Key,
    log: Write,
) -> State:
    """Apply one transition if the policy allows it: `advance` to the next phase, or `reopen`
    back to the previous one (which needs a reason). The history row keeps `key`, the API key
    that made the move, beside `actor`, which is only what its caller says; `log` learns where
    the assessment was and goes.

    The update only applies if the assessment still has the version we read (compare-and-set),
    so of several concurrent moves exactly one wins; the others get Conflict. History and feed
    events are written in the same transaction, so state, history and feed never disagree.
    """
    if action not in MOVES:
        raise InvalidRequest(f"{action!r} does not move an assessment", field="action")
    if action == REOPEN and (reason is None or not reason.strip() or len(reason) > MAX_REASON):
        raise InvalidRequest(f"reopen needs a reason of 1-{MAX_REASON} characters", field="reason")
    state, version = assessments.lock_for_move(conn, tenant, assessment_id)
    log.from_phase, log.policy_version = state.phase, version
    area = engine.workflow.area_by_id[state.area]
    _check_expected(area, state, expected_phase)
    validate(engine.workflow, role=role, action=action, area=state.area, phase=state.phase)
    policy = engine.policy(tenant, version, conn)
    decision = decide(policy, area, (role, state.area, state.phase, action))
    target = _target(area, state, action)
    log.to_phase = target.id
    if not decision.allowed:
        raise NotAllowed(decision.reason, field="role")
    moved = _compare_and_set(conn, state, target.id)
    conn.execute(
        insert(Transition).values(
            tenant=tenant,
            assessment_id=assessment_id,
            from_phase=state.phase,
            to_phase=target.id,
            role=role,
            actor=actor,
            policy_version=policy.version,
            at=moved.updated_at,
            action=action,
            reason=reason,
            key_id=key.id,
            key_name=key.name,
        )
    )
    events.on_transition(conn, engine.workflow, policy.cells, policy.version, state, target.id)
    return moved


def _compare_and_set(conn: Connection, state: State, phase: str) -> State:
    """Put the assessment in `phase` if it still has the version we read; Conflict otherwise."""
    now = utcnow()
    changed = conn.execute(
        update(Assessment)
        .where(
            Assessment.tenant == state.tenant,
            Assessment.id == state.id,
            Assessment.version == state.version,
        )
        .values(phase=phase, version=state.version + 1, updated_at=now)
    )
    if changed.rowcount != 1:
        raise Conflict(f"assessment {state.id!r} was changed concurrently; read it and retry")
    return State(
        state.tenant, state.id, state.area, phase, state.version + 1, state.created_at, now
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
    if action == ADVANCE:
        if index + 1 == len(area.phases):
            raise Conflict(f"assessment {state.id!r} is in the final phase {state.phase}")
        return area.phases[index + 1]
    if index == 0:
        raise Conflict(f"assessment {state.id!r} is in the first phase {state.phase}")
    return area.phases[index - 1]
