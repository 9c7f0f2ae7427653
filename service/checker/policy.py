"""Checks of policy rows against the workflow definition: known ids, no duplicates, and the policy
rules (service.policy_rules, located at the rows by findings.py).

A file is checked as the whole policy of every tenant it names. Rows naming unknown ids
(WA305-WA309) are left out of the policy rules, and an audience's row that is not `view` is
reported as WA314 only.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.checker.findings import rule_problems
from service.checker.problems import Problem
from service.checker.rows import ACTION, AREA, PHASE, ROLE, PolicyLine, parse_policy_text
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
    """Duplicates; with a definition also unknown ids and the policy rules."""
    unique, problems = _unique_rows(rows, path)
    if workflow is None:
        return problems
    known, unknown = _known_rows(unique, path, workflow)
    return problems + unknown + sorted(rule_problems(known, path, workflow))


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
