"""`workflow-authz check` and `test` (service/policy_cli.py), spec §5 and issue 4 items 1, 2, 5.

Runs every fixture folder under tests/policies/ through `check`: valid/ exits 0, each
invalid/<reason>/ exits 1 printing exactly the `file:line:column: CODE` lines of its expected.txt.
Then the output formats, bad usage (exit 2), `test` on the shipped policy (one case per cell, full
coverage), failing cases, --min-coverage, --junit, refusing invalid files, and files of garbage.
"""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from service import policy_cli
from service.cli import main
from service.workflows import load_workflow

check_command = policy_cli.check_command
cases_command = policy_cli.test_command  # not test_*: pytest would try to collect it

REPO = Path(__file__).resolve().parent.parent
POLICIES = Path(__file__).resolve().parent / "policies"
INVALID = sorted(p for p in (POLICIES / "invalid").iterdir() if p.is_dir())
ENV = {
    "WORKFLOW_AUTHZ_POLICY_DIR": str(REPO / "policy"),
    "WORKFLOW_AUTHZ_MODEL_PATH": str(REPO / "model.conf"),
}
CELLS = len(load_workflow(REPO / "policy" / "workflow.toml").cells())
"""The shipped matrix: roles x area-phases x the definition's actions (108, or 144 with reopen)."""
SHIPPED_SUMMARY = f"{CELLS} cases, {CELLS} passed, 0 failed; coverage 100.0% of {CELLS} cells"


def run(command: click.Command, *args: str | Path) -> Result:
    return CliRunner(env=ENV).invoke(command, [str(a) for a in args])


def located(result: Result, folder: Path) -> list[str]:
    """The `file:line:column: CODE` of each problem of a --format json run, file relative."""
    return [
        f"{Path(p['path']).relative_to(folder)}:{p['line']}:{p['column']}: {p['code']}"
        for p in json.loads(result.stdout)
    ]


def copy_policy(tmp_path: Path, cases: str | None = None) -> Path:
    """A copy of the shipped policy folder, with other cases when given."""
    folder = tmp_path / "policy"
    shutil.copytree(REPO / "policy", folder)
    if cases is not None:
        (folder / "cases.csv").write_text(cases, encoding="utf-8")
    return folder


# -- check -----------------------------------------------------------------------------------


def test_check_without_paths_checks_the_shipped_policy_and_model() -> None:
    result = run(check_command)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.stderr == "0 problems in 4 files checked\n"


def test_check_passes_the_valid_folder() -> None:
    result = run(check_command, POLICIES / "valid")
    assert (result.exit_code, result.stdout) == (0, "")


@pytest.mark.parametrize("folder", INVALID, ids=[f.name for f in INVALID])
def test_check_reports_each_invalid_folder_exactly(folder: Path) -> None:
    result = run(check_command, "--format", "json", folder)
    assert result.exit_code == 1, result.output
    expected = (folder / "expected.txt").read_text(encoding="utf-8").splitlines()
    assert located(result, folder) == expected


@pytest.mark.parametrize("folder", INVALID[:3], ids=[f.name for f in INVALID[:3]])
def test_text_format_prints_path_line_column_code_message(folder: Path) -> None:
    result = run(check_command, folder)
    expected = (folder / "expected.txt").read_text(encoding="utf-8").splitlines()
    lines = result.stdout.splitlines()
    assert result.exit_code == 1
    assert all(line.startswith(f"{folder / e} ") for line, e in zip(lines, expected, strict=True))


def test_github_format_prints_annotations() -> None:
    folder = POLICIES / "invalid" / "policy_spacing"
    result = run(check_command, "--format", "github", folder)
    assert result.exit_code == 1
    assert result.stdout == (
        f"::error file={folder / 'policy.csv'},line=6,col=12,title=WA304::"
        "write exactly one space after each comma (found none)\n"
    )


def test_check_accepts_single_files_of_each_kind() -> None:
    folder = POLICIES / "valid"
    result = run(check_command, *(folder / n for n in ("model.conf", "policy.csv", "cases.csv")))
    assert result.exit_code == 0, result.output
    assert result.stderr == "0 problems in 3 files checked\n"


