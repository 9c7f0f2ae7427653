"""`workflow-authz check`, `test`, `export`, `import` and `diff`: thin shells over service.checker,
service.casetests and the policy store.

Exit codes: 0 clean, 1 problems found (a case failed, coverage too low, a file refused, an unknown
tenant, a store failure; for diff: any change), 2 bad usage (for import and diff also a cases
file given for a policy file), as service.cli_errors reports them. Without PATH arguments check
and test read the configured policy folder (WORKFLOW_AUTHZ_POLICY_DIR) and, for check, the model
(WORKFLOW_AUTHZ_MODEL_PATH); export, import and diff use the store at WORKFLOW_AUTHZ_DATABASE_URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import click

from service import policy_changes
from service.casetests import (
    HEADER,
    Case,
    Coverage,
    Outcome,
    coverage,
    decision_from_rows,
    junit_xml,
    read_cases,
    run_cases,
    text_report,
)
from service.checker.canonical import change_line, policy_text
from service.checker.files import CheckResult, PolicyFiles, check_files, collect
from service.checker.policy import check_policy_text
from service.checker.problems import FORMATS, Format, Problem, render
from service.checker.rows import TENANT, PolicyLine
from service.checker.sources import read_source
from service.cli_errors import BadUsage, CommandError, settings, store_engine
from service.errors import Unavailable
from service.limits import MAX_TEXT, text_problem
from service.policies import PolicyEngine
from service.policies.store import current_version, require_version, tenant_cells
from service.workflows import Cell, CellChange, Row, Workflow, is_identifier

PATHS = click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
SNAPSHOT_TRIES = 5


# -- check and test --------------------------------------------------------------------------


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
    rows, cases, workflow = _checked_for_cases(paths or (policy_dir,), policy_dir)
    outcomes = run_cases(cases, decision_from_rows(rows, workflow))
    cover = coverage(cases, workflow)
    if junit is not None:
        _write(junit, junit_xml(outcomes, cover))
    if not _reported(outcomes, cover, min_coverage):
        _exit(1)


def _checked_for_cases(
    paths: Sequence[Path], policy_dir: Path
) -> tuple[list[Row], list[Case], Workflow]:
    """Rows, cases and definition of the checked files; exit 2 lacking either, 1 on problems."""
    files = _collect(paths)
    for kind, found in (("policy (*.csv)", files.policies), ("case (*cases*.csv)", files.cases)):
        if not found:
            raise click.UsageError(f"no {kind} files in {_shown(paths)}")
    result, cases, problems = _checked(files, policy_dir)
    if problems or result.workflow is None:
        click.echo(render(problems))
        click.echo("not running the cases: fix the problems above first", err=True)
        _exit(1)
    return result.all_rows(), cases, result.workflow


def _reported(outcomes: Sequence[Outcome], cover: Coverage, min_coverage: float) -> bool:
    """Print the report (listing uncovered cells when too few are covered); True when it passed."""
    too_low = cover.percent < min_coverage
    click.echo(text_report(outcomes, cover, uncovered=too_low))
    if too_low:
        message = f"coverage {cover.percent:.1f}% is below --min-coverage {min_coverage:g}%"
        click.echo(message, err=True)
    return not too_low and all(o.passed for o in outcomes)


def _defaults() -> tuple[Path, Path]:
    """The configured policy folder and model file, shown relative to the current folder."""
    config = settings()
    return _relative(Path(config["POLICY_DIR"])), _relative(Path(config["MODEL_PATH"]))


def _relative(path: Path) -> Path:
    """A path under the current folder as a relative one, so messages and annotations match git."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


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
    result = check_files(files, policy_dir / "workflow.toml")
    cases, case_problems = read_cases(files.cases, result.workflow)
    return result, cases, sorted(result.problems + case_problems)


# -- export, import and diff -----------------------------------------------------------------


def _tenant_id(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A --tenant value must be a tenant identifier (bad usage otherwise)."""
    if value is not None and not is_identifier(value):
        raise click.BadParameter(f"{value!r} is not a tenant id ([a-z][a-z0-9_]*)", param=param)
    return value


def _actor(_ctx: click.Context, param: click.Parameter, value: str) -> str:
    """The audit records' actor: free text (limits.FREE_TEXT_RULE) short enough for the table."""
    problem = text_problem(value, MAX_TEXT)
    if problem is not None:
        raise click.BadParameter(problem, param=param)
    return value


TENANT_OPTION = click.option(
    "--tenant", required=True, callback=_tenant_id, help="The tenant whose live rows to use."
)
FROM_TENANT = click.option(
    "--from-tenant",
    metavar="SOURCE",
    callback=_tenant_id,
    help="PATH holds tenant SOURCE's rows (e.g. its export): use them as --tenant's rows.",
)
POLICY_FILE = click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))


@click.command("export")
@TENANT_OPTION
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write to this file instead of standard output.",
)
def export_command(tenant: str, output: Path | None) -> None:
    """Write a tenant's live rows as a casbin CSV, sorted as workflow.toml lists its ids.

    The same rows always give the same bytes, and `import` reads the file back unchanged.
    """
    with store_engine() as engine:
        version, cells = _snapshot(engine, tenant)
    text = policy_text(tenant, version, cells, engine.workflow)
    if output is None:
        click.echo(text, nl=False)
        return
    _write(output, text)
    click.echo(
        f"Exported {_count(len(cells), 'row')} of tenant {tenant!r} (version {version}) "
        f"to {output}.",
        err=True,
    )


