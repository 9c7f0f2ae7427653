"""The audit trail: who changed which policy cell or moved which assessment, when.

Policy changes are written here, one row per changed cell in the write's own transaction
(policy_changes.save); transitions are written by each move (transitions.py). `history` merges
both into one trail, newest first. Since every version a write makes has its changed cells here,
`policy_at` can rebuild an older version's cells from those in force (`policy_edits_after` reads
what it undoes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    Connection,
    Select,
    String,
    and_,
    cast,
    insert,
    literal,
    null,
    select,
    union_all,
)

from service.models import ApiKey, Assessment, PolicyChange, Transition, utcnow
from service.workflows import Cell, CellChange

Kind = Literal["policy", "transition"]


@dataclass(frozen=True)
class Entry:
    """One line of the trail: a changed policy cell (`after` its new value) or an assessment
    moved from `phase` to `to_phase` (with `assessment_id`, for a reopen the `reason`, and the
    API key that moved it beside the actor its caller named: `key_name` and `key_prefix`, the
    prefix `keys list` shows, since names are unique only among active keys; None for a policy
    change and for moves recorded before the key was kept)."""

    kind: Kind
    id: int
    at: datetime
    actor: str
    key_name: str | None
    key_prefix: str | None
    area: str
    phase: str
    to_phase: str | None
    role: str
    action: str
    after: bool
    version: int
    assessment_id: str | None
    reason: str | None


def history(
    conn: Connection,
    tenant: str,
    *,
    area: str | None = None,
    person: str | None = None,
    limit: int,
    offset: int = 0,
) -> list[Entry]:
    """The tenant's trail newest first, of one area and one actor when given, one slice of it."""
    merged = union_all(
        _policy_changes(tenant, area, person), _transitions(tenant, area, person)
    ).subquery()
    query = (
        select(merged)
        .order_by(merged.c.at.desc(), merged.c.kind, merged.c.id.desc())
        .limit(limit)
        .offset(offset)
    )
    return [Entry(**row._asdict()) for row in conn.execute(query)]


def _policy_changes(tenant: str, area: str | None, person: str | None) -> Select[*tuple[Any, ...]]:
    """Changed cells, in the columns both logs share."""
    query = select(
        literal("policy").label("kind"),
        PolicyChange.id,
        PolicyChange.at,
        PolicyChange.actor,
        cast(null(), String).label("key_name"),
        cast(null(), String).label("key_prefix"),
        PolicyChange.area,
        PolicyChange.phase,
        cast(null(), String).label("to_phase"),
        PolicyChange.role,
        PolicyChange.action,
        PolicyChange.after,
        PolicyChange.version,
        cast(null(), String).label("assessment_id"),
        cast(null(), String).label("reason"),
    ).where(PolicyChange.tenant == tenant)
    if area:
        query = query.where(PolicyChange.area == area)
    if person:
        query = query.where(PolicyChange.actor == person)
    return query


def _transitions(tenant: str, area: str | None, person: str | None) -> Select[*tuple[Any, ...]]:
    """Phase changes of assessments (their area read from the assessment), same columns."""
    query = (
        select(
            literal("transition").label("kind"),
            Transition.id,
            Transition.at,
            Transition.actor,
            Transition.key_name,
            ApiKey.prefix.label("key_prefix"),
            Assessment.area,
            Transition.from_phase.label("phase"),
            Transition.to_phase,
            Transition.role,
            Transition.action,
            literal(True).label("after"),
            Transition.policy_version.label("version"),
            Transition.assessment_id,
            Transition.reason,
        )
        .join(
            Assessment,
            and_(Assessment.tenant == Transition.tenant, Assessment.id == Transition.assessment_id),
        )
        .outerjoin(ApiKey, ApiKey.id == Transition.key_id)
        .where(Transition.tenant == tenant)
    )
    if area:
        query = query.where(Assessment.area == area)
    if person:
        query = query.where(Transition.actor == person)
    return query


def record_policy_changes(
    conn: Connection, tenant: str, version: int, actor: str, changes: Sequence[CellChange]
) -> None:
    """One audit row per changed cell of a policy write, in the write's transaction."""
    if not changes:
        return
    at = utcnow()
    conn.execute(
        insert(PolicyChange),
        [
            dict(
                tenant=tenant,
                version=version,
                actor=actor,
                at=at,
                role=c.cell[0],
                area=c.cell[1],
                phase=c.cell[2],
                action=c.cell[3],
                before=c.before,
                after=c.after,
            )
            for c in changes
        ],
    )


@dataclass(frozen=True)
class PolicyEdit:
    """One audited cell of a policy write: the version the write made, who made it and when."""

    version: int
    actor: str
    at: datetime
    change: CellChange


class HistoryGap(ValueError):
    """The audit trail cannot rebuild the policy at a version; the message says why."""


def policy_edits_after(conn: Connection, tenant: str, version: int) -> list[PolicyEdit]:
    """Every audited cell change of the tenant made after `version`, oldest first (one query)."""
    query = (
        select(
            PolicyChange.version,
            PolicyChange.actor,
            PolicyChange.at,
            PolicyChange.role,
            PolicyChange.area,
            PolicyChange.phase,
            PolicyChange.action,
            PolicyChange.before,
            PolicyChange.after,
        )
        .where(PolicyChange.tenant == tenant, PolicyChange.version > version)
        .order_by(PolicyChange.version, PolicyChange.id)
    )
    return [
        PolicyEdit(
            row.version,
            row.actor,
            row.at,
            CellChange((row.role, row.area, row.phase, row.action), row.before, row.after),
        )
        for row in conn.execute(query)
    ]


def policy_at(
    cells_now: Iterable[Cell],
    version_now: int,
    edits: Sequence[PolicyEdit],
    version: int,
    area: str | None = None,
) -> frozenset[Cell]:
    """The cells in force at `version`, rebuilt from those in force at `version_now` (of one area,
    when given) by undoing, newest first, each edit after it. Pure. HistoryGap when it cannot be
    done: no such version, a version the trail has no record of (history older than the audit),
    or an edit the cells in force contradict (rows changed behind the audit's back)."""
    _check_reachable(version_now, edits, version)
    cells = set(cells_now)
    undo = [e for e in edits if e.version > version and area in (None, e.change.cell[1])]
    for edit in sorted(undo, key=lambda e: e.version, reverse=True):
        cell, before, after = edit.change.cell, edit.change.before, edit.change.after
        if (cell in cells) != after:
            raise HistoryGap(
                f"the policy in force does not match the audit trail of version {edit.version}"
            )
        if before:
            cells.add(cell)
        else:
            cells.discard(cell)
    return frozenset(cells)


def _check_reachable(version_now: int, edits: Sequence[PolicyEdit], version: int) -> None:
    """HistoryGap unless `version` is one the tenant had and the trail records every later one
    (every write that makes a version audits at least one cell)."""
    if version < 1 or version > version_now:
        raise HistoryGap(
            f"version {version} is not one this policy has had (it is at version {version_now})"
        )
    recorded = {e.version for e in edits if e.version > version}
    if max(recorded, default=version) > version_now:
        raise HistoryGap(f"the audit trail records a version newer than version {version_now}")
    missing = sorted(set(range(version + 1, version_now + 1)) - recorded)
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise HistoryGap(
            f"the audit trail has no record of version {missing[0]}{more}, so version {version} "
            "cannot be rebuilt"
        )
