"""Assessment state: which phase each assessment is in, read by every decision about it."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    CompoundSelect,
    Connection,
    Select,
    and_,
    bindparam,
    func,
    insert,
    select,
    tuple_,
    union_all,
)
from sqlalchemy.exc import IntegrityError

from service.db import Reading
from service.errors import Conflict, InvalidRequest, NotFound
from service.keys import LIVE, Key, Pending
from service.limits import MAX_ASSESSMENT_ID
from service.models import Assessment, PolicyVersion, Transition, utcnow
from service.policies.store import lock_version, locking, require_version
from service.workflows import Workflow

ASSESSMENT_ID = re.compile(rf"[A-Za-z0-9][A-Za-z0-9._:-]{{0,{MAX_ASSESSMENT_ID - 1}}}\Z")
ASSESSMENT_ID_RULE = (
    f"1-{MAX_ASSESSMENT_ID} characters of A-Z a-z 0-9 . _ : - starting with a letter or digit"
)
"""What an assessment id may be: other systems' ids (`2026-T1:7b.maths`) fit unchanged."""
# A decision needs the phase and the tenant's policy version: one indexed query, built once.
_SUBJECTS = (
    select(
        Assessment.tenant, Assessment.id, Assessment.area, Assessment.phase, PolicyVersion.version
    )
    .join(PolicyVersion, PolicyVersion.tenant == Assessment.tenant)
    .where(tuple_(Assessment.tenant, Assessment.id).in_(bindparam("keys", expanding=True)))
)
_SUBJECTS_KEYED = _SUBJECTS.add_columns(LIVE)
# SQLite plans a row-value IN list as a scan of the whole table (measured: 5.7 ms for 100 pairs
# among 20,000 assessments, growing with the store); joined from the pairs as one JSON array
# instead, it looks each up by primary key (0.2 ms), and the statement text never changes.
_PAIRS = func.json_each(bindparam("pairs")).table_valued("value").alias("pairs")
_SUBJECTS_SQLITE = (
    select(
        Assessment.tenant, Assessment.id, Assessment.area, Assessment.phase, PolicyVersion.version
    )
    .select_from(_PAIRS)
    .join(
        Assessment,
        and_(
            Assessment.tenant == func.json_extract(_PAIRS.c.value, "$[0]"),
            Assessment.id == func.json_extract(_PAIRS.c.value, "$[1]"),
        ),
    )
    .join(PolicyVersion, PolicyVersion.tenant == Assessment.tenant)
)
_SUBJECTS_SQLITE_KEYED = _SUBJECTS_SQLITE.add_columns(LIVE)
_SUBJECT = (
    select(Assessment.area, Assessment.phase, PolicyVersion.version)
    .join(PolicyVersion, PolicyVersion.tenant == Assessment.tenant)
    .where(Assessment.tenant == bindparam("tenant"), Assessment.id == bindparam("id"))
)
_SUBJECT_KEYED = _SUBJECT.add_columns(LIVE)
"""The same, confirming a remembered key in the same statement (keys.Pending)."""
# A read of the whole state, and a move's, which also needs the policy version and takes the
# tenant lock in the same query.
_STATE = (
    select(Assessment, PolicyVersion.version.label("policy_version"))
    .join(PolicyVersion, PolicyVersion.tenant == Assessment.tenant)
    .where(Assessment.tenant == bindparam("tenant"), Assessment.id == bindparam("id"))
)
_LOCKED_STATE = locking(_STATE)


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


def subjects(
    reading: Reading, keys: set[tuple[str, str]], pending: Pending | None = None
) -> dict[tuple[str, str], Subject]:
    """Area, phase and policy version of each (tenant, id) that exists, in one indexed query
    (one assessment's: the statement built once, a decision's one statement). With `pending`,
    the same statement confirms the remembered key (keys.LIVE), whenever it finds a row."""
    if len(keys) == 1:
        ((tenant, assessment_id),) = keys
        params = {"tenant": tenant, "id": assessment_id}
        if pending is None:
            row = reading.one(_SUBJECT, params)
        else:
            row = reading.one(_SUBJECT_KEYED, params | pending.params())
            if row is not None:
                pending.settle(bool(row[3]))
        return {} if row is None else {(tenant, assessment_id): Subject(row[0], row[1], row[2])}
    if not keys:
        return {}
    conn = reading.connection()
    bound: dict[str, Any] = {"keys": list(keys)}
    statement = _SUBJECTS  # built once: building costs more
    if conn.dialect.name == "sqlite":
        statement, bound = _SUBJECTS_SQLITE, {"pairs": json.dumps(list(keys))}
    if pending is not None:
        keyed = _SUBJECTS_SQLITE_KEYED if statement is _SUBJECTS_SQLITE else _SUBJECTS_KEYED
        statement, bound = keyed, bound | pending.params()
    rows = conn.execute(statement, bound).all()
    if pending is not None and rows:
        pending.settle(bool(rows[0].key_live))
    return {(r.tenant, r.id): Subject(r.area, r.phase, r.version) for r in rows}


