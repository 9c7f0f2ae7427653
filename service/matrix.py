"""One area's policy cells <-> the Workflow page's checkbox matrix, its checks and its wording.

Pure: no Flask, no store. Per phase the page shows one column per action of the workflow
definition that it knows (COLUMNS): which audiences see the information, which role is responsible
for advancing it, which staff roles may edit it and which may reopen it. What the page does not
show -- staff `view`, and actions it has no column for -- a submitted form keeps as it is, except
that a staff role given any other action in a phase also gets view there: nobody can edit, advance
or reopen what they cannot see.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from service.policy_rules import (
    AUDIENCE_ACTS,
    FINAL_ADVANCE,
    FIRST_REOPEN,
    NO_ADVANCE,
    TWO_ADVANCES,
    Finding,
    area_findings,
)
from service.workflows import (
    ADVANCE,
    EDIT,
    MOVES,
    REOPEN,
    VIEW,
    Area,
    Cell,
    CellChange,
    Phase,
    Workflow,
)

Tense = Literal["future", "past"]
Grant = tuple[str, str]  # (role, action) within one phase
UNKNOWN_ROLE = "WA306"  # a role the select names that the definition lacks (the checker's code)
UNKNOWN_FIELD = "form_field"  # a field the page never offers: the form's own refusal


@dataclass(frozen=True)
class Column:
    """A group of controls on each phase: the action it sets, for whom, and where it is absent."""

    action: str
    legend: str
    field: str  # the form field's prefix
    audiences: bool  # offered to the audiences (else to staff)
    select: bool  # one role chosen in a select (else a checkbox per role)
    absent_on: Literal["first", "final"] | None = None
    absent_note: str = ""  # what the page shows instead on such a phase

    def offered(self, area: Area, phase_id: str) -> bool:
        """Whether a phase has this column: no select on the final phase, no reopen on the first."""
        if self.absent_on == "final":
            return not area.is_final(phase_id)
        if self.absent_on == "first":
            return area.first_phase.id != phase_id
        return True


COLUMNS = (
    Column(VIEW, "Who can see it", VIEW, audiences=True, select=False),
    Column(
        ADVANCE,
        "Responsible for advancing",
        "responsible",
        audiences=False,
        select=True,
        absent_on="final",
        absent_note="None: the final phase. Nothing advances it.",
    ),
    Column(EDIT, "Staff who may edit", EDIT, audiences=False, select=False),
    Column(
        REOPEN,
        "Staff who may reopen (move back to the previous phase)",
        REOPEN,
        audiences=False,
        select=False,
        absent_on="first",
        absent_note="None: the first phase. There is no earlier phase to go back to.",
    ),
)


def columns(workflow: Workflow) -> tuple[Column, ...]:
    """The page's columns for the actions this workflow definition has, in page order."""
    return tuple(c for c in COLUMNS if c.action in workflow.actions)


@dataclass(frozen=True)
class PhaseRow:
    """One phase of the matrix: which role holds which action there."""

    phase: str
    grants: frozenset[Grant]

    def holders(self, action: str) -> frozenset[str]:
        """The roles allowed `action` in this phase."""
        return frozenset(role for role, held in self.grants if held == action)

    @property
    def responsible(self) -> str:
        """The role chosen in the responsible select ('' when none, the first when several)."""
        return min(self.holders(ADVANCE), default="")


@dataclass(frozen=True)
class AreaMatrix:
    """An area's matrix: one row per phase, in the area's order."""

    area: str
    rows: tuple[PhaseRow, ...]

    def row(self, phase: str) -> PhaseRow:
        """The row of one phase of the area."""
        return next(r for r in self.rows if r.phase == phase)


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
    mine = [(phase, (role, action)) for role, area_id, phase, action in cells if area_id == area.id]
    rows = tuple(
        PhaseRow(p.id, frozenset(grant for phase, grant in mine if phase == p.id))
        for p in area.phases
    )
    return AreaMatrix(area.id, rows)


