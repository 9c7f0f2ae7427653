"""Assessment state: which phase each assessment is in, read by every decision about it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    CompoundSelect,
    Connection,
    Select,
    bindparam,
    func,
    insert,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.exc import IntegrityError

from service.errors import Conflict, InvalidRequest, NotFound
from service.limits import MAX_ASSESSMENT_ID
from service.models import Assessment, PolicyVersion, Transition, utcnow
from service.policies.store import require_version
from service.workflows import Workflow

ASSESSMENT_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:-]{{0,{MAX_ASSESSMENT_ID - 1}}}\Z")
ASSESSMENT_ID_RULE = (
    f"1-{MAX_ASSESSMENT_ID} characters of A-Z a-z 0-9 . _ : - starting with a letter or digit"
)
"""What an assessment id may be: other systems' ids (`2026-T1:7b.maths`) fit unchanged."""
# A decision needs the phase and the tenant's policy version: one indexed query, built once.
_SUBJECTS = select(
    Assessment.tenant, Assessment.id, Assessment.area, Assessment.phase, PolicyVersion.version
).join(PolicyVersion, PolicyVersion.tenant == Assessment.tenant)
_SUBJECT = (
    select(Assessment.area, Assessment.phase, PolicyVersion.version)
    .join(PolicyVersion, PolicyVersion.tenant == Assessment.tenant)
    .where(Assessment.tenant == bindparam("tenant"), Assessment.id == bindparam("id"))
)
# A move needs the whole state and the policy version, likewise in one query.
_STATE = (
    select(Assessment, PolicyVersion.version.label("policy_version"))
    .join(PolicyVersion, PolicyVersion.tenant == Assessment.tenant)
    .where(Assessment.tenant == bindparam("tenant"), Assessment.id == bindparam("id"))
)


@dataclass(frozen=True)
class State:
    """An assessment's current phase; `version` counts its transitions plus one."""

    tenant: str
    id: str
    area: str
    phase: str
    version: int
    created_at: datetime
    updated_at: datetime


class Subject(NamedTuple):
    """What a decision about an assessment needs: its area and phase, and the policy version."""

    area: str
    phase: str
    policy_version: int


def check_id(value: object) -> str:
    """An assessment id (ASSESSMENT_ID_RULE), or InvalidRequest naming the field `id`."""
    if not isinstance(value, str) or not ASSESSMENT_ID.match(value):
        raise InvalidRequest(f"assessment id must be {ASSESSMENT_ID_RULE}", field="id")
    return value


def subjects(conn: Connection, keys: set[tuple[str, str]]) -> dict[tuple[str, str], Subject]:
    """Area, phase and policy version of each (tenant, id) that exists, in one indexed query."""
    if len(keys) == 1:
        ((tenant, assessment_id),) = keys
        row = conn.execute(_SUBJECT, {"tenant": tenant, "id": assessment_id}).first()
        return {} if row is None else {(tenant, assessment_id): Subject(*row)}
    if not keys:
        return {}
    rows = conn.execute(_SUBJECTS.where(tuple_(Assessment.tenant, Assessment.id).in_(keys)))
    return {(r.tenant, r.id): Subject(r.area, r.phase, r.version) for r in rows}


def not_found(tenant: str, assessment_id: str, field: str = "id") -> NotFound:
    """The error for an assessment the tenant does not have."""
    return NotFound(f"unknown assessment {assessment_id!r} in tenant {tenant!r}", field=field)


def create(
    conn: Connection, workflow: Workflow, tenant: str, assessment_id: str, area: str
) -> tuple[State, int]:
    """Register an assessment at its area's first phase; Conflict if the id is taken. Returns the
    state and the tenant's policy version."""
    area_def = workflow.area_by_id.get(area)
    if area_def is None:
        raise InvalidRequest(f"unknown area {area!r}", field="area")
    version = require_version(conn, tenant)
    if _find(conn, tenant, assessment_id) is not None:
        raise Conflict(
            f"assessment {assessment_id!r} already exists in tenant {tenant!r}", field="id"
        )
    now = utcnow()
    values = dict(
        tenant=tenant,
        id=assessment_id,
        area=area,
        phase=area_def.first_phase.id,
        version=1,
        created_at=now,
        updated_at=now,
    )
    try:
        with conn.begin_nested():
            conn.execute(insert(Assessment).values(**values))
    except IntegrityError:  # created by a concurrent request between our check and insert
        raise Conflict(
            f"assessment {assessment_id!r} already exists in tenant {tenant!r}", field="id"
        ) from None
    return State(**values), version  # type: ignore[arg-type]


