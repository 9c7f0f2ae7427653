"""Which files a list of paths names, by kind, and checking them all together.

A folder contributes its model.conf, workflow.toml and *.csv files (*cases*.csv are cases). Policy
rows are checked against the first definition among the files; a tenant's rows live in one file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from service.checker.definition import check_definition_text
from service.checker.policy import check_policy_text
from service.checker.problems import Problem
from service.checker.rows import TENANT, PolicyLine
from service.checker.sources import read_source
from service.policies.model import check_model_text
from service.workflows import Row, Workflow

Kind = Literal["model", "definition", "policy", "cases"]


@dataclass(frozen=True)
class PolicyFiles:
    """The files a list of paths names, by kind, in the order given."""

    models: tuple[Path, ...] = ()
    definitions: tuple[Path, ...] = ()
    policies: tuple[Path, ...] = ()
    cases: tuple[Path, ...] = ()
    unknown: tuple[Path, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.models or self.definitions or self.policies or self.cases)


@dataclass(frozen=True)
class CheckResult:
    """Every problem found, the definition the rows were checked against, and each file's rows."""

    problems: list[Problem]
    workflow: Workflow | None
    rows: dict[str, list[PolicyLine]]

    def all_rows(self) -> list[Row]:
        """Every policy row of every file, in file order."""
        return [r.row for rows in self.rows.values() for r in rows]


def file_kind(path: Path) -> Kind | None:
    """A file's kind by name: *.conf model, *.toml definition, *cases*.csv cases, *.csv policy."""
    suffix = path.suffix.lower()
    if suffix == ".conf":
        return "model"
    if suffix == ".toml":
        return "definition"
    if suffix == ".csv":
        return "cases" if "cases" in path.stem.lower() else "policy"
    return None


def collect(paths: Iterable[Path]) -> PolicyFiles:
    """Files of each kind: files as given, and in a folder model.conf, workflow.toml and *.csv."""
    found: dict[str, list[Path]] = {"model": [], "definition": [], "policy": [], "cases": []}
    unknown: list[Path] = []
    for path in dict.fromkeys(_expand(paths)):
        kind = file_kind(path)
        (found[kind] if kind else unknown).append(path)
    return PolicyFiles(
        tuple(found["model"]),
        tuple(found["definition"]),
        tuple(found["policy"]),
        tuple(found["cases"]),
        tuple(unknown),
    )


def _expand(paths: Iterable[Path]) -> list[Path]:
    """Each path, a folder replaced by its checkable files (not recursive, hidden ones skipped)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if _in_folder(p))
        else:
            files.append(path)
    return files


def _in_folder(path: Path) -> bool:
    """Whether a folder's entry is checked: model.conf, workflow.toml and *.csv, not hidden."""
    name = path.name
    if name.startswith(".") or path.is_dir():
        return False
    return name in ("model.conf", "workflow.toml") or name.lower().endswith(".csv")


def check_files(files: PolicyFiles, default_definition: Path) -> CheckResult:
    """Check every model, definition and policy file (case files are casetests' job).

    Policy rows are checked against the first definition among the files, else (when there are
    policy or case files to check) against `default_definition`.
    """
    problems = [p for path in files.models for p in _check_model_file(path)]
    definitions = files.definitions
    if not definitions and (files.policies or files.cases):
        definitions = (default_definition,)
    checked = [_check_definition_file(path) for path in definitions]
    problems += [p for _, found in checked for p in found]
    workflow = checked[0][0] if checked else None
    rows, found = _check_policy_files(files.policies, workflow)
    return CheckResult(problems + found + _shared_tenant_problems(rows), workflow, rows)


def _check_model_file(path: Path) -> list[Problem]:
    """The problems of one model file, reading it included."""
    text, problems = read_source(path)
    return problems if text is None else check_model_text(text, str(path))


def _check_definition_file(path: Path) -> tuple[Workflow | None, list[Problem]]:
    """One definition file's Workflow (None when unsound) and its problems, reading included."""
    text, problems = read_source(path)
    return (None, problems) if text is None else check_definition_text(text, str(path))


def _check_policy_files(
    paths: Sequence[Path], workflow: Workflow | None
) -> tuple[dict[str, list[PolicyLine]], list[Problem]]:
    """Each readable policy file's rows, and the problems of every file."""
    rows: dict[str, list[PolicyLine]] = {}
    problems: list[Problem] = []
    for path in paths:
        text, found = read_source(path)
        if text is not None:
            rows[str(path)], found = check_policy_text(text, str(path), workflow)
        problems += found
    return rows, problems


def _shared_tenant_problems(rows: Mapping[str, Sequence[PolicyLine]]) -> list[Problem]:
    """A tenant's rows live in one file: each file is checked as whole policies."""
    owner: dict[str, tuple[str, int]] = {}
    problems: list[Problem] = []
    for path, lines in rows.items():
        for line in lines:
            tenant = line.row[TENANT]
            if tenant in owner and owner[tenant][0] != path:
                other, at = owner[tenant]
                message = f"tenant {tenant!r} already has rows in {other} (line {at}); keep a "
                message += "tenant's rows in one file"
                problems.append(Problem(path, line.line, line.column(TENANT), "WA316", message))
                break
            owner.setdefault(tenant, (path, line.line))
    return problems
