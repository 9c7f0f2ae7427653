"""One area's policy cells <-> the Workflow page's checkbox matrix, its checks and its wording.

Pure: no Flask, no store. Per phase the page shows which audiences see the information, which
role is responsible for advancing it and which staff roles may edit it. Staff `view` cells are
not on the page, so a submitted form keeps them as they are -- except that a staff role given
edit or advance in a phase also gets view there: nobody can edit or advance what they cannot see.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from service.policies import Cell
from service.workflows import Area, Phase, Workflow

VIEW, EDIT, ADVANCE = "view", "edit", "advance"
Tense = Literal["future", "past"]


@dataclass(frozen=True)
class PhaseRow:
    """One phase of the matrix: who sees it, who may edit it, who may advance it."""

    phase: str
    viewers: frozenset[str]
    editors: frozenset[str]
    advancers: frozenset[str]

    @property
    def responsible(self) -> str:
        """The role chosen in the responsible select ('' when none, the first when several)."""
        return min(self.advancers, default="")


@dataclass(frozen=True)
class AreaMatrix:
    """An area's matrix: one row per phase, in the area's order."""

    area: str
    rows: tuple[PhaseRow, ...]

    def row(self, phase: str) -> PhaseRow:
        """The row of one phase of the area."""
        return next(r for r in self.rows if r.phase == phase)


@dataclass(frozen=True)
class Problem:
    """Why a submitted matrix is refused; `phase` says which row, None for the whole form."""

    phase: str | None
    message: str


@dataclass(frozen=True)
class Change:
    """One cell a save would change, with its plain-words sentence."""

    cell: Cell
    after: bool
    sentence: str


@dataclass(frozen=True)
class Visibility:
    """What a change does to one audience in one phase: gains or loses sight of n assessments."""

    audience: str
    change: Literal["gains", "loses", "unchanged"]
    assessments: int


@dataclass(frozen=True)
class Impact:
    """A phase whose audience visibility changes, the assessments in it now, and per audience."""

    phase: str
    label: str
    assessments: int
    audiences: tuple[Visibility, ...]


# -- cells <-> matrix ----------------------------------------------------------------------------


def from_cells(area: Area, cells: Iterable[Cell]) -> AreaMatrix:
    """The matrix of an area from a tenant's cells (cells of other areas are ignored)."""
    mine = {(role, phase, action) for role, area_id, phase, action in cells if area_id == area.id}

    def holders(phase: str, action: str) -> frozenset[str]:
        """The roles allowed `action` in `phase`."""
        return frozenset(r for r, p, a in mine if p == phase and a == action)

    rows = tuple(
        PhaseRow(p.id, holders(p.id, VIEW), holders(p.id, EDIT), holders(p.id, ADVANCE))
        for p in area.phases
    )
    return AreaMatrix(area.id, rows)


def to_cells(matrix: AreaMatrix) -> frozenset[Cell]:
    """The policy cells a matrix stands for: what a save writes for its area."""
    return frozenset(
        (role, matrix.area, row.phase, action)
        for row in matrix.rows
        for action, roles in ((VIEW, row.viewers), (EDIT, row.editors), (ADVANCE, row.advancers))
        for role in roles
    )


# -- matrix <-> form fields ----------------------------------------------------------------------


def field_name(action: str, phase: str, role: str = "") -> str:
    """A form field's name: `view-<phase>-<role>`, `edit-<phase>-<role>`, `responsible-<phase>`."""
    return f"{action}-{phase}-{role}" if role else f"{action}-{phase}"


def form_fields(workflow: Workflow, matrix: AreaMatrix) -> list[tuple[str, str]]:
    """The (name, value) pairs a browser would send for this matrix (carried by the review)."""
    audiences = {r.id for r in workflow.audiences}
    fields: list[tuple[str, str]] = []
    for row in matrix.rows:
        fields += [(field_name(VIEW, row.phase, r), "on") for r in sorted(row.viewers & audiences)]
        fields.append((field_name("responsible", row.phase), row.responsible))
        fields += [(field_name(EDIT, row.phase, r), "on") for r in sorted(row.editors)]
    return fields


def from_form(
    workflow: Workflow, area: Area, form: Mapping[str, str], current: AreaMatrix
) -> tuple[AreaMatrix, list[Problem]]:
    """Read a submitted form into a matrix, keeping staff view from `current` (see module doc)."""
    audiences = {r.id for r in workflow.audiences}
    problems = _unknown_fields(workflow, area, form)
    rows = []
    for phase in area.phases:
        kept = current.row(phase.id).viewers - audiences
        seen = {r for r in audiences if form.get(field_name(VIEW, phase.id, r))}
        editors = {r.id for r in workflow.roles if form.get(field_name(EDIT, phase.id, r.id))}
        chosen = form.get(field_name("responsible", phase.id), "")
        if chosen and chosen not in workflow.role_ids:
            problems.append(Problem(phase.id, f"Unknown role {chosen!r}."))
        advancers = {chosen} & workflow.role_ids
        viewers = seen | kept | ((editors | advancers) - audiences)
        rows.append(
            PhaseRow(phase.id, frozenset(viewers), frozenset(editors), frozenset(advancers))
        )
    return AreaMatrix(area.id, tuple(rows)), problems


def _unknown_fields(workflow: Workflow, area: Area, form: Mapping[str, str]) -> list[Problem]:
    """Matrix-looking fields that name no phase of the area, or a role the page does not offer."""
    return [
        Problem(None, f"The form field {name!r} is not part of this page.")
        for name in form
        if not _is_page_field(workflow, area, name)
    ]


