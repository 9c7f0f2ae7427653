"""The rules a well-shaped workflow definition must follow (WA203-WA211).

Ids are identifiers and unique; every area has phases; each non-final phase has one staff role
responsible for advancing it and the final phase none; the catalogue has audiences and staff;
the actions are the ones the service implements.
"""

from __future__ import annotations

from service.checker.problems import Problem, not_identifier
from service.checker.toml_positions import TablePath, TomlPositions
from service.workflows import Area, Phase, Workflow, is_identifier

ACTIONS = ("view", "edit", "advance")
"""The actions every definition declares, in this order."""
REOPEN = "reopen"
ACTION_LISTS = (ACTIONS, (*ACTIONS, REOPEN))
"""The action lists a definition may declare: `reopen` is optional and comes last."""

Located = tuple[str, TablePath, str]
"""An id, the table it is written in and its key."""


def definition_problems(workflow: Workflow, at: TomlPositions, path: str) -> list[Problem]:
    """Identifier syntax, unique ids, phases and their responsible roles, roles, actions."""
    problems: list[Problem] = []
    for kind, ids in _id_lists(workflow):
        problems += _id_problems(kind, ids, at, path)
    for i, area in enumerate(workflow.areas):
        problems += _phase_problems(workflow, area, i, at, path)
    return problems + _role_problems(workflow, at, path) + _action_problems(workflow, at, path)


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


def _id_problems(kind: str, ids: list[Located], at: TomlPositions, path: str) -> list[Problem]:
    """Ids that are not identifiers, and ids written a second time."""
    problems: list[Problem] = []
    first: dict[str, int] = {}
    for ident, table, key in ids:
        position = at.at(table, key)
        if not is_identifier(ident):
            problems.append(Problem.at(path, position, "WA203", not_identifier(kind, ident)))
        elif ident in first:
            message = f"{kind} {ident!r} is defined twice (first at line {first[ident]})"
            problems.append(Problem.at(path, position, "WA204", message))
        first.setdefault(ident, position[0])
    return problems


def _phase_problems(
    workflow: Workflow, area: Area, i: int, at: TomlPositions, path: str
) -> list[Problem]:
    """An area has phases; each non-final phase has a staff responsible role, the final none."""
    if not area.phases:
        where = at.at(("areas", i), "id")
        return [Problem.at(path, where, "WA205", f"area {area.id!r} has no phases")]
    problems: list[Problem] = []
    for j, phase in enumerate(area.phases):
        code, message = _responsible_problem(workflow, area, phase)
        if code:
            where = at.at(("areas", i, "phases", j), "responsible")
            problems.append(Problem.at(path, where, code, message))
    return problems


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
    if role.kind == "audience":
        return "WA210", f"{name}: {role.id!r} is an audience; audiences never advance a phase"
    return "", ""


def _role_problems(workflow: Workflow, at: TomlPositions, path: str) -> list[Problem]:
    """Each role's kind is audience or staff; the catalogue has at least one of each."""
    problems = [
        Problem.at(
            path,
            at.at(("roles", i), "kind"),
            "WA206",
            f"role {r.id!r}: kind must be audience or staff, not {r.kind!r}",
        )
        for i, r in enumerate(workflow.roles)
        if r.kind not in ("audience", "staff")
    ]
    for kind, roles in (("audience", workflow.audiences), ("staff", workflow.staff)):
        if not roles:
            message = f"the role catalogue needs at least one role of kind {kind!r}"
            problems.append(Problem.at(path, at.at(("roles", 0)), "WA207", message))
    return problems


def _action_problems(workflow: Workflow, at: TomlPositions, path: str) -> list[Problem]:
    """The actions are view, edit, advance in this order, optionally followed by reopen.

    A repeated action is WA204's to report, so repeats are ignored here.
    """
    if tuple(dict.fromkeys(workflow.actions)) in ACTION_LISTS:
        return []
    allowed = " or ".join(str(list(actions)) for actions in ACTION_LISTS)
    message = f"actions must be {allowed}, in this order; not {list(workflow.actions)}"
    return [Problem.at(path, at.at((), "actions"), "WA211", message)]
