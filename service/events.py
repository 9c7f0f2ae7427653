"""The external-systems feed: every change after which an external system may newly see an
assessment, or may no longer see it, written in the same transaction as the change.

Events are numbered per tenant. A writer takes its numbers by incrementing the tenant's
`event_seq`, which locks that row until commit, so a tenant's events become visible strictly in
number order: a poller that asks for everything after its last number never misses one that
commits late, and never sees one twice.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from service.errors import InvalidRequest
from service.models import Assessment, Event, PolicyVersion, utcnow

EXTERNAL = "external_system"
MAX_PAGE = 1000


@dataclass(frozen=True)
class Change:
    """One assessment's visibility to external systems changed."""

    assessment_id: str
    area: str
    phase: str
    visible: bool


def on_transition(
    conn: Connection, tenant: str, change: Change, version: int, seen_before: bool
) -> None:
    """Record a transition that changes what external systems may see (and nothing otherwise)."""
    if change.visible != seen_before:
        append(conn, tenant, [change], cause="transition", version=version)


def on_policy_change(
    conn: Connection, tenant: str, version: int, phases: Sequence[tuple[str, str, bool]]
) -> None:
    """Record, per assessment now in a phase whose external visibility changed, one event."""
    changes: list[Change] = []
    for area, phase, visible in phases:
        ids = conn.execute(
            select(Assessment.id)
            .where(Assessment.tenant == tenant, Assessment.area == area, Assessment.phase == phase)
            .order_by(Assessment.id)
        ).scalars()
        changes += [Change(i, area, phase, visible) for i in ids]
    append(conn, tenant, changes, cause="policy", version=version)


def append(
    conn: Connection, tenant: str, changes: Sequence[Change], *, cause: str, version: int
) -> None:
    """Number the changes after the tenant's last event (locking its counter) and store them."""
    if not changes:
        return
    last = conn.execute(
        update(PolicyVersion)
        .where(PolicyVersion.tenant == tenant)
        .values(event_seq=PolicyVersion.event_seq + len(changes))
        .returning(PolicyVersion.event_seq)
    ).scalar_one()
    at = utcnow()
    conn.execute(
        insert(Event),
        [
            dict(
                tenant=tenant,
                seq=last - len(changes) + i + 1,
                assessment_id=c.assessment_id,
                area=c.area,
                phase=c.phase,
                visible=c.visible,
                cause=cause,
                policy_version=version,
                at=at,
            )
            for i, c in enumerate(changes)
        ],
    )


def page(conn: Connection, tenant: str, cursor: str | None, limit: int) -> dict[str, Any]:
    """The tenant's events after the cursor, oldest first, and the cursor to ask with next."""
    after = decode_cursor(tenant, cursor)
    rows = conn.execute(
        select(Event)
        .where(Event.tenant == tenant, Event.seq > after)
        .order_by(Event.seq)
        .limit(limit)
    ).all()
    last = rows[-1].seq if rows else after
    return {"events": [_event_json(r) for r in rows], "cursor": encode_cursor(tenant, last)}


def encode_cursor(tenant: str, seq: int) -> str:
    """An opaque cursor bound to its tenant."""
    return base64.urlsafe_b64encode(f"v1:{tenant}:{seq}".encode()).decode().rstrip("=")


def decode_cursor(tenant: str, cursor: str | None) -> int:
    """The event number a cursor stands for; 0 (the start) when there is none."""
    if cursor is None or cursor == "":
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, owner, seq = raw.split(":")
        if version != "v1" or owner != tenant or not seq.isdigit():
            raise ValueError(raw)
        return int(seq)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest(
            "after is not a cursor this feed gave for this tenant", field="after"
        ) from None


def _event_json(row: Any) -> dict[str, Any]:
    at: datetime = row.at
    return {
        "assessment": row.assessment_id,
        "area": row.area,
        "phase": row.phase,
        "visible": row.visible,
        "cause": row.cause,
        "policy_version": row.policy_version,
        "at": at.isoformat().replace("+00:00", "Z"),
    }
