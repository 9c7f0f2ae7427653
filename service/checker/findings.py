"""The policy rules (service.policy_rules) applied to the rows of a file: each finding reported at
the lines of the rows it concerns.

A file is checked as the whole policy of every tenant it names, tenant by tenant and area by area:
audiences only view (WA314); each non-final phase has exactly one `advance` row (WA311, WA312) and
the final phase none (WA313); an area's first phase has no `reopen` row (WA317).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from service.checker.problems import Problem
from service.checker.rows import ACTION, AREA, PHASE, ROLE, TENANT, PolicyLine
from service.policy_rules import (
    AUDIENCE_ACTS,
    FIRST_REOPEN,
    NO_ADVANCE,
    TWO_ADVANCES,
    Finding,
    area_findings,
)
from service.workflows import ADVANCE, Area, Cell, Workflow


@dataclass(frozen=True)
class TenantRows:
    """One tenant's rows of a file, and the row of each cell: where its findings are reported."""

    path: str
    tenant: str
    lines: Sequence[PolicyLine]
    at: Mapping[Cell, PolicyLine]

    @classmethod
    def of(cls, path: str, tenant: str, lines: Sequence[PolicyLine]) -> TenantRows:
        """A tenant's (duplicate-free) rows, indexed by the cell each allows."""
        return cls(path, tenant, lines, {line.row[1:]: line for line in lines})


def rule_problems(rows: Sequence[PolicyLine], path: str, workflow: Workflow) -> list[Problem]:
    """Every policy rule the rows break, per tenant and area, at the rows concerned."""
    by_tenant: dict[str, list[PolicyLine]] = {}
    for row in rows:
        by_tenant.setdefault(row.row[TENANT], []).append(row)
    return [
        problem
        for mine in (TenantRows.of(path, tenant, lines) for tenant, lines in by_tenant.items())
        for area in workflow.areas
        for found in area_findings(workflow, area, mine.at)
        for problem in _located(found, area, mine)
    ]


def _located(found: Finding, area: Area, mine: TenantRows) -> list[Problem]:
    """One finding as problems: one per row at fault, or one where the missing row belongs."""
    rows = sorted((mine.at[cell] for cell in found.cells), key=lambda r: r.line)
    where = f"tenant {mine.tenant!r}: {area.id} phase {found.phase!r}"
    if found.code == NO_ADVANCE:
        return [_missing_advance(area, str(found.phase), mine)]
    if found.code == TWO_ADVANCES:
        first = rows[0]
        message = (
            f"{where} is already advanced by {first.row[ROLE]} "
            f"(line {first.line}); exactly one role advances a phase"
        )
        return [Problem(mine.path, r.line, 1, found.code, message) for r in rows[1:]]
    if found.code == AUDIENCE_ACTS:
        return [
            Problem(mine.path, r.line, r.column(ACTION), found.code, _audience(r)) for r in rows
        ]
    if found.code == FIRST_REOPEN:
        message = (
            f"{where} is the area's first phase: there is no earlier phase to reopen it to; "
            "remove this row"
        )
        return [Problem(mine.path, r.line, r.column(PHASE), found.code, message) for r in rows]
    message = f"{where} is final: nothing advances it; remove this row"
    return [Problem(mine.path, r.line, 1, found.code, message) for r in rows]


def _audience(row: PolicyLine) -> str:
    """WA314's message: audiences only view."""
    return f"{row.row[ROLE]} is an audience; audiences may only view, never {row.row[ACTION]}"


def _missing_advance(area: Area, phase_id: str, mine: TenantRows) -> Problem:
    """WA311, at the tenant's first row in the area (else its first row), naming the fix."""
    in_area = [r for r in mine.lines if r.row[AREA] == area.id] or list(mine.lines)
    phase = area.phase(phase_id)
    role = (phase.responsible if phase else None) or "ROLE"
    row = f"p, {mine.tenant}, {role}, {area.id}, {phase_id}, {ADVANCE}"
    message = (
        f"tenant {mine.tenant!r}: {area.id} phase {phase_id!r} has no advance row, so it can "
        f"never complete; add exactly one, such as `{row}`"
    )
    return Problem(mine.path, in_area[0].line, 1, NO_ADVANCE, message)
