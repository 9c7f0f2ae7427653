"""Every `workflow-authz` command under a broken model.conf, a broken workflow.toml and a broken or
unreachable store (issue 15): each reports the fault as one `Error: ...` line (or, for check and
test, as the checker's problems) with a non-zero exit code, and none raises. The commands are read
from the Click group itself, so a new command without an entry in COMMANDS fails here."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from service.cli import main

REPO = Path(__file__).resolve().parent.parent
Fault = Callable[[Path], dict[str, str]]

COMMANDS: dict[str, list[str]] = {
    "init": [],
    "serve": ["--port", "1", "--workers", "1"],
    "deliver": [],
    "keys create": ["--tenant", "default", "--name", "n"],
    "keys revoke": ["0123abcd"],
    "keys list": [],
    "tenants create": ["north"],
    "tenants list": [],
    "admins create": ["--tenant", "default", "--username", "ada"],
    "admins list": [],
    "admins disable": ["ada"],
    "admins enable": ["ada"],
    "admins reset-password": ["ada"],
    "admins unlock": ["ada"],
    "config": [],
    "check": [],
    "test": [],
    "export": ["--tenant", "default"],
    "import": ["--tenant", "default", str(REPO / "policy" / "policy.csv")],
    "diff": ["--tenant", "default", str(REPO / "policy" / "policy.csv")],
    "webhooks add": ["--tenant", "default", "--url", "http://93.184.215.14/hooks"],
    "webhooks list": [],
    "webhooks remove": ["1"],
    "webhooks rotate-secret": ["1"],
    "webhooks retry": ["1"],
}
"""Each command and the fewest arguments it needs to get as far as the store."""
READS = {"config": set(), "check": {"model", "definition"}, "test": {"definition"}}
"""What a command reads of model, definition and store, where it is not all three."""


def command_names(group: click.Group, prefix: str = "") -> Iterator[str]:
    """Every runnable command of the group, subcommands as `group sub`."""
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from command_names(command, f"{prefix}{name} ")
        else:
            yield prefix + name


def _policy_dir(tmp_path: Path, workflow: str) -> dict[str, str]:
    """A copy of the shipped policy folder whose workflow.toml says `workflow`."""
    folder = tmp_path / "policy"
    shutil.copytree(REPO / "policy", folder)
    (folder / "workflow.toml").write_text(workflow, encoding="utf-8")
    return {"WORKFLOW_AUTHZ_POLICY_DIR": str(folder)}


def _model(tmp_path: Path, text: str) -> dict[str, str]:
    (tmp_path / "model.conf").write_text(text, encoding="utf-8")
    return {"WORKFLOW_AUTHZ_MODEL_PATH": str(tmp_path / "model.conf")}


def _sqlite_folder(tmp_path: Path) -> dict[str, str]:
    """A folder stands where the SQLite file should be: the store cannot be opened."""
    (tmp_path / "store.sqlite3").mkdir()
    return {"WORKFLOW_AUTHZ_DATABASE_URL": f"sqlite:///{tmp_path / 'store.sqlite3'}"}


FAULTS: dict[str, Fault] = {
    "model not casbin": lambda tmp: _model(tmp, "this is not a model\n"),
    "model of another shape": lambda tmp: _model(tmp, "[request_definition]\nr = sub, obj\n"),
    "model missing": lambda tmp: {"WORKFLOW_AUTHZ_MODEL_PATH": str(tmp / "gone.conf")},
    "definition not toml": lambda tmp: _policy_dir(tmp, "[[roles]\n"),
    "definition without areas": lambda tmp: _policy_dir(tmp, 'roles = []\nactions = ["view"]\n'),
    "store is a folder": _sqlite_folder,
    "store unreachable": lambda tmp: {
        "WORKFLOW_AUTHZ_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"
    },
    "store url unknown": lambda tmp: {"WORKFLOW_AUTHZ_DATABASE_URL": "nosuchdb://x/y"},
}


def outcome(command: str, fault: str) -> str:
    """`ok`: the command does not read what is broken; `problems`: check and test report the
    checker's findings (check calls a missing model file bad usage); `error`: an Error line."""
    if fault.split()[0] not in READS.get(command, {"model", "definition", "store"}):
        return "ok"
    return "problems" if command in READS and fault != "model missing" else "error"


def test_the_table_names_every_command() -> None:
    assert sorted(command_names(main)) == sorted(COMMANDS)


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_fault_is_an_error_line_never_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, fault: str
) -> None:
    monkeypatch.setenv("WORKFLOW_AUTHZ_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    for name, value in FAULTS[fault](tmp_path).items():
        monkeypatch.setenv(name, value)
    args = [*command.split(), *COMMANDS[command]]
    result = CliRunner().invoke(main, args, input="correct horse battery\n", catch_exceptions=False)
    assert "Traceback" not in result.output
    expected = outcome(command, fault)
    if expected == "ok":
        assert result.exit_code == 0, result.output
    elif expected == "problems":
        assert result.exit_code == 1 and re.search(r":\d+:\d+: WA[12]\d\d ", result.stdout)
    else:
        assert result.exit_code != 0
        lines = result.stderr.splitlines()
        assert lines[-1].startswith("Error: ") and result.stderr.count("Error: ") == 1
        assert len(lines) == 1 or command == "check", "one line; check's bad usage shows usage"
