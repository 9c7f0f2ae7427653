"""The audit trail: who changed which policy cell, when, and from what to what."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, insert

from service.models import PolicyChange, utcnow
from service.workflows import CellChange


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
