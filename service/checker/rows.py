"""Reading a casbin policy CSV: each row's six fields, where they are, and their syntax problems.

One row per allowed cell, `p, tenant, role, area, phase, action`, in the one canonical spacing
`export` writes (WA304 otherwise). `#` lines and blank lines carry no row. What the values mean is
checked against the workflow definition elsewhere (policy.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from service.checker.problems import Problem, render
from service.checker.sources import is_blank_or_comment, numbered_lines, read_source
from service.errors import ServiceError
from service.policies.model import FIELDS
from service.workflows import Row, is_identifier, not_identifier

TENANT, ROLE, AREA, PHASE, ACTION = range(5)
COLUMN_NAMES = ("type", *FIELDS)
CANONICAL_ROW = "p, default, parent, behaviour, completed, view"


@dataclass(frozen=True)
class PolicyLine:
    """One policy row of a CSV file and the line it came from."""

    line: int
    row: Row
    columns: tuple[int, ...] = field(default=(), compare=False)

    def column(self, index: int) -> int:
        """Where value `index` starts; canonical spacing is assumed when columns are unknown."""
        if self.columns:
            return self.columns[index]
        return 4 + sum(len(value) + 2 for value in self.row[:index])


class PolicyFileError(ServiceError):
    """A policy CSV the service was asked to load cannot be read as rows."""

    code = "bad_policy_file"


def read_policy_file(path: Path) -> list[Row]:
    """The rows of a casbin policy CSV, read as the checker reads it; PolicyFileError, naming
    every problem, when it cannot be read or a row is malformed. The one reader of policy CSVs."""
    text, problems = read_source(path)
    if text is None:
        raise PolicyFileError("; ".join(render(problems).splitlines()))
    rows, problems = parse_policy_text(text, str(path))
    if problems:
        raise PolicyFileError("; ".join(render(problems).splitlines()))
    return [r.row for r in rows]


def row_text(row: Row) -> str:
    """A row as the canonical CSV line (without its line end)."""
    return f"p, {', '.join(row)}"


def parse_policy_text(text: str, path: str) -> tuple[list[PolicyLine], list[Problem]]:
    """The rows of a casbin policy CSV with their line numbers, and the problems of its syntax.

    A row whose six fields are well formed is returned even when its spacing is not canonical
    (casbin strips it, and WA304 reports it); a row with any other problem is left out.
    """
    rows: list[PolicyLine] = []
    problems: list[Problem] = []
    for number, line in numbered_lines(text):
        if is_blank_or_comment(line):
            continue
        row, found = _parse_line(line, number, path)
        problems += found
        if row is not None:
            rows.append(row)
    return rows, problems


def _parse_line(line: str, number: int, path: str) -> tuple[PolicyLine | None, list[Problem]]:
    """One row: six fields, `p` first, no empty field, identifiers, canonical spacing."""
    parts = line.split(",")
    if len(parts) != 6:
        message = (
            f"a policy row has 6 comma-separated fields (p, {', '.join(FIELDS)}); "
            f"this one has {len(parts)}"
        )
        return None, [Problem(path, number, 1, "WA301", message)]
    starts = [1 + sum(len(p) + 1 for p in parts[:i]) for i in range(6)]
    values = [p.strip() for p in parts]
    columns = [s + len(p) - len(p.lstrip()) for s, p in zip(starts, parts, strict=True)]
    problems = _value_problems(values, columns, number, path)
    row = None if problems else _policy_line(number, values, columns)
    spacing = _spacing_problem(parts, starts)
    if spacing is not None:
        problems.append(Problem(path, number, spacing[0], "WA304", spacing[1]))
    return row, problems


def _value_problems(
    values: Sequence[str], columns: Sequence[int], number: int, path: str
) -> list[Problem]:
    """A problem for each field that is empty, not `p` first, or not an identifier."""
    return [
        Problem(path, number, columns[i], code, message)
        for i, value in enumerate(values)
        for code, message in [_value_problem(i, value)]
        if code
    ]


def _policy_line(number: int, values: list[str], columns: list[int]) -> PolicyLine:
    """A well-formed row without its `p`, with where each value starts."""
    tenant, role, area, phase, action = values[1:]
    return PolicyLine(number, (tenant, role, area, phase, action), tuple(columns[1:]))


def _value_problem(index: int, value: str) -> tuple[str, str]:
    """The code and message of what is wrong with one field ('' when nothing)."""
    name = COLUMN_NAMES[index]
    if not value:
        return "WA303", f"field {index + 1} ({name}) is empty"
    if index == 0:
        return ("", "") if value == "p" else ("WA302", f"a policy row starts with p, not {value!r}")
    return ("", "") if is_identifier(value) else ("WA305", not_identifier(name, value))


def _spacing_problem(parts: Sequence[str], starts: Sequence[int]) -> tuple[int, str] | None:
    """The first place where a row differs from `p, a, b, c, d, e`: one space after each comma."""
    if parts[0] != parts[0].lstrip():
        return starts[0], f"the row starts with whitespace; write it as `{CANONICAL_ROW}`"
    for i, part in enumerate(parts):
        lead = part[: len(part) - len(part.lstrip())]
        if i > 0 and part.strip() and lead != " ":
            found = repr(lead) if lead else "none"
            return starts[i], f"write exactly one space after each comma (found {found})"
        if part.strip() and part != part.rstrip():
            where = "at the end of the line" if i == 5 else "before a comma"
            return starts[i] + len(part.rstrip()), f"remove the whitespace {where}"
    return None
