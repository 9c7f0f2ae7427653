"""The workflow-authz command: init, keys, tenants, admins and config, with their exit codes."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, select, text, update

from service import keys
from service.cli import main
from service.config import PREFIX, SETTINGS
from service.db import Database
from service.models import Admin, ApiKey
from tests.conftest import IN_CI, PG_ADMIN_URL

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery\n"


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


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "report\u202eppa",
            "key name must not hold U+202E RIGHT-TO-LEFT OVERRIDE (character 7), "
            "a format character (Unicode category Cf)",
        ),
        ("ops\nroot", "key name must not hold U+000A (character 4), a control character"),
        (" ", "key name must not be blank"),
        ("x" * 201, "key name must be at most 200 characters, not 201"),
    ],
)
def test_a_key_name_that_would_not_read_as_stored_is_refused(
    runner: CliRunner, store: Database, name: str, message: str
) -> None:
    result = runner.invoke(main, ["keys", "create", "--tenant", "default", "--name", name])
    assert result.exit_code == 2 and result.stderr.startswith(f"Error: {message}")
    with store.read() as conn:
        assert conn.execute(select(ApiKey.name)).scalars().all() == []


def test_keys_list_shows_an_old_name_with_control_characters_as_codes(
    runner: CliRunner, store: Database
) -> None:
    """A name stored before the rule (written here directly) never reaches the terminal raw."""
    with store.write() as conn:
        keys.create(conn, "ops", "default")
        conn.execute(update(ApiKey).values(name="ops\x1b[2J\u202eppa"))
    listed = runner.invoke(main, ["keys", "list"]).output
    assert listed.endswith("\topsU+001B[2JU+202Eppa\n") and "\x1b" not in listed


def test_a_name_an_active_key_has_is_refused_until_that_key_is_revoked(
    runner: CliRunner, store: Database
) -> None:
    args = ["keys", "create", "--tenant", "default", "--name", "report app"]
    first = runner.invoke(main, args)
    assert first.exit_code == 0
    prefix = first.stdout.strip().split("_")[1]
    again = runner.invoke(main, [*args[:3], "*", *args[4:]])
    assert again.exit_code == 1
    assert again.stderr == (
        "Error: an active key is already named 'report app': revoke it first "
        f"(`workflow-authz keys revoke {prefix}`) or pick another name\n"
    )
    assert runner.invoke(main, ["keys", "list"]).stdout.count("report app") == 1
    assert runner.invoke(main, ["keys", "revoke", prefix]).exit_code == 0
    assert runner.invoke(main, args).exit_code == 0


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


def test_admins_for_an_unknown_tenant_are_refused_like_keys(
    runner: CliRunner, store: Database
) -> None:
    args = ["admins", "create", "--tenant", "north", "--username", "ada"]
    result = runner.invoke(main, args, input=PASSWORD)
    keys = runner.invoke(main, ["keys", "create", "--tenant", "north", "--name", "x"])
    assert (
        (result.exit_code, result.stderr)
        == (keys.exit_code, keys.stderr)
        == (
            1,
            "Error: unknown tenant 'north': create it with `workflow-authz tenants create north`\n",
        )
    )
    with store.read() as conn:
        assert conn.execute(select(Admin)).first() is None


def test_quickstart_prints_the_address_it_will_serve_the_admin_form_on(runner: CliRunner) -> None:
    first = runner.invoke(main, ["init", "--quickstart", "--host", "0.0.0.0", "--port", "9123"])
    assert first.exit_code == 0, first.output
    assert "http://0.0.0.0:9123/admin/login" in first.stdout
    again = runner.invoke(main, ["init", "--quickstart"])
    assert "http://127.0.0.1:8080/admin/login" in again.stdout
    ipv6 = runner.invoke(main, ["init", "--quickstart", "--host", "::1", "--port", "8081"])
    assert "http://[::1]:8081/admin/login" in ipv6.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_gives_the_quickstart_the_host_and_port_it_serves_on() -> None:
    commands = subprocess.run(
        ["make", "-n", "run", "HOST=0.0.0.0", "PORT=9123"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "workflow-authz init --quickstart --host 0.0.0.0 --port 9123\n" in commands
    assert "workflow-authz serve --host 0.0.0.0 --port 9123\n" in commands


def test_serve_refuses_a_store_without_schema(runner: CliRunner) -> None:
    result = runner.invoke(main, ["serve", "--port", "1"])
    assert result.exit_code == 1 and "workflow-authz init" in result.output


@pytest.fixture
def postgres() -> str:
    """The local PostgreSQL's URL (database `test`); mandatory in CI, skipped elsewhere when absent,
    as in conftest.py."""
    engine = create_engine(PG_ADMIN_URL)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any failure to connect means "no server here"
        if IN_CI:
            pytest.fail(f"CI=true but PostgreSQL at {PG_ADMIN_URL} is not reachable: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL} (set CI=true to require it)")
    finally:
        engine.dispose()
    return PG_ADMIN_URL


@pytest.mark.postgres
def test_serve_on_postgres_without_a_secret_key_refuses_before_starting(
    postgres: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database has no tables: the refusal comes before anything reads the store."""
    monkeypatch.setenv("WORKFLOW_AUTHZ_DATABASE_URL", postgres)
    monkeypatch.delenv("WORKFLOW_AUTHZ_SECRET_KEY", raising=False)
    result = CliRunner().invoke(main, ["serve", "--port", "1", "--workers", "1"])
    assert result.exit_code == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: set WORKFLOW_AUTHZ_SECRET_KEY (e.g. ")


def test_config_lists_every_variable_with_a_description(runner: CliRunner) -> None:
    output = runner.invoke(main, ["config"]).output
    assert "WORKFLOW_AUTHZ_DATABASE_URL=sqlite:///" in output
    assert output.count("WORKFLOW_AUTHZ_") >= 8


SECRET = "s3cret-pw"


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql+psycopg://authz:{SECRET}@db.example.com:5432/authz",
        f"redis://:{SECRET}@127.0.0.1:6379/0",
        f"redis+sentinel://authz:{SECRET}@h1:26379,h2:26379/main",
        f"postgresql://authz@db.example.com/authz?sslmode=require&password={SECRET}",
    ],
)
def test_config_never_prints_a_secret(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """Every text setting holds a URL with a password (the store's, a Redis one, any other), and
    each secret one a secret: `config` shows which are set, and none of them."""
    for setting in SETTINGS:
        if setting.secret:
            monkeypatch.setenv(PREFIX + setting.name, SECRET)
        elif isinstance(setting.default, str):
            monkeypatch.setenv(PREFIX + setting.name, url)
    result = runner.invoke(main, ["config"])
    assert result.exit_code == 0 and SECRET not in result.output
    assert f"WORKFLOW_AUTHZ_DATABASE_URL={url.replace(SECRET, '***')}\n" in result.output
    assert "WORKFLOW_AUTHZ_SECRET_KEY=(set)\n" in result.output


def test_a_bad_environment_value_is_a_usage_error(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORKFLOW_AUTHZ_POOL_SIZE", "many")
    result = runner.invoke(main, ["config"])
    assert result.exit_code == 2 and "WORKFLOW_AUTHZ_POOL_SIZE must be an integer" in result.output