def _is_page_field(workflow: Workflow, area: Area, name: str) -> bool:
    """True for a field the page can send (and for fields that are not matrix cells at all)."""
    kind, _, rest = name.partition("-")
    phase, _, role = rest.partition("-")
    if kind not in (VIEW, EDIT, "responsible"):
        return True
    if area.phase(phase) is None:
        return False
    if kind == "responsible":
        return role == ""
    offered = {r.id for r in workflow.audiences} if kind == VIEW else workflow.role_ids
    return role in offered


# -- checks ----------------------------------------------------------------------------------------


def validate(workflow: Workflow, area: Area, matrix: AreaMatrix) -> list[Problem]:
    """The rules of the source page: one responsible role per non-final phase, none on the final
    phase, and audiences only ever see."""
    problems: list[Problem] = []
    for phase in area.phases:
        row = matrix.row(phase.id)
        problems += _responsible_problems(workflow, area, phase, row)
        for role in sorted((row.editors | row.advancers) & {r.id for r in workflow.audiences}):
            who = plural(_role_label(workflow, role))
            problems.append(Problem(phase.id, f"{who} can only see: they cannot edit or advance."))
    return problems


def _responsible_problems(
    workflow: Workflow, area: Area, phase: Phase, row: PhaseRow
) -> list[Problem]:
    """Exactly one responsible role on a non-final phase, none on the final one."""
    if area.is_final(phase.id):
        if row.advancers:
            return [
                Problem(phase.id, "The final phase has no responsible role: nothing advances it.")
            ]
        return []
    if not row.advancers:
        return [Problem(phase.id, "Choose the role responsible for advancing this phase.")]
    if len(row.advancers) > 1:
        names = ", ".join(_role_label(workflow, r) for r in sorted(row.advancers))
        return [Problem(phase.id, f"Only one role can be responsible; this phase has {names}.")]
    return []


# -- changes in plain words ------------------------------------------------------------------------


def changes(workflow: Workflow, before: Iterable[Cell], after: Iterable[Cell]) -> list[Change]:
    """Every cell that differs, in page order (phase, then role, then action), described."""
    old, new = set(before), set(after)
    return [
        Change(cell, cell in new, describe(workflow, cell, cell in new))
        for cell in sorted(old ^ new, key=lambda c: _order(workflow, c))
    ]


def describe(workflow: Workflow, cell: Cell, allowed: bool, tense: Tense = "future") -> str:
    """A cell's change as a sentence: 'Parents will be able to see Behaviour in the Organisation
    approval phase'; past tense for the audit page."""
    role, area_id, phase_id, action = cell
    who = plural(_role_label(workflow, role))
    area = workflow.area_by_id.get(area_id)
    what = area.label if area else area_id
    phase = area.phase(phase_id) if area else None
    where = _where(phase.label if phase else phase_id, "from" if action == ADVANCE else "in")
    if action == ADVANCE:
        verb = _ADVANCE_VERBS[tense, allowed]
        return f"{who} {verb} {what} {where}"
    verb = _VERBS[tense, allowed].format(verb="see" if action == VIEW else action)
    return f"{who} {verb} {what} {where}"


_VERBS = {
    ("future", True): "will be able to {verb}",
    ("future", False): "will no longer be able to {verb}",
    ("past", True): "were allowed to {verb}",
    ("past", False): "were no longer allowed to {verb}",
}
_ADVANCE_VERBS = {
    ("future", True): "will be responsible for advancing",
    ("future", False): "will no longer be responsible for advancing",
    ("past", True): "were made responsible for advancing",
    ("past", False): "were no longer responsible for advancing",
}


def _where(label: str, preposition: str) -> str:
    """'in the Organisation approval phase', or 'in the phase “Term assessment completed”'."""
    if label.lower().endswith(" phase"):
        return f"{preposition} the {label}"
    return f"{preposition} the phase “{label}”"


def plural(label: str) -> str:
    """'Parent' -> 'Parents'; labels already plural ('External systems') stay as they are."""
    return label if label.endswith("s") else f"{label}s"


def _role_label(workflow: Workflow, role_id: str) -> str:
    """A role's label, or its id when the definition does not know it."""
    role = workflow.role(role_id)
    return role.label if role else role_id


def _order(workflow: Workflow, cell: Cell) -> tuple[int, int, int, str]:
    """Page order of a cell; cells the definition does not know come last."""
    role, area_id, phase_id, action = cell
    area = workflow.area_by_id.get(area_id)
    phases = [p.id for p in area.phases] if area else []
    roles = [r.id for r in workflow.roles]
    return (
        phases.index(phase_id) if phase_id in phases else len(phases),
        roles.index(role) if role in roles else len(roles),
        workflow.actions.index(action) if action in workflow.actions else len(workflow.actions),
        f"{phase_id}/{role}/{action}",
    )


def impacts(
    workflow: Workflow, area: Area, found: Iterable[Change], counts: Mapping[str, int]
) -> list[Impact]:
    """For each phase whose audience visibility changes: how many of the assessments in it right
    now each audience would gain or lose sight of."""
    gained: dict[str, dict[str, bool]] = {}
    audiences = {r.id for r in workflow.audiences}
    for change in found:
        role, _, phase, action = change.cell
        if action == VIEW and role in audiences:
            gained.setdefault(phase, {})[role] = change.after
    return [
        Impact(
            p.id,
            p.label,
            counts.get(p.id, 0),
            _visibility(workflow, gained[p.id], counts.get(p.id, 0)),
        )
        for p in area.phases
        if p.id in gained
    ]


def _visibility(
    workflow: Workflow, gained: Mapping[str, bool], count: int
) -> tuple[Visibility, ...]:
    """One phase's effect per audience, in the page's audience order."""
    return tuple(
        Visibility(
            r.label,
            "unchanged" if r.id not in gained else "gains" if gained[r.id] else "loses",
            count if r.id in gained else 0,
        )
        for r in workflow.audiences
    )
