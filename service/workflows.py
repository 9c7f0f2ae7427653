"""The workflow definition and the product's vocabulary: areas, their ordered phases, roles and
actions (read from policy/workflow.toml), the cell and row of a policy, and their display order.

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
    roles = tuple(
        Role(
            r["id"], r["label"], r["kind"], r.get("description", ""), r.get("receives_feed", False)
        )
        for r in data["roles"]
    )
    areas = tuple(
        Area(
            a["id"],
            a["label"],
            tuple(
                Phase(
                    p["id"],
                    p["label"],
                    p.get("description", ""),
                    p.get("responsible"),
                    p.get("transition"),
                )
                for p in a["phases"]
            ),
        )
        for a in data["areas"]
    )
    workflow = Workflow(roles=roles, areas=areas, actions=tuple(data["actions"]))
    problems = definition_problems(workflow)
    if problems:
        raise DefinitionError("; ".join(problems))
    return workflow


def definition_problems(workflow: Workflow) -> list[str]:
    """Structural problems of a definition: bad or duplicate ids, empty areas, unknown roles."""
    problems: list[str] = []
    ids = [r.id for r in workflow.roles] + [a.id for a in workflow.areas] + list(workflow.actions)
    ids += [p.id for a in workflow.areas for p in a.phases]
    problems += [f"invalid identifier {i!r}" for i in ids if not is_identifier(i)]
    for kind, seq in (
        ("role", [r.id for r in workflow.roles]),
        ("area", [a.id for a in workflow.areas]),
        ("action", list(workflow.actions)),
    ):
        problems += [
            f"duplicate {kind} {i!r}" for i in sorted({i for i in seq if seq.count(i) > 1})
        ]
    for area in workflow.areas:
        phase_ids = [p.id for p in area.phases]
        if not phase_ids:
            problems.append(f"area {area.id!r} has no phases")
        problems += [
            f"duplicate phase {i!r} in {area.id!r}"
            for i in set(phase_ids)
            if phase_ids.count(i) > 1
        ]
        for phase in area.phases:
            if phase.responsible is not None and phase.responsible not in workflow.role_ids:
                problems.append(f"phase {area.id}.{phase.id}: unknown role {phase.responsible!r}")
    problems += [
        f"role {r.id!r}: kind must be audience or staff"
        for r in workflow.roles
        if r.kind not in ROLE_KINDS
    ]
    feed = [r for r in workflow.roles if r.receives_feed]
    problems += [
        f"role {r.id!r}: only an audience receives the feed" for r in feed if r.kind != AUDIENCE
    ]
    if len(feed) > 1:
        problems.append("at most one role receives the feed")
    if not workflow.audiences or not workflow.staff:
        problems.append("the role catalogue needs at least one audience and one staff role")
    return problems


def is_identifier(value: object) -> bool:
    """True for a fixed identifier (IDENTIFIER_RULE)."""
    return isinstance(value, str) and len(value) <= MAX_IDENTIFIER and bool(IDENTIFIER.match(value))
