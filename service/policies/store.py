"""The policy rows and versions in the database: reads by tenant, and the pieces of a write.

Rows live in casbin-sqlalchemy-adapter's `casbin_rule` table (v0 is the tenant; a unique index
leads with it, so no query here ever reads another tenant's rows). Every write happens inside the
caller's one transaction; nothing here commits.

The tenant lock is the tenant's policy_versions row. Every write that can change what the feed's
audience may see -- a policy save (`lock_version`), a create (`lock_version`) and a move (a read
joining the row, `locking`) -- takes it before it reads the version it decides with and holds it
until commit: on PostgreSQL with SELECT ... FOR UPDATE, on SQLite by BEGIN IMMEDIATE, which has
locked the whole database already. So each of them decides with the version it commits under,
and a save's list of the assessments in a phase holds every move committed before it and none
still in flight. A new tenant's row is invisible to every other transaction until it commits.
Reads never take it: under MVCC a plain SELECT does not wait for a row lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVarTuple

from casbin_sqlalchemy_adapter import CasbinRule
from sqlalchemy import Connection, Select, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from service.db import Reading
from service.errors import Conflict, NotFound
from service.keys import LIVE, Pending
from service.models import PolicyVersion, utcnow
from service.workflows import Cell

DEFAULT_TENANT = "default"
"""The tenant a request that names none means, and the one `init` creates from policy/."""
RULES = CasbinRule.__table__
Columns = TypeVarTuple("Columns")
# Built once: the area/phase form of every decision reads the version.
_VERSION = select(PolicyVersion.version).where(PolicyVersion.tenant == bindparam("tenant"))
_VERSION_KEYED = _VERSION.add_columns(LIVE)
_VERSIONS = select(PolicyVersion.tenant, PolicyVersion.version).where(
    PolicyVersion.tenant.in_(bindparam("tenants", expanding=True))
)
_VERSIONS_KEYED = _VERSIONS.add_columns(LIVE)
"""The same, confirming a remembered key in the same statement (keys.Pending)."""


def current_version(conn: Connection, tenant: str) -> int | None:
    """The tenant's policy version, or None when the tenant does not exist."""
    return conn.execute(_VERSION, {"tenant": tenant}).scalar_one_or_none()


def require_version(conn: Connection, tenant: str) -> int:
    """The tenant's policy version; NotFound naming the tenant when it does not exist."""
    version = current_version(conn, tenant)
    if version is None:
        raise NotFound(f"unknown tenant {tenant!r}", field="tenant")
    return version


def insert_tenant(conn: Connection, tenant: str, actor: str) -> None:
    """A new tenant at policy version 1 (its rows are inserted separately); Conflict when it
    exists, also when a concurrent writer created it after the caller looked."""
    try:
        with conn.begin_nested():
            conn.execute(
                insert(PolicyVersion).values(
                    tenant=tenant, version=1, updated_at=utcnow(), updated_by=actor
                )
            )
    except IntegrityError:
        raise Conflict(f"tenant {tenant!r} already exists", field="tenant") from None


def tenant_cells(conn: Connection, tenant: str, area: str | None = None) -> list[Cell]:
    """A tenant's rows as cells, in a stable order (for diff, export and the matrix)."""
    query = select(RULES.c.v1, RULES.c.v2, RULES.c.v3, RULES.c.v4).where(
        RULES.c.ptype == "p", RULES.c.v0 == tenant
    )
    if area is not None:
        query = query.where(RULES.c.v2 == area)
    return sorted((r.v1, r.v2, r.v3, r.v4) for r in conn.execute(query))


