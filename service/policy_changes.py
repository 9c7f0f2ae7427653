"""Changing a tenant's policy, in the caller's one transaction: the rows and the version (through
the seam's store, never the adapter's auto-save, which commits row by row and deletes across
tenants), one audit row per changed cell, and a feed event for every assessment whose visibility
to external systems the change flips -- so none of them can disagree with another."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection

from service import audit, decision_log, events
from service.db import Database
from service.errors import Conflict, InvalidRequest, ServiceError
from service.policies import PolicyEngine
from service.policies import store as rows
from service.workflows import IDENTIFIER_RULE, Cell, CellChange, is_identifier


@dataclass(frozen=True)
class WriteResult:
    """What a policy write did: the version now in force and the cells it changed."""

    version: int
    changes: tuple[CellChange, ...] = ()


def create_tenant(conn: Connection, tenant: str, cells: Iterable[Cell], actor: str) -> WriteResult:
    """A new tenant at version 1 with the given cells (Conflict if it exists)."""
    if not is_identifier(tenant):
        raise InvalidRequest(f"invalid tenant {tenant!r}: use {IDENTIFIER_RULE}", field="tenant")
    if rows.current_version(conn, tenant) is not None:
        raise Conflict(f"tenant {tenant!r} already exists", field="tenant")
    rows.insert_tenant(conn, tenant, actor)
    rows.insert_cells(conn, tenant, set(cells))
    return WriteResult(1)


def commit(
    db: Database,
    engine: PolicyEngine,
    tenant: str,
    cells: Iterable[Cell],
    *,
    actor: str,
    area: str | None = None,
    expected_version: int | None = None,
) -> WriteResult:
    """`save` in a transaction of its own, and its line in the decision log once committed or
    refused: what the admin form and `import` call."""
    try:
        with db.write() as conn:
            result = save(
                conn,
                engine,
                tenant,
                cells,
                actor=actor,
                area=area,
                expected_version=expected_version,
            )
    except ServiceError as error:
        decision_log.record_policy_write(tenant, actor, area, error)
        raise
    decision_log.record_policy_write(tenant, actor, area, (result.version, len(result.changes)))
    return result


def save(
    conn: Connection,
    engine: PolicyEngine,
    tenant: str,
    cells: Iterable[Cell],
    *,
    actor: str,
    area: str | None = None,
    expected_version: int | None = None,
) -> WriteResult:
    """Replace a tenant's rows (or one area's), bump the version, audit and feed the changes.

    Refuses with Conflict when `expected_version` is given and the store holds another one, so an
    edit made from a stale form never overwrites a newer one.
    """
    version = rows.lock_version(conn, tenant)
    if expected_version is not None and expected_version != version:
        raise Conflict(
            f"the policy of {tenant!r} changed (version {expected_version} -> {version}) "
            "since it was loaded; reload and apply your change again",
            field="version",
        )
    new = {c for c in cells if area is None or c[1] == area}
    old = set(rows.tenant_cells(conn, tenant, area))
    changes = engine.workflow.changes(old, new)
    if not changes:
        return WriteResult(version)
    version = rows.bump(conn, tenant, version, actor)
    rows.delete_cells(conn, tenant, old - new)
    rows.insert_cells(conn, tenant, new - old)
    audit.record_policy_changes(conn, tenant, version, actor, changes)
    events.on_policy_change(conn, engine.workflow, tenant, version, changes)
    engine.forget(tenant)
    return WriteResult(version, changes)
