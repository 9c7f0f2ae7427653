"""Changing a tenant's policy: the seam writes the rows and the version, the audit records each
changed cell, and the feed hears of every assessment whose visibility to external systems the
change flips -- all in the caller's one transaction, so none of them can disagree."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection

from service import audit, events
from service.policies import PolicyEngine, WriteResult
from service.workflows import Cell


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
    """Replace a tenant's rows (or one area's), audit each changed cell and feed the changes."""
    result = engine.replace(
        conn, tenant, cells, actor=actor, area=area, expected_version=expected_version
    )
    audit.record_policy_changes(conn, tenant, result.version, actor, result.changes)
    events.on_policy_change(conn, engine.workflow, tenant, result.version, result.changes)
    return result
