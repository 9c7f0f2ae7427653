"""A Problem (where, which code, what to do) and the three ways `check` prints problems."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

Format = Literal["text", "github", "json"]
FORMATS: tuple[Format, ...] = ("text", "github", "json")


@dataclass(frozen=True, order=True)
class Problem:
    """One finding: where (1-based line and column), which kind (code) and what to do."""

    path: str
    line: int
    column: int
    code: str
    message: str

    @classmethod
    def at(cls, path: str, where: tuple[int, int], code: str, message: str) -> Problem:
        """A problem at a (line, column) pair, the form position finders return."""
        return cls(path, where[0], where[1], code, message)


def render(problems: Sequence[Problem], fmt: Format = "text") -> str:
    """Problems as `path:line:column: CODE message` lines, GitHub annotations, or a JSON list."""
    if fmt == "json":
        return json.dumps([asdict(p) for p in problems], indent=2)
    line: Callable[[Problem], str] = _github_line if fmt == "github" else _text_line
    return "\n".join(line(p) for p in problems)


def _text_line(p: Problem) -> str:
    return f"{p.path}:{p.line}:{p.column}: {p.code} {p.message}"


def _github_line(p: Problem) -> str:
    """A GitHub Actions workflow command, escaped as the runner expects."""
    props = f"file={_escape(p.path, True)},line={p.line},col={p.column},title={p.code}"
    return f"::error {props}::{_escape(p.message, False)}"


def _escape(value: str, is_property: bool) -> str:
    """The runner's escaping: %, CR and LF everywhere; also : and , inside a property."""
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return value.replace(":", "%3A").replace(",", "%2C") if is_property else value