def get(conn: Connection, tenant: str, assessment_id: str) -> State:
    """The assessment's state; NotFound naming the tenant or the assessment."""
    return get_with_policy_version(conn, tenant, assessment_id)[0]


def get_with_policy_version(conn: Connection, tenant: str, assessment_id: str) -> tuple[State, int]:
    """The assessment's state and its tenant's policy version, in one query; NotFound naming the
    tenant or the assessment."""
    row = conn.execute(_STATE, {"tenant": tenant, "id": assessment_id}).one_or_none()
    if row is None:
        require_version(conn, tenant)  # an unknown tenant says so rather than "no assessment"
        raise not_found(tenant, assessment_id)
    return _state(row), row.policy_version


@dataclass(frozen=True)
class Step:
    """One transition of an assessment, as its history shows it."""

    from_phase: str
    to_phase: str
    role: str
    actor: str
    at: datetime
    action: str
    reason: str | None
    policy_version: int


@dataclass(frozen=True)
class StateWithHistory(State):
    """An assessment's state and every transition, oldest first."""

    history: list[Step]


def history(conn: Connection, tenant: str, assessment_id: str) -> list[Step]:
    """Every transition of the assessment, oldest first."""
    rows = conn.execute(
        select(Transition)
        .where(Transition.tenant == tenant, Transition.assessment_id == assessment_id)
        .order_by(Transition.id)
    )
    return [
        Step(t.from_phase, t.to_phase, t.role, t.actor, t.at, t.action, t.reason, t.policy_version)
        for t in rows
    ]


def _find(conn: Connection, tenant: str, assessment_id: str) -> State | None:
    row = conn.execute(
        select(Assessment).where(Assessment.tenant == tenant, Assessment.id == assessment_id)
    ).one_or_none()
    return None if row is None else _state(row)


def _state(row: Any) -> State:
    """A state from a row of the assessments table."""
    return State(
        row.tenant, row.id, row.area, row.phase, row.version, row.created_at, row.updated_at
    )


def phase_counts(conn: Connection, tenant: str, area: str) -> dict[str, int]:
    """How many of the tenant's assessments of the area are in each phase right now."""
    rows = conn.execute(
        select(Assessment.phase, func.count())
        .where(Assessment.tenant == tenant, Assessment.area == area)
        .group_by(Assessment.phase)
    )
    return {phase: count for phase, count in rows}


def ids_at(
    conn: Connection, tenant: str, places: Sequence[tuple[str, str]], after: str | None, limit: int
) -> list[str]:
    """Ids of the tenant's assessments now at any of `places` (area, phase), after the id `after`
    (None: from the start), in id order, at most `limit`: a page of resource search."""
    if not places:
        return []
    return list(conn.execute(ids_at_statement(tenant, places, after, limit)).scalars())


def ids_at_statement(
    tenant: str, places: Sequence[tuple[str, str]], after: str | None, limit: int
) -> Select[str] | CompoundSelect[str]:
    """The one statement of ids_at (given at least one place): an arm per place, each a range
    of ix_assessments_place read in id order and cut at `limit`, merged in id order. A page
    reads at most `limit` index entries per place, however many assessments the tenant has and
    however few of them are at those places (a filter over the primary key's id order would
    read them all to fill a page of a sparse result)."""
    arms = []
    for area, phase in places:
        arm = select(Assessment.id).where(
            Assessment.tenant == tenant, Assessment.area == area, Assessment.phase == phase
        )
        if after is not None:
            arm = arm.where(Assessment.id > after)
        arms.append(arm.order_by(Assessment.id).limit(limit))
    if len(arms) == 1:
        return arms[0]
    merged = union_all(*(select(arm.subquery().c.id) for arm in arms))
    return merged.order_by("id").limit(limit)
