"""Assessment state: which phase each assessment is in, read by every decision about it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select
from sqlalchemy.exc import IntegrityError

from service.errors import Conflict, InvalidRequest, NotFound
from service.models import Assessment, PolicyVersion, Transition, utcnow
from service.policy_store import require_version
from service.workflows import Workflow

ASSESSMENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}\Z")
# Built once: every decision about an assessment runs it.
_SUBJECT = (
    select(Assessment.area, Assessment.phase, PolicyVersion.version)
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

    def to_json(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "id": self.id,
            "area": self.area,
            "phase": self.phase,
            "version": self.version,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
        }


@dataclass(frozen=True)
class Subject:
    """What a decision about an assessment needs: its area and phase, and the policy version."""

    area: str
    phase: str
    policy_version: int


def iso(moment: datetime) -> str:
    """RFC 3339 UTC with a Z, to the microsecond."""
    return moment.isoformat().replace("+00:00", "Z")


def check_id(value: object) -> str:
    """An assessment id: 1-128 of letters, digits and . _ : - (first a letter or digit)."""
    if not isinstance(value, str) or not ASSESSMENT_ID.match(value):
        raise InvalidRequest(
            "assessment id must be 1-128 characters of A-Z a-z 0-9 . _ : - "
            "starting with a letter or digit",
            field="id",
        )
    return value


def subject(conn: Connection, tenant: str, assessment_id: str) -> Subject:
    """Phase and policy version in one indexed query; NotFound for an unknown assessment."""
    row = conn.execute(_SUBJECT, {"tenant": tenant, "id": assessment_id}).one_or_none()
    if row is None:
        require_version(conn, tenant)  # an unknown tenant says so rather than "no assessment"
        raise NotFound(
            f"unknown assessment {assessment_id!r} in tenant {tenant!r}", field="assessment"
        )
    return Subject(row.area, row.phase, row.version)


def create(
    conn: Connection, workflow: Workflow, tenant: str, assessment_id: str, area: str
) -> State:
    """Register an assessment at its area's first phase; Conflict if the id is taken."""
    area_def = workflow.area_by_id.get(area)
    if area_def is None:
        raise InvalidRequest(f"unknown area {area!r}", field="area")
    require_version(conn, tenant)
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
    return State(**values)  # type: ignore[arg-type]


def get(conn: Connection, tenant: str, assessment_id: str) -> State:
    """The assessment's state; NotFound naming the tenant or the assessment."""
    state = _find(conn, tenant, assessment_id)
    if state is None:
        require_version(conn, tenant)
        raise NotFound(f"unknown assessment {assessment_id!r} in tenant {tenant!r}", field="id")
    return state


def history(conn: Connection, tenant: str, assessment_id: str) -> list[dict[str, Any]]:
    """Every transition of the assessment, oldest first."""
    rows = conn.execute(
        select(Transition)
        .where(Transition.tenant == tenant, Transition.assessment_id == assessment_id)
        .order_by(Transition.id)
    )
    return [
        {
            "from_phase": t.from_phase,
            "to_phase": t.to_phase,
            "role": t.role,
            "actor": t.actor,
            "at": iso(t.at),
            "action": t.action,
            "reason": t.reason,
            "policy_version": t.policy_version,
        }
        for t in rows
    ]


def _find(conn: Connection, tenant: str, assessment_id: str) -> State | None:
    row = conn.execute(
        select(Assessment).where(Assessment.tenant == tenant, Assessment.id == assessment_id)
    ).one_or_none()
    if row is None:
        return None
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
