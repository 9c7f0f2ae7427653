"""`workflow-authz export`, `import` and `diff` (service/policy_cli.py), spec §5 and issue 4 item 3.

On a fresh SQLite store made by `workflow-authz init`: export writes the live rows as the
canonical CSV (the shipped policy, sorted in the definition's order, accepted by `check`); import
checks the file first and refuses it with the checker's messages, refuses rows of another tenant
unless --from-tenant names it, then replaces the rows in one transaction that bumps the version
and audits every changed cell with its actor; --dry-run and diff print the same cell changes and
write nothing, diff exiting 1 when there are any. Unknown tenants exit 1, bad usage 2. A store
that fails in the middle of an import (a real SQLite trigger) leaves rows, version and audit as
they were. Property: any valid matrix survives export -> import -> export byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from service.checker.canonical import policy_text
from service.checker.rows import parse_policy_text
from service.cli import main
from service.db import Database
from service.models import PolicyChange
from service.policies.store import current_version, tenant_cells
from service.policy_cli import check_command, diff_command, export_command, import_command
from service.workflows import Cell, Workflow, load_workflow

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "policy" / "policy.csv"
WORKFLOW = load_workflow(REPO / "policy" / "workflow.toml")
SHIPPED_CELLS = {line.row[1:] for line in parse_policy_text(SHIPPED.read_text(), str(SHIPPED))[0]}
PARENT_COMPLETED: Cell = ("parent", "behaviour", "completed", "view")
PARENT_APPROVAL: Cell = ("parent", "behaviour", "organisation_approval", "view")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Database]:
    """A store made by `workflow-authz init`: tenant `default` holds the shipped policy."""
    url = f"sqlite:///{tmp_path / 'io.sqlite3'}"
    monkeypatch.setenv("WORKFLOW_AUTHZ_DATABASE_URL", url)
    assert CliRunner().invoke(main, ["init"]).exit_code == 0
    db = Database(url)
    yield db
    db.dispose()


def run(command: click.Command, *args: str | Path) -> Result:
    return CliRunner().invoke(command, [str(a) for a in args])


def exported(tenant: str = "default") -> str:
    result = run(export_command, "--tenant", tenant)
    assert result.exit_code == 0, result.output
    return result.stdout


def policy_file(folder: Path, cells: set[Cell], tenant: str = "default") -> Path:
    """A policy CSV of these cells, in lexical order (export's order is the definition's)."""
    path = folder / f"{tenant}-{len(list(folder.iterdir()))}.csv"
    path.write_text("".join(f"p, {tenant}, {', '.join(cell)}\n" for cell in sorted(cells)))
    return path


def version(db: Database, tenant: str = "default") -> int | None:
    with db.read() as conn:
        return current_version(conn, tenant)


def live(db: Database, tenant: str = "default") -> set[Cell]:
    with db.read() as conn:
        return set(tenant_cells(conn, tenant))


def audit(db: Database) -> list[tuple[int, str, Cell, bool]]:
    """(version, actor, cell, allowed after) of every audit record after `init`'s."""
    query = select(PolicyChange).where(PolicyChange.version > 1).order_by(PolicyChange.id)
    with db.read() as conn:
        return [
            (c.version, c.actor, (c.role, c.area, c.phase, c.action), c.after)
            for c in conn.execute(query)
        ]


def audit_count(db: Database) -> int:
    with db.read() as conn:
        return conn.execute(select(func.count()).select_from(PolicyChange)).scalar_one()


# -- export ----------------------------------------------------------------------------------


def test_export_of_the_default_tenant_is_the_shipped_policy_in_canonical_form(
    store: Database, tmp_path: Path
) -> None:
    text = exported()
    assert text == policy_text("default", 1, SHIPPED_CELLS, WORKFLOW)
    assert text.startswith("# Policy of tenant default at version 1")
    rows = [line for line in text.splitlines() if not line.startswith("#")]
    assert rows[0] == "p, default, mentor, behaviour, group_registration, view"
    assert rows[-1].startswith("p, default, headteacher, assessment, completed, ")
    assert len(rows) == len(SHIPPED_CELLS)
    (tmp_path / "policy.csv").write_text(text)
    assert run(check_command, tmp_path / "policy.csv").exit_code == 0


def test_export_is_stable_and_can_write_a_file(store: Database, tmp_path: Path) -> None:
    target = tmp_path / "default.csv"
    result = run(export_command, "--tenant", "default", "-o", target)
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr == f"Exported {len(SHIPPED_CELLS)} rows of tenant 'default' " + (
        f"(version 1) to {target}.\n"
    )
    assert target.read_text() == exported() == exported()


def test_export_to_an_unwritable_path_is_an_error(store: Database, tmp_path: Path) -> None:
    result = run(export_command, "--tenant", "default", "-o", tmp_path / "missing" / "x.csv")
    assert result.exit_code == 1
    assert "Could not open file" in result.stderr


# -- import ----------------------------------------------------------------------------------


