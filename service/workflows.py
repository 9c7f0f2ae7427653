"""The workflow definition and the product's vocabulary: areas, their ordered phases, roles and
actions (read from policy/workflow.toml), the cell and row of a policy, and their display order;
and the rules a definition must keep (definition_problems), which the service enforces when it
loads one and the checker reports at their line and column.

The only module (with the definition file itself) that names an action or a role kind: every
other module imports these names. Which role ids exist is the definition file's business alone;
the one role the code must find -- the audience that receives the external-systems feed -- is
marked there with `receives_feed = true`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from service.limits import MAX_IDENTIFIER

IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*\Z")
IDENTIFIER_RULE = f"[a-z][a-z0-9_]*, at most {MAX_IDENTIFIER} characters"
"""What a fixed identifier (tenant, role, area, phase, action, username) may be, in words."""

VIEW, EDIT, ADVANCE, REOPEN = "view", "edit", "advance", "reopen"
"""The actions the service implements: see, change, move forward, move back (with a reason)."""
MOVES = (ADVANCE, REOPEN)
"""The actions that move an assessment out of its phase."""
BASE_ACTIONS = (VIEW, EDIT, ADVANCE)
ACTION_LISTS = (BASE_ACTIONS, (*BASE_ACTIONS, REOPEN))
"""The action lists a definition may declare, in this order: `reopen` is optional and last."""

RoleKind = Literal["audience", "staff"]
AUDIENCE: RoleKind = "audience"
STAFF: RoleKind = "staff"
ROLE_KINDS: tuple[RoleKind, ...] = (AUDIENCE, STAFF)
"""Audiences (learners, parents, external systems) only ever see; staff roles act."""

Cell = tuple[str, str, str, str]
"""(role, area, phase, action): one checkbox of a tenant's matrix."""
Row = tuple[str, str, str, str, str]
"""(tenant, role, area, phase, action): one casbin policy row."""
OrderKey = tuple[int, int, int, int, Cell]


@dataclass(frozen=True)
class CellChange:
    """One cell whose value a change of policy flips: the store's write, the audit, the
    admin's review, `import` and `diff` all speak of changes in these terms."""

    cell: Cell
    before: bool
    after: bool


class DefinitionError(ValueError):
    """The workflow definition file is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class Role:
    """A role the policy can name: an audience that only sees, or a staff role."""

    id: str
    label: str
    kind: RoleKind
    description: str = ""
    receives_feed: bool = False


@dataclass(frozen=True)
class Phase:
    """One phase of an area; `responsible` is the default role that advances it."""

    id: str
    label: str
    description: str
    responsible: str | None
    transition: str | None


@dataclass(frozen=True)
class Area:
    """A workflow area (Behaviour, Assessment) and its phases in order."""

    id: str
    label: str
    phases: tuple[Phase, ...]

    @property
    def first_phase(self) -> Phase:
        return self.phases[0]

    def phase(self, phase_id: str) -> Phase | None:
        return next((p for p in self.phases if p.id == phase_id), None)

    def index(self, phase_id: str) -> int:
        """Position of a phase in the area's order (ValueError if not in this area)."""
        return [p.id for p in self.phases].index(phase_id)

    def next_phase(self, phase_id: str) -> Phase | None:
        """The phase after `phase_id`, or None when it is the final phase."""
        i = self.index(phase_id)
        return self.phases[i + 1] if i + 1 < len(self.phases) else None

    def is_final(self, phase_id: str) -> bool:
        return self.phases[-1].id == phase_id