def not_found(tenant: str, assessment_id: str, field: str = "id") -> NotFound:
    """The error for an assessment the tenant does not have."""
    return NotFound(f"unknown assessment {assessment_id!r} in tenant {tenant!r}", field=field)


def create(
    conn: Connection,
    workflow: Workflow,
    tenant: str,
    assessment_id: str,
    area: str,
    *,
    key: Key | None,
    actor: str | None = None,
) -> tuple[State, int]:
    """Register an assessment at its area's first phase, recording the API key that asks (None
    only for a store seeded outside the API, as the benchmarks do) and the actor its caller
    names; Conflict if the id is taken. Returns the state and the tenant's policy version, read
    under the tenant lock (policies/store.py)."""
    area_def = workflow.area_by_id.get(area)
    if area_def is None:
        raise InvalidRequest(f"unknown area {area!r}", field="area")
    version = lock_version(conn, tenant)
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
    creator = dict(
        created_key_id=None if key is None else key.id,
        created_key_name=None if key is None else key.name,
        created_actor=actor,
    )
    try:
        with conn.begin_nested():
            conn.execute(insert(Assessment).values(**values, **creator))
    except IntegrityError:  # created by a concurrent request between our check and insert
        raise Conflict(
            f"assessment {assessment_id!r} already exists in tenant {tenant!r}", field="id"
        ) from None
    return State(**values), version  # type: ignore[arg-type]


def lock_for_move(conn: Connection, tenant: str, assessment_id: str) -> tuple[State, int]:
    """What a move decides with: the assessment's state and its tenant's policy version, in one
    query that takes the tenant lock (policies/store.py) until commit, so the version is the one
    the move commits under. A state that another move changed meanwhile fails the move's
    compare-and-set. NotFound naming the tenant or the assessment."""
    row = _row(conn, tenant, assessment_id, _LOCKED_STATE)
    return _state(row), row.policy_version


def _row(
    conn: Connection, tenant: str, assessment_id: str, query: Select[Assessment, int] = _STATE
) -> Any:
    """The assessment's row with its tenant's policy version; NotFound naming the tenant or the
    assessment."""
    row = conn.execute(query, {"tenant": tenant, "id": assessment_id}).one_or_none()
    if row is None:
        require_version(conn, tenant)  # an unknown tenant says so rather than "no assessment"
        raise not_found(tenant, assessment_id)
    return row


@dataclass(frozen=True)
class Step:
    """One transition of an assessment, as its history shows it: `key_name` is the API key that
    made it, which proves who did it; `actor` is only whom its caller named (`key_name` is null
    on transitions recorded before the service kept the key)."""

    from_phase: str
    to_phase: str
    role: str
    actor: str
    key_name: str | None
    at: datetime
    action: str
    reason: str | None
    policy_version: int


@dataclass(frozen=True)
class StateWithHistory(State):
    """An assessment's state, who registered it, and every transition, oldest first: the API
    key that created it (`created_key_name`) and the actor its caller named (`created_actor`),
    both null for assessments registered before the service kept them."""

    created_key_name: str | None
    created_actor: str | None
    history: list[Step]


def get_with_history(conn: Connection, tenant: str, assessment_id: str) -> StateWithHistory:
    """The assessment's state, who registered it and its history; NotFound naming the tenant
    or the assessment."""
    row = _row(conn, tenant, assessment_id)
    return StateWithHistory(
        **vars(_state(row)),
        created_key_name=row.created_key_name,
        created_actor=row.created_actor,
        history=history(conn, tenant, assessment_id),
    )


def history(conn: Connection, tenant: str, assessment_id: str) -> list[Step]:
    """Every transition of the assessment, oldest first."""
    rows = conn.execute(
        select(Transition)
        .where(Transition.tenant == tenant, Transition.assessment_id == assessment_id)
        .order_by(Transition.id)
    )
    return [
        Step(
            t.from_phase,
            t.to_phase,
            t.role,
            t.actor,
            t.key_name,
            t.at,
            t.action,
            t.reason,
            t.policy_version,
        )
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