def test_import_replaces_the_rows_bumps_the_version_and_audits_the_actor(
    store: Database, tmp_path: Path
) -> None:
    wanted = SHIPPED_CELLS - {PARENT_COMPLETED} | {PARENT_APPROVAL}
    result = run(
        import_command, "--tenant", "default", policy_file(tmp_path, wanted), "--actor", "ada"
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "+ p, default, parent, behaviour, organisation_approval, view\n"
        "- p, default, parent, behaviour, completed, view\n"
    )
    assert "2 cells changed, now version 2" in result.stderr
    assert (live(store), version(store)) == (wanted, 2)
    assert audit(store) == [(2, "ada", PARENT_APPROVAL, True), (2, "ada", PARENT_COMPLETED, False)]


def test_the_default_actor_is_cli(store: Database, tmp_path: Path) -> None:
    source = policy_file(tmp_path, SHIPPED_CELLS - {PARENT_COMPLETED})
    assert run(import_command, "--tenant", "default", source).exit_code == 0
    assert audit(store) == [(2, "cli", PARENT_COMPLETED, False)]


def test_importing_what_is_live_changes_nothing(store: Database, tmp_path: Path) -> None:
    result = run(import_command, "--tenant", "default", policy_file(tmp_path, SHIPPED_CELLS))
    assert (result.exit_code, result.stdout) == (0, "")
    assert "already matches" in result.stderr
    assert (version(store), audit(store)) == (1, [])


def test_an_invalid_file_is_refused_with_the_checkers_messages_and_changes_nothing(
    store: Database, tmp_path: Path
) -> None:
    source = policy_file(tmp_path, SHIPPED_CELLS)
    source.write_text(source.read_text() + "p, default, parent, behaviour, completed, edit\n")
    line = len(SHIPPED_CELLS) + 1
    before = audit_count(store)
    result = run(import_command, "--tenant", "default", source)
    assert result.exit_code == 1
    message = "WA314 parent is an audience; audiences may only view, never edit"
    assert result.stderr.startswith(f"{source}:{line}:43: {message}\n")
    assert f"Error: not importing {source}: fix the problems above first" in result.stderr
    assert (live(store), version(store), audit_count(store)) == (SHIPPED_CELLS, 1, before)


def test_an_unreadable_file_is_a_reported_problem(store: Database, tmp_path: Path) -> None:
    source = tmp_path / "policy.csv"
    source.write_bytes(b"p, default, \xff\n")
    result = run(import_command, "--tenant", "default", source)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{source}:1:13: WA002 ")


def test_dry_run_prints_the_changes_and_writes_nothing(store: Database, tmp_path: Path) -> None:
    source = policy_file(tmp_path, SHIPPED_CELLS - {PARENT_COMPLETED})
    result = run(import_command, "--tenant", "default", source, "--dry-run")
    assert (result.exit_code, result.stdout) == (
        0,
        "- p, default, parent, behaviour, completed, view\n",
    )
    assert "nothing was written" in result.stderr
    assert (live(store), version(store), audit(store)) == (SHIPPED_CELLS, 1, [])


def test_rows_of_another_tenant_are_refused_unless_from_tenant_names_it(
    store: Database, tmp_path: Path
) -> None:
    source = policy_file(tmp_path, SHIPPED_CELLS - {PARENT_COMPLETED}, tenant="north")
    refused = run(import_command, "--tenant", "default", source)
    assert refused.exit_code == 1
    assert f"{source}:1: the row is for tenant 'north', not 'default'" in refused.stderr
    assert "--from-tenant north" in refused.stderr
    assert version(store) == 1
    copied = run(import_command, "--tenant", "default", "--from-tenant", "north", source)
    assert copied.exit_code == 0, copied.output
    assert copied.stdout == "- p, default, parent, behaviour, completed, view\n"
    assert (live(store), version(store)) == (SHIPPED_CELLS - {PARENT_COMPLETED}, 2)
    mixed = run(import_command, "--tenant", "default", "--from-tenant", "south", source)
    assert mixed.exit_code == 1 and "not 'south'" in mixed.stderr


# -- diff ------------------------------------------------------------------------------------


def test_diff_exits_0_without_changes_and_1_with_them(store: Database, tmp_path: Path) -> None:
    same = run(diff_command, "--tenant", "default", policy_file(tmp_path, SHIPPED_CELLS))
    assert (same.exit_code, same.stdout) == (0, "")
    assert same.stderr.startswith("0 changes between tenant 'default' (version 1)")
    source = policy_file(tmp_path, SHIPPED_CELLS - {PARENT_COMPLETED} | {PARENT_APPROVAL})
    changed = run(diff_command, "--tenant", "default", source)
    assert changed.exit_code == 1
    assert changed.stdout == (
        "+ p, default, parent, behaviour, organisation_approval, view\n"
        "- p, default, parent, behaviour, completed, view\n"
    )
    dry_run = run(import_command, "--tenant", "default", source, "--dry-run")
    assert dry_run.stdout == changed.stdout
    assert version(store) == 1


