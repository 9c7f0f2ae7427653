"""The delivery loop's statements: leasing endpoints, reading their head event, recording an
attempt's outcome, and the backlog by state.

At most one process delivers to an endpoint at a time. It takes the endpoint's lease with one
UPDATE whose WHERE says the lease is free (none, or expired), so of two processes racing for it
only one row update matches: on PostgreSQL the second waits for the first's commit and then
re-checks the condition on the new row; on SQLite writers are serialised. PostgreSQL picks the
candidates with FOR UPDATE OF webhook_endpoints SKIP LOCKED, so racing processes take different
endpoints instead of queueing on the same one. Each claim names its holder afresh (the process and
a claim number), so a thread finishing with an endpoint can never free the lease a later claim of
the same process took on it. Every outcome is recorded by an UPDATE that only
applies while this process still holds the lease and the head event is the one it sent, so a
process that lost its lease (it stalled past it) changes nothing.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, func, or_, select, text, update

from service.models import WEBHOOK_STATES, Event, PolicyVersion, WebhookEndpoint
from service.webhooks.endpoints import BACKLOG, Stored

E = WebhookEndpoint


@dataclass(frozen=True)
class Outcome:
    """What an attempt changes in its endpoint's row."""

    delivered: bool
    status: int | None
    error: str | None
    at: datetime
    attempts: int
    """The head event's failed attempts after this one (0 once delivered)."""
    next_attempt_at: datetime | None = None
    state: str = "active"
    state_reason: str | None = None
    lease_until: datetime | None = None
    """Kept until then after a success (the holder goes on with the next event); a failure
    frees the lease."""


def _free(now: datetime) -> Any:
    """The lease is nobody's, or its holder let it run out."""
    return or_(E.lease_owner.is_(None), E.lease_until < now)


def _last_seq() -> Any:
    """The endpoint's tenant's last event number (correlated)."""
    return (
        select(PolicyVersion.event_seq)
        .where(PolicyVersion.tenant == E.tenant)
        .correlate(E)
        .scalar_subquery()
    )


def _due(now: datetime, busy: Collection[int]) -> Any:
    """Active, behind its tenant's last event, its next attempt due, its lease free, and not
    one of `busy` (those the process's threads are still finishing with)."""
    return and_(
        E.id.not_in(busy),
        E.state == "active",
        E.delivered_seq < _last_seq(),
        or_(E.next_attempt_at.is_(None), E.next_attempt_at <= now),
        _free(now),
    )


def any_due(conn: Connection, now: datetime, busy: Collection[int] = ()) -> bool:
    """Whether an endpoint is due: a read, so an idle loop never takes a write lock to find
    there is nothing to send."""
    return conn.execute(select(E.id).where(_due(now, busy)).limit(1)).first() is not None


def claim(
    conn: Connection,
    owner: str,
    now: datetime,
    until: datetime,
    limit: int,
    busy: Collection[int] = (),
) -> list[int]:
    """Lease up to `limit` due endpoints (`_due`); their ids."""
    candidates = select(E.id).where(_due(now, busy))
    candidates = candidates.order_by(E.last_attempt_at.asc().nulls_first(), E.id).limit(limit)
    if conn.dialect.name == "postgresql":
        candidates = candidates.with_for_update(skip_locked=True, of=E)
    taken = conn.execute(
        update(E)
        .where(E.id.in_(candidates.scalar_subquery()), _free(now))
        .values(lease_owner=owner, lease_until=until)
        .returning(E.id)
    )
    return sorted(taken.scalars())


def head(
    conn: Connection, endpoint_id: int, holder: str, limit: int
) -> tuple[Stored, list[Row[Any]]] | None:
    """The endpoint, while this claim holds its lease and it is active, and its next events,
    up to `limit` in feed order (none yet: an empty list); None when the endpoint is no longer
    this claim's to send."""
    endpoint = conn.execute(
        select(*E.__table__.c).where(
            E.id == endpoint_id, E.lease_owner == holder, E.state == "active"
        )
    ).first()
    if endpoint is None:
        return None
    queued = conn.execute(
        select(Event)
        .where(Event.tenant == endpoint.tenant, Event.seq > endpoint.delivered_seq)
        .order_by(Event.seq)
        .limit(limit)
    ).all()
    return endpoint, list(queued)


def record(conn: Connection, endpoint_id: int, owner: str, seq: int, outcome: Outcome) -> bool:
    """Record the outcome of sending event `seq`, if this claim still holds the lease, the
    event is still the head and the endpoint is still active (an operator may have disabled or
    removed it meanwhile); whether it applied."""
    values: dict[str, Any] = dict(
        attempts=outcome.attempts,
        next_attempt_at=outcome.next_attempt_at,
        last_attempt_at=outcome.at,
        last_status=outcome.status,
        last_error=outcome.error,
        state=outcome.state,
        state_reason=outcome.state_reason,
    )
    if conn.dialect.name == "postgresql":
        # An outcome lost in a crash of the database is only an event sent again (at least
        # once holds), so its commit need not wait for the WAL to reach the disk (one flush
        # per delivered event; not measurable apart on this loaded machine).
        conn.execute(text("SET LOCAL synchronous_commit TO OFF"))
    if outcome.delivered:
        values.update(delivered_seq=seq, last_success_at=outcome.at)
    if outcome.lease_until is None:
        values.update(lease_owner=None, lease_until=None)
    else:
        values.update(lease_until=outcome.lease_until)
    applied = conn.execute(
        update(E)
        .where(
            E.id == endpoint_id,
            E.lease_owner == owner,
            E.delivered_seq == seq - 1,
            E.state == "active",
        )
        .values(**values)
    )
    return applied.rowcount == 1


def release(conn: Connection, holder: str, endpoint_id: int) -> None:
    """Free the endpoint's lease if `holder` still has it: another may take it at once."""
    conn.execute(
        update(E)
        .where(E.id == endpoint_id, E.lease_owner == holder)
        .values(lease_owner=None, lease_until=None)
    )


def release_all(conn: Connection, owner: str) -> int:
    """Free every lease a process holds (each of its claims names it `owner/<n>`); how many."""
    held = E.lease_owner.startswith(f"{owner}/", autoescape=True)
    return conn.execute(update(E).where(held).values(lease_owner=None, lease_until=None)).rowcount


def backlog(conn: Connection) -> dict[str, tuple[int, int]]:
    """Per endpoint state: how many endpoints, and how many events they have not had yet."""
    rows = conn.execute(
        select(
            E.state,
            func.count(),
            func.coalesce(func.sum(BACKLOG), 0),
        )
        .join(PolicyVersion, PolicyVersion.tenant == E.tenant)
        .group_by(E.state)
    )
    found = {state: (0, 0) for state in WEBHOOK_STATES}
    found.update({r[0]: (int(r[1]), int(r[2])) for r in rows})
    return found
