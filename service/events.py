"""The external-systems feed: every change after which an external system may newly see an
assessment, or may no longer see it, written in the same transaction as the change.

Which audience the feed speaks for is the definition's: the role marked `receives_feed`. Events
are numbered per tenant. A writer takes its numbers by incrementing the tenant's `event_seq`
(policies/store.py), which locks that row until commit, so a tenant's events become visible
strictly in number order: a poller that asks for everything after its last number never misses
one that commits late, and never sees one twice.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, Row, insert, select

from service.errors import InvalidRequest
from service.limits import whole_number
from service.models import Assessment, Event, utcnow
from service.policies.store import take_event_numbers
from service.workflows import VIEW, Cell, CellChange, Workflow


class Placed(Protocol):
    """Where an assessment is: what the feed needs of its state."""

    @property
    def tenant(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def area(self) -> str: ...
    @property
    def phase(self) -> str: ...


@dataclass(frozen=True)
class VisibilityChange:
    """One assessment's visibility to external systems changed."""

    assessment_id: str
    area: str
    phase: str
    visible: bool


def on_create(
    conn: Connection, workflow: Workflow, cells: frozenset[Cell], version: int, state: Placed
) -> None:
    """A new assessment: an event when the feed's audience may see its first phase."""
    if workflow.visible_to_feed(cells, state.area, state.phase):
        change = VisibilityChange(state.id, state.area, state.phase, visible=True)
        append(conn, state.tenant, [change], cause="created", version=version)


def on_transition(
    conn: Connection,
    workflow: Workflow,
    cells: frozenset[Cell],
    version: int,
    before: Placed,
    to_phase: str,
) -> None:
    """A move: an event when it changes whether the feed's audience may see the assessment."""
    seen_before = workflow.visible_to_feed(cells, before.area, before.phase)
    seen_after = workflow.visible_to_feed(cells, before.area, to_phase)
    if seen_after != seen_before:
        change = VisibilityChange(before.id, before.area, to_phase, seen_after)
        append(conn, before.tenant, [change], cause="transition", version=version)


def on_policy_change(
    conn: Connection,
    workflow: Workflow,
    tenant: str,
    version: int,
    changes: Sequence[CellChange],
) -> None:
    """Record, per assessment now in a phase whose visibility to the feed changed, one event."""
    found: list[VisibilityChange] = []
    for change in changes:
        role, area, phase, action = change.cell
        if role != workflow.feed_role or action != VIEW:
            continue
        ids = conn.execute(
            select(Assessment.id)
            .where(Assessment.tenant == tenant, Assessment.area == area, Assessment.phase == phase)
            .order_by(Assessment.id)
        ).scalars()
        found += [VisibilityChange(i, area, phase, change.after) for i in ids]
    append(conn, tenant, found, cause="policy", version=version)


def append(
    conn: Connection,
    tenant: str,
    changes: Sequence[VisibilityChange],
    *,
    cause: str,
    version: int,
) -> None:
    """Number the changes after the tenant's last event (locking its counter) and store them."""
    if not changes:
        return
    last = take_event_numbers(conn, tenant, len(changes))
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


def event_id(tenant: str, seq: int) -> str:
    """An event's stable id, unique across tenants: what GET /events shows and what a webhook
    delivery carries as `webhook-id` on every attempt. Derived from the event's key (tenant and
    number), both of which never change, so it needs no column of its own."""
    return f"evt_{tenant}_{seq}"


@dataclass(frozen=True)
class Entry:
    """One event of the feed, as a page shows it."""

    id: str
    assessment: str
    area: str
    phase: str
    visible: bool
    cause: str
    policy_version: int
    at: datetime


def page(conn: Connection, tenant: str, cursor: str | None, limit: int) -> tuple[list[Entry], str]:
    """The tenant's events after the cursor, oldest first, and the cursor to ask with next."""
    after = decode_cursor(tenant, cursor)
    rows = conn.execute(
        select(Event)
        .where(Event.tenant == tenant, Event.seq > after)
        .order_by(Event.seq)
        .limit(limit)
    ).all()
    last = rows[-1].seq if rows else after
    return [entry(r) for r in rows], encode_cursor(tenant, last)


def entry(row: Event | Row[Any]) -> Entry:
    """A stored event as the feed shows it: the object GET /events lists and a webhook's `data`."""
    return Entry(
        event_id(row.tenant, row.seq),
        row.assessment_id,
        row.area,
        row.phase,
        row.visible,
        row.cause,
        row.policy_version,
        row.at,
    )


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
        number = whole_number(seq)  # ASCII digits a store's integer holds
        if version != "v1" or owner != tenant or number is None:
            raise ValueError(raw)
        return number
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest(
            "after is not a cursor this feed gave for this tenant", field="after"
        ) from None
