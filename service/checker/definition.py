"""Checks of the workflow definition (workflow.toml): TOML syntax, then its shape, then its rules.

The result is the Workflow the service would load, or None and every problem found; policy rows
and cases are checked against it. The rules are the service's own (workflows.definition_problems),
each naming the table and key it concerns; TOML reports no positions except for syntax errors, so
the checker finds that key's line and column in the text (toml_positions.py).
"""

from __future__ import annotations

import re
import tomllib

from service.checker.problems import Problem
from service.checker.structure import structure_problems
from service.checker.toml_positions import TomlPositions
from service.workflows import DefinitionProblem, Workflow, build_workflow, definition_problems


def check_definition_text(text: str, path: str) -> tuple[Workflow | None, list[Problem]]:
    """The workflow definition if it is sound, else None and every problem found."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return None, [_syntax_problem(exc, text, path)]
    at = TomlPositions(text)
    problems = structure_problems(data, at, path)
    if problems:
        return None, problems
    workflow = build_workflow(data)
    problems = [located(found, at, path) for found in definition_problems(workflow)]
    return (None, problems) if problems else (workflow, [])


def located(found: DefinitionProblem, at: TomlPositions, path: str) -> Problem:
    """A rule the definition breaks, at the line and column of the key it concerns."""
    message = found.message
    if found.first is not None:
        message += f" (first at line {at.at(*found.first)[0]})"
    return Problem.at(path, at.at(found.table, found.key), found.code, message)


def _syntax_problem(exc: tomllib.TOMLDecodeError, text: str, path: str) -> Problem:
    """tomllib's error, at the line and column it names (else the last line)."""
    found = re.search(r"line (\d+), column (\d+)", str(exc))
    where = (int(found[1]), int(found[2])) if found else (len(text.split("\n")), 1)
    return Problem.at(path, where, "WA201", f"not valid TOML: {exc}")