def test_a_policy_is_checked_against_the_definition_among_the_paths(tmp_path: Path) -> None:
    (tmp_path / "workflow.toml").write_text(
        (REPO / "policy" / "workflow.toml").read_text().replace('"parent"', '"guardian"')
    )
    (tmp_path / "policy.csv").write_text((REPO / "policy" / "policy.csv").read_text())
    result = run(check_command, "--format", "json", tmp_path)
    assert {p["code"] for p in json.loads(result.stdout)} == {"WA306"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no/such/folder"], "does not exist"),
        (["README.md"], "not a policy file"),
        (["--format", "xml"], "Invalid value for '--format'"),
    ],
)
def test_bad_usage_exits_2(args: Sequence[str], message: str) -> None:
    result = CliRunner(env=ENV).invoke(check_command, [*args], catch_exceptions=False)
    assert result.exit_code == 2
    assert message in result.stderr


def test_a_folder_without_policy_files_is_bad_usage(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing to check")
    result = run(check_command, tmp_path)
    assert result.exit_code == 2
    assert "no model.conf, workflow.toml or *.csv files" in result.stderr


def test_a_missing_default_folder_is_bad_usage(tmp_path: Path) -> None:
    env = {**ENV, "WORKFLOW_AUTHZ_POLICY_DIR": str(tmp_path / "gone")}
    result = CliRunner(env=env).invoke(check_command, [])
    assert result.exit_code == 2
    assert "WORKFLOW_AUTHZ_POLICY_DIR" in result.stderr


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("model.conf", b"\x89PNG\r\n\x1a\n\x00\x00", "WA003"),
        ("workflow.toml", b"\xff\xfe[[roles]]", "WA002"),
        ("policy.csv", b"", "WA005"),
        ("cases.csv", b"\xef\xbb\xbfname,tenant", "WA006"),
        ("policy.csv", b"\x1b[31mp, \x7f\n", "WA301"),
    ],
)
def test_garbage_files_are_reported_never_raised(
    tmp_path: Path, name: str, data: bytes, code: str
) -> None:
    (tmp_path / name).write_bytes(data)
    result = CliRunner(env=ENV).invoke(
        check_command, ["--format", "json", str(tmp_path)], catch_exceptions=False
    )
    assert result.exit_code == 1
    assert [p["code"] for p in json.loads(result.stdout)] == [code]


def test_a_huge_file_is_reported(tmp_path: Path) -> None:
    (tmp_path / "policy.csv").write_bytes(b"# padding\n" * (1024 * 1024 + 1))
    result = run(check_command, tmp_path)
    assert result.exit_code == 1
    assert result.stdout == f"{tmp_path / 'policy.csv'}:1:1: WA004 the file is larger than 10 MiB\n"


# -- test ------------------------------------------------------------------------------------


def test_test_without_paths_runs_the_shipped_cases() -> None:
    result = run(cases_command, "--min-coverage", "100")
    assert result.exit_code == 0, result.output
    assert result.stdout == SHIPPED_SUMMARY + "\n"


def test_test_runs_the_valid_folder() -> None:
    result = run(cases_command, POLICIES / "valid")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == (
        "5 cases, 5 passed, 0 failed; coverage 2.3% of 216 cells"
    )


def test_a_failing_case_names_the_case_expected_actual_and_rule(tmp_path: Path) -> None:
    cases = (
        "name,tenant,role,area,phase,action,expect\n"
        "parent sees completed behaviour,default,parent,behaviour,completed,view,deny\n"
        "parent edits completed behaviour,default,parent,behaviour,completed,edit,allow\n"
    )
    folder = copy_policy(tmp_path, cases)
    result = run(cases_command, folder)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"FAIL {folder / 'cases.csv'}:2: parent sees completed behaviour: expected deny, got "
        "allow (matched rule `p, default, parent, behaviour, completed, view`)",
        f"FAIL {folder / 'cases.csv'}:3: parent edits completed behaviour: expected allow, got "
        "deny (no rule matched)",
        f"2 cases, 0 passed, 2 failed; coverage {200 / CELLS:.1f}% of {CELLS} cells",
    ]