def to_cells(matrix: AreaMatrix) -> frozenset[Cell]:
    """The policy cells a matrix stands for: what a save writes for its area."""
    return frozenset(
        (role, matrix.area, row.phase, action) for row in matrix.rows for role, action in row.grants
    )


# -- matrix <-> form fields ----------------------------------------------------------------------


def field_name(prefix: str, phase: str, role: str = "") -> str:
    """A form field's name: `<action>-<phase>-<role>` for a checkbox, `responsible-<phase>`."""
    return f"{prefix}-{phase}-{role}" if role else f"{prefix}-{phase}"


def form_fields(workflow: Workflow, matrix: AreaMatrix) -> list[tuple[str, str]]:
    """The (name, value) pairs a browser would send for this matrix (carried by the review)."""
    fields: list[tuple[str, str]] = []
    for row in matrix.rows:
        for column in columns(workflow):
            if column.select:
                fields.append((field_name(column.field, row.phase), row.responsible))
                continue
            roles = row.holders(column.action) & _readable(workflow, column)
            fields += [(field_name(column.field, row.phase, r), "on") for r in sorted(roles)]
    return fields


def from_form(
    workflow: Workflow, area: Area, form: Mapping[str, str], current: AreaMatrix
) -> tuple[AreaMatrix, list[Finding]]:
    """Read a submitted form into a matrix, keeping what the page does not show (module doc);
    the findings are fields the page never offers and roles the definition lacks."""
    problems = _unknown_fields(workflow, area, form)
    rows = []
    for phase in area.phases:
        kept = {g for g in current.row(phase.id).grants if not _on_page(workflow, g)}
        read, unknown = _read_phase(workflow, area, phase, form)
        problems += unknown
        rows.append(PhaseRow(phase.id, frozenset(_with_staff_view(workflow, kept | read))))
    return AreaMatrix(area.id, tuple(rows)), problems


def _read_phase(
    workflow: Workflow, area: Area, phase: Phase, form: Mapping[str, str]
) -> tuple[set[Grant], list[Finding]]:
    """The grants one phase's controls submit, and an unknown role chosen in its select."""
    grants: set[Grant] = set()
    problems: list[Finding] = []
    for column in columns(workflow):
        if column.select:
            chosen = form.get(field_name(column.field, phase.id), "")
            if chosen and chosen not in workflow.role_ids:
                cell = (chosen, area.id, phase.id, column.action)
                problems.append(Finding(UNKNOWN_ROLE, phase.id, (cell,)))
            if chosen in workflow.role_ids:
                grants.add((chosen, column.action))
            continue
        for role in _readable(workflow, column):
            if form.get(field_name(column.field, phase.id, role)):
                grants.add((role, column.action))
    return grants, problems


def _readable(workflow: Workflow, column: Column) -> frozenset[str]:
    """The roles whose checkboxes of a column a form may carry. Audiences' view only: staff view
    is not on the page. Other columns read any role, so that an audience given edit or reopen is
    refused with a message on its row rather than ignored."""
    if column.audiences:
        return frozenset(r.id for r in workflow.audiences)
    return workflow.role_ids


def _on_page(workflow: Workflow, grant: Grant) -> bool:
    """True for a grant the page's controls set (so the form, not the store, decides it)."""
    role, action = grant
    column = next((c for c in columns(workflow) if c.action == action), None)
    return column is not None and role in _readable(workflow, column)


def _with_staff_view(workflow: Workflow, grants: set[Grant]) -> set[Grant]:
    """The grants plus view for every staff role holding any other action there."""
    audiences = {r.id for r in workflow.audiences}
    acting = {role for role, action in grants if action != VIEW and role not in audiences}
    return grants | {(role, VIEW) for role in acting}


