"""The shape of workflow.toml: required keys present, values of the right type, no unknown keys.

Checked before the rules (service.workflows.definition_problems), which need a definition they
can read: WA202 for a missing key or a wrong type, WA212 for an unknown key (often a typo such as
`responsable`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.checker.problems import Problem
from service.checker.toml_positions import TomlPositions
from service.workflows import TablePath

KeySpec = Mapping[str, tuple[bool, type]]
"""Each key a table may hold: whether it is required, and the type of its value."""

TOP_KEYS: KeySpec = {"actions": (True, list), "roles": (True, list), "areas": (True, list)}
ROLE_KEYS: KeySpec = {
    "id": (True, str),
    "label": (True, str),
    "kind": (True, str),
    "description": (False, str),
    "receives_feed": (False, bool),
}
AREA_KEYS: KeySpec = {"id": (True, str), "label": (True, str), "phases": (False, list)}
PHASE_KEYS: KeySpec = {
    "id": (True, str),
    "label": (True, str),
    "description": (False, str),
    "responsible": (False, str),
    "transition": (False, str),
}


def structure_problems(data: dict[str, Any], at: TomlPositions, path: str) -> list[Problem]:
    """Required keys present, values of the right type, no unknown keys, in every table."""
    problems = _table_problems(data, TOP_KEYS, (), at, path)
    if not all(isinstance(a, str) for a in _list(data, "actions")):
        problems.append(Problem.at(path, at.at((), "actions"), "WA202", "actions must be strings"))
    roles, found = _tables(data, "roles", (), at, path)
    problems += found
    for i, role in enumerate(roles):
        problems += _table_problems(role, ROLE_KEYS, ("roles", i), at, path)
    areas, found = _tables(data, "areas", (), at, path)
    problems += found
    for i, area in enumerate(areas):
        problems += _area_problems(area, ("areas", i), at, path)
    return problems


def _area_problems(
    area: dict[str, Any], where: TablePath, at: TomlPositions, path: str
) -> list[Problem]:
    """The shape of one [[areas]] table and of each of its [[areas.phases]]."""
    problems = _table_problems(area, AREA_KEYS, where, at, path)
    phases, found = _tables(area, "phases", where, at, path)
    problems += found
    for j, phase in enumerate(phases):
        problems += _table_problems(phase, PHASE_KEYS, (*where, "phases", j), at, path)
    return problems


def _list(table: Mapping[str, Any], key: str) -> list[Any]:
    """The list under `key`: empty when absent or not a list (_table_problems reports that)."""
    value = table.get(key, [])
    return value if isinstance(value, list) else []


def _tables(
    table: dict[str, Any], key: str, where: TablePath, at: TomlPositions, path: str
) -> tuple[list[dict[str, Any]], list[Problem]]:
    """The array of tables under `key`, or none and a problem when the list holds anything else."""
    value = _list(table, key)
    if all(isinstance(t, dict) for t in value):
        return value, []
    header = "areas.phases" if where else key
    message = f"{key} must be an array of tables, each written [[{header}]]"
    return [], [Problem.at(path, at.at(where, key), "WA202", message)]


def _table_problems(
    table: dict[str, Any], keys: KeySpec, where: TablePath, at: TomlPositions, path: str
) -> list[Problem]:
    """Missing required keys, values of the wrong type and unknown keys of one table."""
    name = _table_name(table, where)
    problems = [
        Problem.at(path, at.at(where), "WA202", f"{name} lacks `{key}`")
        for key, (required, _) in keys.items()
        if required and key not in table
    ]
    for key, value in table.items():
        if key not in keys:
            message = f"{name}: unknown key `{key}` (known keys: {', '.join(keys)})"
            problems.append(Problem.at(path, at.at(where, key), "WA212", message))
        elif not isinstance(value, keys[key][1]):
            kind = {str: "a string", list: "an array", bool: "true or false"}[keys[key][1]]
            message = f"{name}: `{key}` must be {kind}"
            problems.append(Problem.at(path, at.at(where, key), "WA202", message))
    return problems


def _table_name(table: Mapping[str, Any], where: TablePath) -> str:
    """How a message names a table: 'role 'mentor'', 'phase #2', 'the definition'."""
    if not where:
        return "the definition"
    kind = str(where[-2]).removesuffix("s")
    ident = table.get("id")
    return f"{kind} {ident!r}" if isinstance(ident, str) else f"{kind} #{int(where[-1]) + 1}"