def test_diff_refuses_an_invalid_file(store: Database, tmp_path: Path) -> None:
    source = tmp_path / "policy.csv"
    source.write_text("# nothing yet\n")
    result = run(diff_command, "--tenant", "default", source)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"{source}:1:1: WA315 ")


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [export_command, import_command, diff_command])
def test_an_unknown_tenant_exits_1(store: Database, tmp_path: Path, command: click.Command) -> None:
    args = [] if command is export_command else [policy_file(tmp_path, SHIPPED_CELLS, "north")]
    result = run(command, "--tenant", "north", *args)
    assert result.exit_code == 1
    assert "Error: unknown tenant 'north'" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tenant", "North"], "'North' is not a tenant id"),
        (["{file}"], "Missing option '--tenant'"),
        (["--tenant", "default", "missing.csv"], "'missing.csv' does not exist"),
        (["--tenant", "default", "{file}", "--actor", " "], "Invalid value for '--actor'"),
        (
            ["--tenant", "default", "{file}", "--actor", "ada\u202e"],
            "Invalid value for '--actor': must not hold U+202E RIGHT-TO-LEFT OVERRIDE "
            "(character 4), a format character (Unicode category Cf)",
        ),
        (
            ["--tenant", "default", "{file}", "--actor", "ada\x1b[2J"],
            "Invalid value for '--actor': must not hold U+001B (character 4), a control character",
        ),
        (["--tenant", "default", "{file}", "--from-tenant", "a-b"], "'a-b' is not a tenant id"),
    ],
)
def test_bad_usage_exits_2(store: Database, tmp_path: Path, args: list[str], message: str) -> None:
    file = str(policy_file(tmp_path, SHIPPED_CELLS))
    result = run(import_command, *(file if a == "{file}" else a for a in args))
    assert result.exit_code == 2
    assert message in result.stderr


def test_an_unreachable_store_is_an_error_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'missing' / 'store.sqlite3'}"
    monkeypatch.setenv("WORKFLOW_AUTHZ_DATABASE_URL", url)
    result = run(export_command, "--tenant", "default")
    assert result.exit_code == 1
    assert (
        result.stderr
        == "Error: the store failed (unable to open database file); nothing was written\n"
    )


@pytest.mark.parametrize("table", ["casbin_rule", "policy_changes"])
def test_a_store_failure_mid_import_leaves_the_previous_policy_intact(
    store: Database, tmp_path: Path, table: str
) -> None:
    """The trigger fails the transaction after the version bump and the deletes (and, for the
    audit table, after the inserts too): everything before it must roll back."""
    with store.write() as conn:
        conn.exec_driver_sql(
            f"CREATE TRIGGER refuse BEFORE INSERT ON {table} "
            "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )
    source = policy_file(tmp_path, SHIPPED_CELLS - {PARENT_COMPLETED} | {PARENT_APPROVAL})
    before = audit_count(store)
    result = run(import_command, "--tenant", "default", source)
    assert result.exit_code == 1
    assert "disk on fire" in result.stderr and "nothing was written" in result.stderr
    assert isinstance(result.exception, SystemExit)  # reported, not a traceback
    assert (live(store), version(store), audit_count(store)) == (SHIPPED_CELLS, 1, before)
    assert exported() == policy_text("default", 1, SHIPPED_CELLS, WORKFLOW)


# -- round trip ------------------------------------------------------------------------------


def matrices(workflow: Workflow) -> st.SearchStrategy[frozenset[Cell]]:
    """Matrices the checker accepts: exactly one staff advance per non-final phase and none on
    the final one, any view, staff edits, staff reopens after an area's first phase."""
    staff = [r.id for r in workflow.staff]
    free = [cell for cell in workflow.cells() if _freely_allowed(cell, workflow, staff)]
    advances = [
        st.sampled_from([(role, area.id, phase.id, "advance") for role in staff])
        for area in workflow.areas
        for phase in area.phases[:-1]
    ]
    return st.builds(_matrix, st.frozensets(st.sampled_from(free)), st.tuples(*advances))


def _matrix(free: frozenset[Cell], advances: tuple[Cell, ...]) -> frozenset[Cell]:
    return free | frozenset(advances)


def _freely_allowed(cell: Cell, workflow: Workflow, staff: list[str]) -> bool:
    """Whether a cell may be ticked or not without breaking a rule (advance is drawn apart)."""
    role, area, phase, action = cell
    if action == "reopen":
        return role in staff and workflow.area_by_id[area].first_phase.id != phase
    return action == "view" or (action == "edit" and role in staff)


@settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(matrix=matrices(WORKFLOW))
def test_any_valid_matrix_survives_export_import_export(
    store: Database, tmp_path: Path, matrix: frozenset[Cell]
) -> None:
    loaded = run(import_command, "--tenant", "default", policy_file(tmp_path, set(matrix)))
    assert loaded.exit_code == 0, loaded.output
    first = exported()
    assert first == policy_text("default", version(store) or 0, matrix, WORKFLOW)
    again = tmp_path / f"export-{len(list(tmp_path.iterdir()))}.csv"
    again.write_text(first)
    assert run(import_command, "--tenant", "default", again).exit_code == 0
    assert exported() == first
    assert run(diff_command, "--tenant", "default", again).exit_code == 0
    assert live(store) == matrix
