"""Checks of policy rows against the workflow definition: known ids, no duplicates, audiences only
view, and the transition rules (transition_rules.py).

A file is checked as the whole policy of every tenant it names. Rows naming unknown ids
(WA305-WA309) are left out of the audience and transition rules, and an audience's row that is
not `view` is reported as WA314 only.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.checker.problems import Problem
from service.checker.rows import ACTION, AREA, PHASE, ROLE, PolicyLine, parse_policy_text
from service.checker.transition_rules import advance_problems, reopen_problems
from service.workflows import Row, Workflow


def check_policy_text(
    text: str, path: str, workflow: Workflow | None
) -> tuple[list[PolicyLine], list[Problem]]:
    """Parse and check a policy CSV: its rows and every problem of the file."""
    rows, problems = parse_policy_text(text, path)
    problems += policy_problems(rows, path, workflow)
    if not rows and not problems:
        problems.append(Problem(path, 1, 1, "WA315", "no policy rows, only comments"))
    return rows, problems


def policy_problems(
    rows: Sequence[PolicyLine], path: str, workflow: Workflow | None
) -> list[Problem]:
    """Duplicates; with a definition also unknown ids, audience rights and transition rules."""
    unique, problems = _unique_rows(rows, path)
    if workflow is None:
        return problems
    known, unknown = _known_rows(unique, path, workflow)
    audience = _audience_problems(known, path, workflow)
    flagged = {p.line for p in audience}
    rest = [r for r in known if r.line not in flagged]
    transitions = advance_problems(rest, path, workflow) + reopen_problems(rest, path, workflow)
    return problems + unknown + audience + transitions


def _unique_rows(rows: Sequence[PolicyLine], path: str) -> tuple[list[PolicyLine], list[Problem]]:
    """Rows with later duplicates removed, and a problem for each duplicate."""
    first: dict[Row, int] = {}
    unique: list[PolicyLine] = []
    problems: list[Problem] = []
    for row in rows:
        if row.row in first:
            message = f"duplicate of the row at line {first[row.row]}; remove it"
            problems.append(Problem(path, row.line, 1, "WA310", message))
        else:
            first[row.row] = row.line
            unique.append(row)
    return unique, problems


def _known_rows(
    rows: Sequence[PolicyLine], path: str, workflow: Workflow
) -> tuple[list[PolicyLine], list[Problem]]:
    """The rows naming only ids the definition knows, and a problem for each unknown id."""
    known: list[PolicyLine] = []
    problems: list[Problem] = []
    for row in rows:
        found = _unknown_problems(row, path, workflow)
        problems += found
        known += [] if found else [row]
    return known, problems


def _unknown_problems(row: PolicyLine, path: str, workflow: Workflow) -> list[Problem]:
    """Role, area, phase (of that area) and action must be in the definition."""
    _, role, area_id, phase, action = row.row
    area = workflow.area_by_id.get(area_id)
    checks = [
        (ROLE, "WA306", role, f"role {role!r}", [r.id for r in workflow.roles]),
        (AREA, "WA307", area_id, f"area {area_id!r}", [a.id for a in workflow.areas]),
        (ACTION, "WA309", action, f"action {action!r}", list(workflow.actions)),
    ]
    if area is not None:
        phases = [p.id for p in area.phases]
        checks.insert(2, (PHASE, "WA308", phase, f"{area_id} phase {phase!r}", phases))
    return [
        Problem(path, row.line, row.column(i), code, f"unknown {what} (known: {', '.join(known)})")
        for i, code, value, what, known in checks
        if value not in known
    ]


def _audience_problems(rows: Sequence[PolicyLine], path: str, workflow: Workflow) -> list[Problem]:
    """Audiences may only view: never edit, advance or reopen."""
    audiences = {r.id for r in workflow.audiences}
    return [
        Problem(
            path,
            r.line,
            r.column(ACTION),
            "WA314",
            f"{r.row[ROLE]} is an audience; audiences may only view, never {r.row[ACTION]}",
        )
        for r in rows
        if r.row[ROLE] in audiences and r.row[ACTION] != "view"
    ]
