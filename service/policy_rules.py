"""The rules a tenant's policy keeps in each area, so every assessment can move through its
workflow and audiences only ever see.

Pure, over cells: the checker locates each finding at the rows of a file (checker/findings.py),
the admin matrix words it for the form (matrix.py). Per phase, an audience holding anything but
`view` is reported (and that cell is left out of the other rules); the final phase has no
`advance` and every other phase exactly one; a `reopen` moves an assessment back one phase, so an
area's first phase has none. The codes are the checker's (checker/codes.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from service.workflows import ADVANCE, REOPEN, VIEW, Area, Cell, Phase, Workflow

NO_ADVANCE, TWO_ADVANCES, FINAL_ADVANCE, AUDIENCE_ACTS, FIRST_REOPEN = (
    "WA311",
    "WA312",
    "WA313",
    "WA314",
    "WA317",
)


@dataclass(frozen=True)
class Finding:
    """A rule a phase of a tenant's area breaks: which (code), where (phase: None for the whole
    area), the cells at fault in display order, and for what is not a cell the value at fault."""

    code: str
    phase: str | None
    cells: tuple[Cell, ...] = ()
    value: str = ""


def area_findings(workflow: Workflow, area: Area, cells: Iterable[Cell]) -> list[Finding]:
    """Every rule a tenant's cells break in one area, phase by phase in the area's order."""
    mine = sorted((c for c in cells if c[1] == area.id), key=workflow.display_order)
    audiences = [r.id for r in workflow.audiences]
    findings: list[Finding] = []
    for phase in area.phases:
        here = [c for c in mine if c[2] == phase.id]
        acting = [c for c in here if c[0] in audiences and c[3] != VIEW]
        findings += _move_findings(area, phase, [c for c in here if c not in acting])
        findings += [
            Finding(AUDIENCE_ACTS, phase.id, tuple(c for c in acting if c[0] == role))
            for role in audiences
            if any(c[0] == role for c in acting)
        ]
    return findings


def _move_findings(area: Area, phase: Phase, cells: list[Cell]) -> list[Finding]:
    """No advance on the final phase, no reopen on the first, exactly one advance elsewhere."""
    advancers = tuple(c for c in cells if c[3] == ADVANCE)
    reopeners = tuple(c for c in cells if c[3] == REOPEN)
    findings: list[Finding] = []
    if area.is_final(phase.id) and advancers:
        findings.append(Finding(FINAL_ADVANCE, phase.id, advancers))
    if area.first_phase.id == phase.id and reopeners:
        findings.append(Finding(FIRST_REOPEN, phase.id, reopeners))
    if not area.is_final(phase.id) and len(advancers) != 1:
        findings.append(Finding(TWO_ADVANCES if advancers else NO_ADVANCE, phase.id, advancers))
    return findings
