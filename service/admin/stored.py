"""What the store holds for the Workflow page: a tenant's version, its last editor, an area's
cells, and how many assessments are in each phase."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import abort
from sqlalchemy import Connection

from service import assessments
from service.admin.context import workflow
from service.db import store
from service.policies.store import tenant_cells, version_stamp
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
    stamp = version_stamp(conn, tenant)
    if stamp is None:
        abort(404, f"There is no tenant {tenant!r}.")
    cells = tenant_cells(conn, tenant, area.id)
    return Stored(stamp.version, stamp.updated_by, stamp.updated_at, cells)


def load(tenant: str, area: Area) -> Stored:
    """What the store holds now, in a read transaction of its own."""
    with store().read() as conn:
        return read(conn, tenant, area)


def phase_counts(tenant: str, area: Area) -> dict[str, int]:
    """How many of the tenant's assessments of the area are in each phase right now."""
    with store().read() as conn:
        return assessments.phase_counts(conn, tenant, area.id)