def versions(
    reading: Reading, tenants: Iterable[str], pending: Pending | None = None
) -> dict[str, int]:
    """The policy version of each existing tenant among `tenants`, in one query (one tenant's:
    the statement built once, a decision's one statement). With `pending`, the same statement
    confirms the remembered key (keys.LIVE), whenever it finds a row."""
    wanted = set(tenants)
    if len(wanted) == 1:
        (tenant,) = wanted
        if pending is None:
            row = reading.one(_VERSION, {"tenant": tenant})
        else:
            row = reading.one(_VERSION_KEYED, {"tenant": tenant} | pending.params())
            if row is not None:
                pending.settle(bool(row[1]))
        return {} if row is None else {tenant: row[0]}
    if not wanted:
        return {}
    statement, params = _VERSIONS, {"tenants": list(wanted)}  # built once
    if pending is not None:
        statement, params = _VERSIONS_KEYED, params | pending.params()
    rows = reading.connection().execute(statement, params).all()
    if pending is not None and rows:
        pending.settle(bool(rows[0].key_live))
    return {r.tenant: r.version for r in rows}


def take_event_numbers(conn: Connection, tenant: str, count: int) -> int:
    """Reserve `count` feed numbers after the tenant's last one (locking its row until commit)
    and return the last reserved: events.py numbers its events from it."""
    last: int = conn.execute(
        update(PolicyVersion)
        .where(PolicyVersion.tenant == tenant)
        .values(event_seq=PolicyVersion.event_seq + count)
        .returning(PolicyVersion.event_seq)
    ).scalar_one()
    return last


def tenants(conn: Connection) -> list[str]:
    """Every tenant's id, in order."""
    return list(conn.execute(select(PolicyVersion.tenant).order_by(PolicyVersion.tenant)).scalars())


def lock_version(conn: Connection, tenant: str) -> int:
    """Read the tenant's version, taking the tenant lock until commit; NotFound naming the tenant
    when it does not exist."""
    version = conn.execute(
        select(PolicyVersion.version).where(PolicyVersion.tenant == tenant).with_for_update()
    ).scalar_one_or_none()
    if version is None:
        raise NotFound(f"unknown tenant {tenant!r}", field="tenant")
    return version


def locking(query: Select[*Columns]) -> Select[*Columns]:
    """`query`, which joins the tenant's policy_versions row, taking the tenant lock until commit:
    the version it returns is then the newest committed one, and stays it (on PostgreSQL, under
    READ COMMITTED, a statement that waited for the lock returns the row as its holder committed
    it; the rows it joins are as the statement first found them)."""
    return query.with_for_update(of=PolicyVersion)


def bump(conn: Connection, tenant: str, version: int, actor: str) -> int:
    """Compare-and-set the version one up; Conflict if another writer got there first."""
    result = conn.execute(
        update(PolicyVersion)
        .where(PolicyVersion.tenant == tenant, PolicyVersion.version == version)
        .values(version=version + 1, updated_at=utcnow(), updated_by=actor)
    )
    if result.rowcount != 1:
        raise Conflict(f"the policy of {tenant!r} was changed concurrently; try again")
    return version + 1


def insert_cells(conn: Connection, tenant: str, cells: set[Cell]) -> None:
    if cells:
        conn.execute(
            insert(RULES),
            [dict(ptype="p", v0=tenant, v1=r, v2=a, v3=p, v4=x) for r, a, p, x in sorted(cells)],
        )


def delete_cells(conn: Connection, tenant: str, cells: set[Cell]) -> None:
    for role, area, phase, action in cells:
        conn.execute(
            delete(RULES).where(
                RULES.c.ptype == "p",
                RULES.c.v0 == tenant,
                RULES.c.v1 == role,
                RULES.c.v2 == area,
                RULES.c.v3 == phase,
                RULES.c.v4 == action,
            )
        )


@dataclass(frozen=True)
class VersionStamp:
    """A tenant's policy version, and who made it and when (the Workflow page shows them)."""

    version: int
    updated_by: str
    updated_at: datetime


def version_stamp(conn: Connection, tenant: str) -> VersionStamp | None:
    """The tenant's version with its last editor and time; None when the tenant does not exist."""
    row = conn.execute(
        select(PolicyVersion.version, PolicyVersion.updated_by, PolicyVersion.updated_at).where(
            PolicyVersion.tenant == tenant
        )
    ).one_or_none()
    return None if row is None else VersionStamp(row.version, row.updated_by, row.updated_at)