def _unknown_fields(workflow: Workflow, area: Area, form: Mapping[str, str]) -> list[Finding]:
    """Matrix-looking fields that name no phase of the area, or a role the page does not offer."""
    return [
        Finding(UNKNOWN_FIELD, None, value=name)
        for name in form
        if not _is_page_field(workflow, area, name)
    ]


def _is_page_field(workflow: Workflow, area: Area, name: str) -> bool:
    """True for a field the page can send (and for fields that are not matrix cells at all). A
    column this definition lacks (reopen, say) makes its fields unknown, never silently ignored."""
    prefix, _, rest = name.partition("-")
    phase, _, role = rest.partition("-")
    if prefix not in {c.field for c in COLUMNS} | set(workflow.actions):
        return True
    column = next((c for c in columns(workflow) if c.field == prefix), None)
    if column is None or area.phase(phase) is None:
        return False
    if column.select:
        return role == ""
    return role in _readable(workflow, column)


# -- checks ----------------------------------------------------------------------------------------


def validate(workflow: Workflow, area: Area, matrix: AreaMatrix) -> list[Finding]:
    """The policy rules (service.policy_rules) the matrix breaks: one responsible role per
    non-final phase, none on the final phase, no reopening the first phase, audiences only see."""
    return area_findings(workflow, area, to_cells(matrix))


def message(workflow: Workflow, found: Finding) -> str:
    """A finding in the words of the form (the checker words the same findings for files)."""
    if found.code in _MESSAGES:
        return _MESSAGES[found.code]
    role = found.cells[0][0] if found.cells else ""
    if found.code == TWO_ADVANCES:
        names = ", ".join(_role_label(workflow, c[0]) for c in sorted(found.cells))
        return f"Only one role can be responsible; this phase has {names}."
    if found.code == AUDIENCE_ACTS:
        cannot = _either([a for a in workflow.actions if a != VIEW])
        return f"{plural(_role_label(workflow, role))} can only see: they cannot {cannot}."
    if found.code == UNKNOWN_ROLE:
        return f"Unknown role {role!r}."
    return f"The form field {found.value!r} is not part of this page."


_MESSAGES = {
    NO_ADVANCE: "Choose the role responsible for advancing this phase.",
    FINAL_ADVANCE: "The final phase has no responsible role: nothing advances it.",
    FIRST_REOPEN: "The first phase cannot be reopened: there is no phase before it.",
}


def _either(words: list[str]) -> str:
    """'edit, advance or reopen'."""
    return " or ".join([", ".join(words[:-1]), words[-1]]) if len(words) > 1 else "".join(words)


# -- changes in plain words ------------------------------------------------------------------------


def describe(workflow: Workflow, cell: Cell, allowed: bool, tense: Tense = "future") -> str:
    """A cell's change as a sentence: 'Parents will be able to see Behaviour in the Organisation
    approval phase'; past tense for the audit page."""
    role, area_id, phase_id, action = cell
    who = plural(_role_label(workflow, role))
    area = workflow.area_by_id.get(area_id)
    what = area.label if area else area_id
    phase = area.phase(phase_id) if area else None
    where = _where(phase.label if phase else phase_id, "from" if action in MOVES else "in")
    if action == ADVANCE:
        return f"{who} {_ADVANCE_VERBS[tense, allowed]} {what} {where}"
    verb = _VERBS[tense, allowed].format(verb="see" if action == VIEW else action)
    back = _back_to(area, phase_id) if action == REOPEN and area else ""
    return f"{who} {verb} {what} {where}{back}"


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


def _back_to(area: Area, phase_id: str) -> str:
    """' (back to the Group registration phase)': where a reopen from this phase leads."""
    index = area.index(phase_id) if area.phase(phase_id) else 0
    if index == 0:
        return ""
    return f" ({_where(area.phases[index - 1].label, 'back to')})"


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


def impacts(
    workflow: Workflow, area: Area, found: Iterable[CellChange], counts: Mapping[str, int]
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
