"""The rules policy rows must follow so every assessment can move through its workflow.

Per tenant and area, each non-final phase has exactly one `advance` row (WA311, WA312) and the
final phase none (WA313); a `reopen` row moves an assessment back one phase, so an area's first
phase has none (WA317).
"""

from __future__ import annotations

from collections.abc import Sequence

from service.checker.problems import Problem
from service.checker.rows import ACTION, AREA, PHASE, ROLE, TENANT, PolicyLine
from service.workflows import REOPEN, Area, Phase, Workflow


def advance_problems(rows: Sequence[PolicyLine], path: str, workflow: Workflow) -> list[Problem]:
    """Per tenant and area: one advance row on each non-final phase, none on the final one."""
    by_tenant: dict[str, list[PolicyLine]] = {}
    for row in rows:
        by_tenant.setdefault(row.row[TENANT], []).append(row)
    return [
        problem
        for tenant, tenant_rows in by_tenant.items()
        for area in workflow.areas
        for phase in area.phases
        for problem in _phase_advance_problems(tenant, tenant_rows, area, phase, path)
    ]


def _phase_advance_problems(
    tenant: str, rows: Sequence[PolicyLine], area: Area, phase: Phase, path: str
) -> list[Problem]:
    """The advance rows of one tenant's phase: exactly one, or none when the phase is final."""
    advancers = [r for r in rows if r.row[AREA:] == (area.id, phase.id, "advance")]
    name = f"tenant {tenant!r}: {area.id} phase {phase.id!r}"
    if area.is_final(phase.id):
        message = f"{name} is final: nothing advances it; remove this row"
        return [Problem(path, r.line, 1, "WA313", message) for r in advancers]
    if not advancers:
        return [_missing_advance(tenant, rows, area, phase, path)]
    first = advancers[0]
    message = (
        f"{name} is already advanced by {first.row[ROLE]} "
        f"(line {first.line}); exactly one role advances a phase"
    )
    return [Problem(path, r.line, 1, "WA312", message) for r in advancers[1:]]


def _missing_advance(
    tenant: str, rows: Sequence[PolicyLine], area: Area, phase: Phase, path: str
) -> Problem:
    """WA311, at the tenant's first row in the area (else its first row), naming the fix."""
    in_area = [r for r in rows if r.row[AREA] == area.id] or list(rows)
    role = phase.responsible or "ROLE"
    message = (
        f"tenant {tenant!r}: {area.id} phase {phase.id!r} has no advance row, so it can never "
        f"complete; add exactly one, such as `p, {tenant}, {role}, {area.id}, {phase.id}, advance`"
    )
    return Problem(path, in_area[0].line, 1, "WA311", message)


def reopen_problems(rows: Sequence[PolicyLine], path: str, workflow: Workflow) -> list[Problem]:
    """A reopen row moves an assessment back one phase; an area's first phase has none before it."""
    return [
        Problem(
            path,
            r.line,
            r.column(PHASE),
            "WA317",
            f"tenant {r.row[TENANT]!r}: {r.row[AREA]} phase {r.row[PHASE]!r} is the area's first "
            "phase: there is no earlier phase to reopen it to; remove this row",
        )
        for r in rows
        if r.row[ACTION] == REOPEN and _on_first_phase(r, workflow)
    ]


def _on_first_phase(row: PolicyLine, workflow: Workflow) -> bool:
    """True when the row names its area's first phase (the row's ids are known)."""
    return workflow.area_by_id[row.row[AREA]].first_phase.id == row.row[PHASE]