@dataclass(frozen=True)
class Workflow:
    """The whole definition: what identifiers exist and in which order phases run."""

    roles: tuple[Role, ...]
    areas: tuple[Area, ...]
    actions: tuple[str, ...]

    @cached_property
    def role_ids(self) -> frozenset[str]:
        return frozenset(r.id for r in self.roles)

    @cached_property
    def area_by_id(self) -> Mapping[str, Area]:
        return {a.id: a for a in self.areas}

    @property
    def audiences(self) -> tuple[Role, ...]:
        return tuple(r for r in self.roles if r.kind == AUDIENCE)

    @property
    def staff(self) -> tuple[Role, ...]:
        return tuple(r for r in self.roles if r.kind == STAFF)

    @cached_property
    def feed_role(self) -> str | None:
        """The audience whose `view` decides what the external-systems feed reports (if any)."""
        return next((r.id for r in self.roles if r.receives_feed), None)

    def visible_to_feed(self, cells: frozenset[Cell], area: str, phase: str) -> bool:
        """Whether the feed's audience may see an assessment of `area` in `phase`."""
        return self.feed_role is not None and (self.feed_role, area, phase, VIEW) in cells

    def role(self, role_id: str) -> Role | None:
        return next((r for r in self.roles if r.id == role_id), None)

    def cells(self) -> list[Cell]:
        """Every (role, area, phase, action) cell of the matrix, in display order."""
        return [
            (role.id, area.id, phase.id, action)
            for area in self.areas
            for phase in area.phases
            for role in self.roles
            for action in self.actions
        ]

    @cached_property
    def display_order(self) -> Callable[[Cell], OrderKey]:
        """A sort key for cells: area, phase, role and action in the definition's order; an id
        the definition does not know sorts after the known ones, then by the ids themselves."""
        areas = {a.id: i for i, a in enumerate(self.areas)}
        phases = {(a.id, p.id): i for a in self.areas for i, p in enumerate(a.phases)}
        roles = {r.id: i for i, r in enumerate(self.roles)}
        actions = {a: i for i, a in enumerate(self.actions)}
        unknown = len(self.roles) + len(self.areas) + len(self.actions) + len(phases) + 1

        def key(cell: Cell) -> OrderKey:
            role, area, phase, action = cell
            return (
                areas.get(area, unknown),
                phases.get((area, phase), unknown),
                roles.get(role, unknown),
                actions.get(action, unknown),
                cell,
            )

        return key

    def changes(
        self, before: frozenset[Cell] | set[Cell], after: frozenset[Cell] | set[Cell]
    ) -> tuple[CellChange, ...]:
        """Every cell that differs between two sets of cells, in display order."""
        return tuple(
            CellChange(c, c in before, c in after)
            for c in sorted(before ^ after, key=self.display_order)
        )


def load_workflow(path: Path) -> Workflow:
    """Read and validate a workflow definition file (TOML); DefinitionError says what is wrong."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise DefinitionError(f"{path}: {exc}") from exc
    try:
        return parse_workflow(data)
    except (KeyError, TypeError) as exc:
        raise DefinitionError(f"{path}: malformed definition ({exc!r})") from exc


def parse_workflow(data: Mapping[str, Any]) -> Workflow:
    """Build a Workflow from parsed TOML data, refusing anything the service cannot use."""
    workflow = build_workflow(data)
    problems = definition_problems(workflow)
    if problems:
        raise DefinitionError("; ".join(p.message for p in problems))
    return workflow


def build_workflow(data: Mapping[str, Any]) -> Workflow:
    """The definition's tables as a Workflow, its rules not yet checked (definition_problems)."""
    roles = tuple(
        Role(
            r["id"], r["label"], r["kind"], r.get("description", ""), r.get("receives_feed", False)
        )
        for r in data["roles"]
    )
    areas = tuple(
        Area(a["id"], a["label"], tuple(_phase(p) for p in a.get("phases", ())))
        for a in data["areas"]
    )
    return Workflow(roles=roles, areas=areas, actions=tuple(data["actions"]))


def _phase(p: Mapping[str, Any]) -> Phase:
    """One [[areas.phases]] table as a Phase."""
    return Phase(
        p["id"], p["label"], p.get("description", ""), p.get("responsible"), p.get("transition")
    )


# -- the rules of a definition (WA203-WA211, WA213) ------------------------------------------

TablePath = tuple[str | int, ...]
"""Where a table sits in the definition: (), ("roles", 0), ("areas", 1, "phases", 2)."""
Place = tuple[TablePath, str | None]
"""A table and one of its keys (None: the table itself)."""


@dataclass(frozen=True)
class DefinitionProblem:
    """A rule a definition breaks: where (table and key), which rule (code) and what to do;
    `first` is where a repeated id was first written, for the checker to name its line."""

    table: TablePath
    key: str | None
    code: str
    message: str
    first: Place | None = None


def definition_problems(workflow: Workflow) -> list[DefinitionProblem]:
    """Identifier syntax, unique ids, phases and their responsible roles, roles, feed, actions."""
    problems: list[DefinitionProblem] = []
    for kind, ids in _id_lists(workflow):
        problems += _id_problems(kind, ids)
    for i, area in enumerate(workflow.areas):
        problems += _phase_problems(workflow, area, i)
    problems += _role_problems(workflow) + _feed_problems(workflow)
    return problems + _action_problems(workflow)


Located = tuple[str, TablePath, str]
"""An id, the table it is written in and its key."""


def _id_lists(workflow: Workflow) -> list[tuple[str, list[Located]]]:
    """Each list of ids that must be unique, with where each id is written."""
    lists: list[tuple[str, list[Located]]] = [
        ("role", [(r.id, ("roles", i), "id") for i, r in enumerate(workflow.roles)]),
        ("area", [(a.id, ("areas", i), "id") for i, a in enumerate(workflow.areas)]),
        ("action", [(action, (), "actions") for action in workflow.actions]),
    ]
    for i, area in enumerate(workflow.areas):
        ids: list[Located] = [
            (p.id, ("areas", i, "phases", j), "id") for j, p in enumerate(area.phases)
        ]
        lists.append((f"area {area.id!r}: phase", ids))
    return lists


