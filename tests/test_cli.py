"""The workflow-authz command: init, keys, tenants, admins and config, with their exit codes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from service.cli import main
from service.db import Database
from service.models import Admin, ApiKey


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("WORKFLOW_AUTHZ_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    return CliRunner()


@pytest.fixture
def store(runner: CliRunner, tmp_path: Path) -> Database:
    assert runner.invoke(main, ["init"]).exit_code == 0
    return Database(f"sqlite:///{tmp_path / 'cli.sqlite3'}")


def test_init_creates_schema_and_default_policy_once(runner: CliRunner) -> None:
    first = runner.invoke(main, ["init"])
    assert first.exit_code == 0 and "Loaded the default policy" in first.output
    again = runner.invoke(main, ["init"])
    assert again.exit_code == 0 and "Loaded" not in again.output
    assert runner.invoke(main, ["tenants", "list"]).output.split() == ["default"]


def test_quickstart_prints_one_key_and_one_admin_then_never_again(
    runner: CliRunner, tmp_path: Path
) -> None:
    first = runner.invoke(main, ["init", "--quickstart"])
    assert "export KEY=wa_" in first.output and "username: admin" in first.output
    token = first.output.split("export KEY=")[1].split()[0]
    second = runner.invoke(main, ["init", "--quickstart"])
    assert "export KEY" not in second.output and "password" not in second.output
    db = Database(f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    with db.read() as conn:
        stored = conn.execute(select(ApiKey.digest, ApiKey.tenant)).one()
    assert stored.tenant == "default" and token not in stored.digest
    assert token.encode() not in (tmp_path / "cli.sqlite3").read_bytes()


def test_keys_create_list_revoke(runner: CliRunner, store: Database) -> None:
    created = runner.invoke(main, ["keys", "create", "--tenant", "default", "--name", "report app"])
    assert created.exit_code == 0
    prefix = created.output.strip().split("_")[1]
    assert f"{prefix}\tdefault\tactive\treport app" in runner.invoke(main, ["keys", "list"]).output
    assert runner.invoke(main, ["keys", "revoke", prefix]).exit_code == 0
    assert f"{prefix}\tdefault\trevoked" in runner.invoke(main, ["keys", "list"]).output
    assert runner.invoke(main, ["keys", "revoke", prefix]).exit_code == 1
    everyone = runner.invoke(main, ["keys", "create", "--tenant", "*", "--name", "ops"])
    assert everyone.exit_code == 0


def test_keys_for_an_unknown_tenant_are_refused(runner: CliRunner, store: Database) -> None:
    result = runner.invoke(main, ["keys", "create", "--tenant", "north", "--name", "x"])
    assert result.exit_code == 1 and "tenants create north" in result.output
    assert runner.invoke(main, ["keys", "create", "--name", "x"]).exit_code == 2


def test_tenants_create_copies_the_default_policy(runner: CliRunner, store: Database) -> None:
    assert runner.invoke(main, ["tenants", "create", "north"]).exit_code == 0
    assert runner.invoke(main, ["tenants", "create", "north"]).exit_code == 1
    assert runner.invoke(main, ["tenants", "create", "North!"]).exit_code == 2
    assert runner.invoke(main, ["tenants", "list"]).output.split() == ["default", "north"]


def test_admins_create_hashes_the_password_from_stdin(runner: CliRunner, store: Database) -> None:
    args = ["admins", "create", "--tenant", "default", "--username", "ada"]
    assert runner.invoke(main, args, input="correct horse battery\n").exit_code == 0
    with store.read() as conn:
        admin = conn.execute(select(Admin)).one()
    assert admin.tenant == "default" and "correct horse" not in admin.password_hash
    assert runner.invoke(main, args, input="correct horse battery\n").exit_code == 1
    short = runner.invoke(
        main, ["admins", "create", "--tenant", "*", "--username", "bo"], input="short\n"
    )
    assert short.exit_code == 2 and "12 characters" in short.output


def test_serve_refuses_a_store_without_schema(runner: CliRunner) -> None:
    result = runner.invoke(main, ["serve", "--port", "1"])
    assert result.exit_code == 1 and "workflow-authz init" in result.output


def test_config_lists_every_variable_with_a_description(runner: CliRunner) -> None:
    output = runner.invoke(main, ["config"]).output
    assert "WORKFLOW_AUTHZ_DATABASE_URL=sqlite:///" in output
    assert output.count("WORKFLOW_AUTHZ_") >= 8


def test_a_bad_environment_value_is_a_usage_error(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKFLOW_AUTHZ_POOL_SIZE", "many")
    result = runner.invoke(main, ["config"])
    assert result.exit_code == 2 and "WORKFLOW_AUTHZ_POOL_SIZE must be an integer" in result.output