@click.command("import")
@TENANT_OPTION
@POLICY_FILE
@FROM_TENANT
@click.option("--dry-run", is_flag=True, help="Print the cell changes; write nothing.")
@click.option(
    "--actor", default="cli", show_default=True, callback=_actor, help="Who the audit names."
)
def import_command(
    tenant: str, path: Path, from_tenant: str | None, dry_run: bool, actor: str
) -> None:
    """Replace a tenant's live rows with the rows of PATH, in one transaction.

    PATH is checked first and refused with the checker's messages when it has a problem; every
    row must name the tenant (or SOURCE, with --from-tenant). The policy version goes up by one
    and every changed cell is audited; `+ row` / `- row` lines show what changed.
    """
    with store_engine() as engine:
        cells = _file_cells(path, from_tenant or tenant, engine.workflow, "importing")
        if dry_run:
            version, changes = _planned(engine, tenant, cells)
        else:
            version, changes = _replaced(engine, tenant, cells, actor)
    _print_changes(tenant, changes)
    click.echo(_import_summary(tenant, path, version, len(changes), dry_run), err=True)


@click.command("diff")
@TENANT_OPTION
@POLICY_FILE
@FROM_TENANT
def diff_command(tenant: str, path: Path, from_tenant: str | None) -> None:
    """Print the cell changes importing PATH would make; exit 1 when there are any.

    `+ row`: PATH allows a cell the live policy does not; `- row`: the live policy allows a cell
    PATH does not. PATH is checked first, as by import.
    """
    with store_engine() as engine:
        cells = _file_cells(path, from_tenant or tenant, engine.workflow, "comparing")
        version, changes = _planned(engine, tenant, cells)
    _print_changes(tenant, changes)
    where = f"tenant {tenant!r} (version {version}) and {path}"
    click.echo(f"{_count(len(changes), 'change')} between {where}", err=True)
    if changes:
        _exit(1)


def _snapshot(engine: PolicyEngine, tenant: str) -> tuple[int, list[Cell]]:
    """The tenant's version and live cells, re-read until the cells are those of that version.

    One transaction, but under READ COMMITTED each statement may see a newer commit: the
    version read again after the cells proves no write landed in between.
    """
    with engine.db.read() as conn:
        for _ in range(SNAPSHOT_TRIES):
            version = require_version(conn, tenant)
            cells = tenant_cells(conn, tenant)
            if current_version(conn, tenant) == version:
                return version, cells
    raise Unavailable(f"the policy of {tenant!r} kept changing while it was read; try again")


def _file_cells(path: Path, source: str, workflow: Workflow, doing: str) -> list[Cell]:
    """The cells of a policy file: checked against the definition, all rows of tenant `source`."""
    text, problems = read_source(path)
    lines: list[PolicyLine] = []
    if text is not None:
        _refuse_cases(path, text)
        lines, problems = check_policy_text(text, str(path), workflow)
    if problems:
        click.echo(render(sorted(problems)), err=True)
        raise CommandError(f"not {doing} {path}: fix the problems above first")
    for line in lines:
        if line.row[TENANT] != source:
            raise CommandError(_other_tenant(path, line.line, line.row[TENANT], source))
    return [line.row[1:] for line in lines]


def _refuse_cases(path: Path, text: str) -> None:
    """A decision-cases file given for a policy file, told by its header: one line, exit 2.

    Bad usage, like `check` given a file of no known kind: the file is fine, the command is the
    wrong one for it (every one of its lines would otherwise be reported as a bad policy row).
    """
    first = next((t for t in text.splitlines() if t.strip() and not t.startswith("#")), "")
    if [field.strip() for field in first.split(",")] == list(HEADER):
        raise BadUsage(
            f"{path} is a decision-cases file (header {','.join(HEADER)}), not a policy file: "
            "`workflow-authz test` runs cases"
        )


def _other_tenant(path: Path, line: int, found: str, source: str) -> str:
    """Why a row of another tenant is refused, and how to use a file written for another tenant."""
    message = f"{path}:{line}: the row is for tenant {found!r}, not {source!r}"
    return message + f"; to use another tenant's rows, add --from-tenant {found}"


def _planned(
    engine: PolicyEngine, tenant: str, cells: list[Cell]
) -> tuple[int, tuple[CellChange, ...]]:
    """The live version and the changes replacing its cells with `cells` would make."""
    version, live = _snapshot(engine, tenant)
    return version, engine.workflow.changes(frozenset(live), frozenset(cells))


def _replaced(
    engine: PolicyEngine, tenant: str, cells: list[Cell], actor: str
) -> tuple[int, tuple[CellChange, ...]]:
    """Replace the tenant's cells in one write transaction: the new version and what changed
    (in display order, as the seam computes them)."""
    result = policy_changes.commit(engine.db, engine, tenant, cells, actor=actor)
    return result.version, result.changes


def _print_changes(tenant: str, changes: Sequence[CellChange]) -> None:
    """One `+ row` / `- row` line per changed cell, on stdout."""
    for change in changes:
        click.echo(change_line(tenant, change))


def _import_summary(tenant: str, path: Path, version: int, changed: int, dry_run: bool) -> str:
    """One line on stderr saying what import did (or, with --dry-run, would do)."""
    cells = _count(changed, "cell")
    if dry_run:
        return (
            f"Dry run: {cells} of tenant {tenant!r} (version {version}) would change; nothing "
            "was written."
        )
    if not changed:
        return f"Tenant {tenant!r} already matches {path} (version {version}); nothing to import."
    return f"Imported {path} into tenant {tenant!r}: {cells} changed, now version {version}."


# -- output ----------------------------------------------------------------------------------


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _shown(paths: Sequence[Path]) -> str:
    return ", ".join(str(p) for p in paths)


def _write(path: Path, text: str) -> None:
    """Write a report or export file; a path that cannot be written is an error, not a traceback."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.FileError(str(path), exc.strerror or str(exc)) from None


def _exit(code: int) -> NoReturn:
    click.get_current_context().exit(code)