def _id_problems(kind: str, ids: list[Located]) -> list[DefinitionProblem]:
    """Ids that are not identifiers (WA203), and ids written a second time (WA204)."""
    problems: list[DefinitionProblem] = []
    first: dict[str, Place] = {}
    for ident, table, key in ids:
        if not is_identifier(ident):
            problems.append(DefinitionProblem(table, key, "WA203", not_identifier(kind, ident)))
        elif ident in first:
            message = f"{kind} {ident!r} is defined twice"
            problems.append(DefinitionProblem(table, key, "WA204", message, first[ident]))
        first.setdefault(ident, (table, key))
    return problems


def _phase_problems(workflow: Workflow, area: Area, i: int) -> list[DefinitionProblem]:
    """An area has phases; each non-final phase has a staff responsible role, the final none."""
    if not area.phases:
        return [DefinitionProblem(("areas", i), "id", "WA205", f"area {area.id!r} has no phases")]
    return [
        DefinitionProblem(("areas", i, "phases", j), "responsible", code, message)
        for j, phase in enumerate(area.phases)
        for code, message in [_responsible_problem(workflow, area, phase)]
        if code
    ]


def _responsible_problem(workflow: Workflow, area: Area, phase: Phase) -> tuple[str, str]:
    """The code and message of what is wrong with a phase's responsible role ('' when nothing)."""
    name = f"phase {phase.id!r} of area {area.id!r}"
    role = workflow.role(phase.responsible) if phase.responsible else None
    if area.is_final(phase.id):
        if phase.responsible is None:
            return "", ""
        return "WA209", f"{name} is final: nothing advances it, so remove `responsible`"
    if phase.responsible is None:
        return "WA209", f"{name} is not final: set `responsible` to the staff role that advances it"
    if role is None:
        known = ", ".join(r.id for r in workflow.roles)
        return "WA208", f"{name}: unknown responsible role {phase.responsible!r} (roles: {known})"
    if role.kind == AUDIENCE:
        return "WA210", f"{name}: {role.id!r} is an audience; audiences never advance a phase"
    return "", ""


def _role_problems(workflow: Workflow) -> list[DefinitionProblem]:
    """Each role's kind is audience or staff (WA206); the catalogue has one of each (WA207)."""
    problems = [
        DefinitionProblem(
            ("roles", i),
            "kind",
            "WA206",
            f"role {r.id!r}: kind must be {AUDIENCE} or {STAFF}, not {r.kind!r}",
        )
        for i, r in enumerate(workflow.roles)
        if r.kind not in ROLE_KINDS
    ]
    for kind, roles in ((AUDIENCE, workflow.audiences), (STAFF, workflow.staff)):
        if not roles:
            message = f"the role catalogue needs at least one role of kind {kind!r}"
            problems.append(DefinitionProblem(("roles", 0), None, "WA207", message))
    return problems


def _feed_problems(workflow: Workflow) -> list[DefinitionProblem]:
    """Only an audience receives the external-systems feed, and at most one role does (WA213)."""
    problems: list[DefinitionProblem] = []
    first: tuple[str, Place] | None = None
    for i, role in enumerate(workflow.roles):
        if not role.receives_feed:
            continue
        if role.kind != AUDIENCE:
            message = f"role {role.id!r} is not an audience: only an audience receives the feed"
            problems.append(DefinitionProblem(("roles", i), "receives_feed", "WA213", message))
        if first is not None:
            message = f"role {role.id!r}: only one role receives the feed; {first[0]!r} does"
            problems.append(
                DefinitionProblem(("roles", i), "receives_feed", "WA213", message, first[1])
            )
        first = first or (role.id, (("roles", i), "receives_feed"))
    return problems


def _action_problems(workflow: Workflow) -> list[DefinitionProblem]:
    """The actions are view, edit, advance in this order, optionally followed by reopen (WA211).

    A repeated action is WA204's to report, so repeats are ignored here.
    """
    if tuple(dict.fromkeys(workflow.actions)) in ACTION_LISTS:
        return []
    allowed = " or ".join(str(list(actions)) for actions in ACTION_LISTS)
    message = f"actions must be {allowed}, in this order; not {list(workflow.actions)}"
    return [DefinitionProblem((), "actions", "WA211", message)]


def not_identifier(what: str, value: object) -> str:
    """Why a value is not an identifier, suggesting the lowercase form when that is the fix."""
    if isinstance(value, str) and is_identifier(value.lower()):
        return f"{what} {value!r} must be lowercase: {value.lower()!r}"
    return (
        f"{what} {value!r} is not an identifier: lowercase letters, digits and _, "
        f"starting with a letter, at most {MAX_IDENTIFIER} characters"
    )


def is_identifier(value: object) -> bool:
    """True for a fixed identifier (IDENTIFIER_RULE)."""
    return isinstance(value, str) and len(value) <= MAX_IDENTIFIER and bool(IDENTIFIER.match(value))
