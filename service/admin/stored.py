"""What the store holds for the Workflow page: a tenant's version, its last editor, an area's
cells, and how many assessments are in each phase."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import abort
from sqlalchemy import Connection, func, select

from service.admin.context import workflow
from service.db import store
from service.models import Assessment, PolicyVersion
from service.policies.store import tenant_cells
from service.workflows import Area, Cell


@dataclass(frozen=True)
class Stored:
    """What the store holds for a tenant's area: version, who last changed it, the cells."""

    version: int
    updated_by: str
    updated_at: datetime
    cells: list[Cell]


def area_or_404(area_id: str) -> Area:
    """The area named in the URL; 404 for any other."""
    area = workflow().area_by_id.get(area_id)
    if area is None:
        abort(404, f"There is no workflow area {area_id!r}.")
    return area


def read(conn: Connection, tenant: str, area: Area) -> Stored:
    """The tenant's version row and the area's cells, in the caller's transaction."""
    row = conn.execute(
        select(PolicyVersion.version, PolicyVersion.updated_by, PolicyVersion.updated_at).where(
            PolicyVersion.tenant == tenant
        )
    ).one_or_none()
    if row is None:
        abort(404, f"There is no tenant {tenant!r}.")
    return Stored(row.version, row.updated_by, row.updated_at, tenant_cells(conn, tenant, area.id))


def load(tenant: str, area: Area) -> Stored:
    """What the store holds now, in a read transaction of its own."""
    with store().read() as conn:
        return read(conn, tenant, area)


def phase_counts(tenant: str, area: Area) -> dict[str, int]:
    """How many of the tenant's assessments of the area are in each phase right now."""
    with store().read() as conn:
        rows = conn.execute(
            select(Assessment.phase, func.count())
            .where(Assessment.tenant == tenant, Assessment.area == area.id)
            .group_by(Assessment.phase)
        )
        return {phase: count for phase, count in rows}