def test_coverage_below_the_minimum_fails_and_lists_uncovered_cells(tmp_path: Path) -> None:
    shipped = (REPO / "policy" / "cases.csv").read_text().splitlines(keepends=True)
    folder = copy_policy(tmp_path, "".join(shipped[:-1]))
    last_cell = ", ".join(shipped[-1].strip().split(",")[1:6])
    percent = f"{100 * (CELLS - 1) / CELLS:.1f}%"
    result = run(cases_command, "--min-coverage", "100", folder)
    assert result.exit_code == 1
    assert f"uncovered cell: {last_cell}\n" in result.stdout
    assert result.stdout.splitlines()[-1].endswith(f"coverage {percent} of {CELLS} cells")
    assert result.stderr == f"coverage {percent} is below --min-coverage 100%\n"
    assert run(cases_command, "--min-coverage", "99", folder).exit_code == 0


def test_junit_report_is_written(tmp_path: Path) -> None:
    report = tmp_path / "junit.xml"
    result = run(cases_command, "--junit", report)
    assert result.exit_code == 0, result.output
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == (str(CELLS), "0")


def test_an_unwritable_junit_path_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    result = run(cases_command, "--junit", tmp_path / "missing" / "junit.xml")
    assert result.exit_code == 1
    assert "Could not open file" in result.stderr


def test_test_refuses_invalid_policy_files_with_the_checkers_messages(tmp_path: Path) -> None:
    folder = copy_policy(tmp_path)
    policy = folder / "policy.csv"
    line = len(policy.read_text().splitlines()) + 1
    policy.write_text(policy.read_text() + "p, default, parent, behaviour, completed, edit\n")
    result = run(cases_command, folder)
    assert result.exit_code == 1
    assert result.stdout.startswith(f"{policy}:{line}:43: WA314 ")
    assert "not running the cases" in result.stderr


def test_test_refuses_invalid_cases(tmp_path: Path) -> None:
    folder = copy_policy(tmp_path, "name,tenant\n")
    result = run(cases_command, folder)
    assert result.exit_code == 1
    assert result.stdout.startswith(f"{folder / 'cases.csv'}:1:1: WA401 ")


@pytest.mark.parametrize(("keep", "missing"), [("policy.csv", "case"), ("cases.csv", "policy")])
def test_test_without_cases_or_policy_is_bad_usage(tmp_path: Path, keep: str, missing: str) -> None:
    shutil.copy(REPO / "policy" / keep, tmp_path / keep)
    result = run(cases_command, tmp_path)
    assert result.exit_code == 2
    assert f"no {missing}" in result.stderr


# -- import and diff given a cases file --------------------------------------------------------


@pytest.mark.parametrize("command", [policy_cli.import_command, policy_cli.diff_command])
@pytest.mark.parametrize("name", ["cases.csv", "rows.csv"])
def test_import_and_diff_refuse_a_cases_file_in_one_line_and_change_nothing(
    tmp_path: Path, command: click.Command, name: str
) -> None:
    """Told apart by its header, not its name: a renamed cases file is refused the same way."""
    env = {**ENV, "WORKFLOW_AUTHZ_DATABASE_URL": f"sqlite:///{tmp_path / 'store.sqlite3'}"}
    assert CliRunner(env=env).invoke(main, ["init"]).exit_code == 0
    cases = tmp_path / name
    shutil.copy(REPO / "policy" / "cases.csv", cases)
    result = CliRunner(env=env).invoke(command, ["--tenant", "default", str(cases)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"Error: {cases} is a decision-cases file (header name,tenant,role,area,phase,action,"
        "expect), not a policy file: `workflow-authz test` runs cases\n"
    )
    exported = CliRunner(env=env).invoke(policy_cli.export_command, ["--tenant", "default"])
    assert exported.stdout.startswith("# Policy of tenant default at version 1")
