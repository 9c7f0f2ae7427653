"""`workflow-authz check` and `test`: thin shells over service.checker and service.casetests.

Exit codes: 0 clean, 1 problems found (or a case failed, or coverage is too low), 2 bad usage.
Without PATH arguments they read the configured policy folder (WORKFLOW_AUTHZ_POLICY_DIR) and,
for check, the model (WORKFLOW_AUTHZ_MODEL_PATH).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import click

from service.casetests import (
    Case,
    coverage,
    decision_from_rows,
    junit_xml,
    read_cases,
    run_cases,
    text_report,
)
from service.checker import (
    FORMATS,
    CheckResult,
    Format,
    PolicyFiles,
    Problem,
    check_files,
    collect,
    render,
)
from service.config import load_config

PATHS = click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))


@click.command("check")
@PATHS
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="text: path:line:column: CODE message; github: Actions annotations; json: a list.",
)
def check_command(paths: tuple[Path, ...], fmt: Format) -> None:
    """Validate model, workflow definition, policy and case files (default: policy/, model.conf).

    A folder contributes its model.conf, workflow.toml and *.csv files (*cases*.csv are cases).
    """
    policy_dir, model = _defaults()
    files = _collect(paths or (policy_dir, model))
    problems = _checked(files, policy_dir)[2]
    if problems or fmt == "json":
        click.echo(render(problems, fmt))
    count = len(files.models + files.definitions + files.policies + files.cases)
    click.echo(f"{_count(len(problems), 'problem')} in {_count(count, 'file')} checked", err=True)
    if problems:
        _exit(1)


@click.command("test")
@PATHS
@click.option(
    "--junit",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Also write the results as JUnit XML to FILE.",
)
@click.option(
    "--min-coverage",
    type=click.FloatRange(0, 100),
    default=0.0,
    show_default=True,
    metavar="N",
    help="Fail when the cases exercise less than N percent of the matrix cells.",
)
def test_command(paths: tuple[Path, ...], junit: Path | None, min_coverage: float) -> None:
    """Run the decision test cases (*cases*.csv) against the policy rows (default: policy/).

    The files are checked first; the cases run only when the check finds no problem.
    """
    policy_dir, _ = _defaults()
    paths = paths or (policy_dir,)
    files = _collect(paths)
    for kind, found in (("policy (*.csv)", files.policies), ("case (*cases*.csv)", files.cases)):
        if not found:
            raise click.UsageError(f"no {kind} files in {_shown(paths)}")
    result, cases, problems = _checked(files, policy_dir)
    if problems or result.workflow is None:
        click.echo(render(problems))
        click.echo("not running the cases: fix the problems above first", err=True)
        _exit(1)
    outcomes = run_cases(cases, decision_from_rows(result.all_rows()))
    cover = coverage(cases, result.workflow)
    if junit is not None:
        _write(junit, junit_xml(outcomes, cover))
    too_low = cover.percent < min_coverage
    click.echo(text_report(outcomes, cover, uncovered=too_low))
    if too_low:
        message = f"coverage {cover.percent:.1f}% is below --min-coverage {min_coverage:g}%"
        click.echo(message, err=True)
    if too_low or not all(o.passed for o in outcomes):
        _exit(1)


def _defaults() -> tuple[Path, Path]:
    """The configured policy folder and model file, shown relative to the current folder."""
    try:
        config = load_config()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    return _relative(Path(config["POLICY_DIR"])), _relative(Path(config["MODEL_PATH"]))


def _relative(path: Path) -> Path:
    """A path under the current folder as a relative one, so messages and annotations match git."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def _definition(policy_dir: Path) -> Path:
    """The workflow definition used when none is among the paths."""
    return policy_dir / "workflow.toml"


def _collect(paths: Sequence[Path]) -> PolicyFiles:
    """The files to check; bad usage (exit 2) for a path that is missing or of unknown kind."""
    missing = [p for p in paths if not p.exists()]
    if missing:
        hint = "pass PATH, or set WORKFLOW_AUTHZ_POLICY_DIR / WORKFLOW_AUTHZ_MODEL_PATH"
        raise click.UsageError(f"{missing[0]} does not exist ({hint})")
    files = collect(paths)
    if files.unknown:
        raise click.UsageError(
            f"{files.unknown[0]}: not a policy file; give folders, *.conf (model), "
            "*.toml (workflow definition) or *.csv (policy; *cases*.csv: test cases)"
        )
    if not files:
        raise click.UsageError(f"no model.conf, workflow.toml or *.csv files in {_shown(paths)}")
    return files


def _checked(files: PolicyFiles, policy_dir: Path) -> tuple[CheckResult, list[Case], list[Problem]]:
    """Check every file: the checker's result, the cases, and all problems in path order."""
    result = check_files(files, _definition(policy_dir))
    cases, case_problems = read_cases(files.cases, result.workflow)
    return result, cases, sorted(result.problems + case_problems)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _shown(paths: Sequence[Path]) -> str:
    return ", ".join(str(p) for p in paths)


def _write(path: Path, text: str) -> None:
    """Write a report file; a path that cannot be written is an error, never a traceback."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.FileError(str(path), exc.strerror or str(exc)) from None


def _exit(code: int) -> NoReturn:
    click.get_current_context().exit(code)
