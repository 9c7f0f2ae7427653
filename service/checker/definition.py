"""Checks of the workflow definition (workflow.toml): TOML syntax, then its shape, then its rules.

The result is the Workflow the service would load, or None and every problem found; policy rows
and cases are checked against it. TOML reports no positions except for syntax errors, so problems
are located at the key (or table header) they concern.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from typing import Any

from service.checker.problems import Problem
from service.checker.structure import structure_problems
from service.checker.toml_positions import TomlPositions
from service.checker.workflow_rules import definition_problems
from service.workflows import Area, DefinitionError, Phase, Role, Workflow, parse_workflow


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
    problems = definition_problems(_unvalidated_workflow(data), at, path)
    if problems:
        return None, problems
    try:
        return parse_workflow(data), []
    except DefinitionError as exc:  # a rule the service has that this checker does not know
        return None, [Problem(path, 1, 1, "WA202", f"the service refuses it: {exc}")]


def _syntax_problem(exc: tomllib.TOMLDecodeError, text: str, path: str) -> Problem:
    """tomllib's error, at the line and column it names (else the last line)."""
    found = re.search(r"line (\d+), column (\d+)", str(exc))
    where = (int(found[1]), int(found[2])) if found else (len(text.split("\n")), 1)
    return Problem.at(path, where, "WA201", f"not valid TOML: {exc}")


def _unvalidated_workflow(data: Mapping[str, Any]) -> Workflow:
    """The definition as a Workflow before its rules are checked, so the rules can read it."""
    roles = tuple(
        Role(r["id"], r["label"], r["kind"], r.get("description", "")) for r in data["roles"]
    )
    areas = tuple(
        Area(a["id"], a["label"], tuple(_phase(p) for p in a.get("phases", [])))
        for a in data["areas"]
    )
    return Workflow(roles=roles, areas=areas, actions=tuple(data["actions"]))


def _phase(p: Mapping[str, Any]) -> Phase:
    """One [[areas.phases]] table as a Phase."""
    return Phase(
        p["id"], p["label"], p.get("description", ""), p.get("responsible"), p.get("transition")
    )
