"""The `workflow-authz` command: serve, init, keys, admins, tenants and config."""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from sqlalchemy import Connection, select

from service import accounts, keys
from service.checker.rows import read_policy_file
from service.config import PREFIX, SETTINGS, load_config
from service.db import Database
from service.errors import ServiceError
from service.models import Admin, ApiKey
from service.policies import PolicyEngine
from service.policies.store import tenants
from service.policy_cli import (
    check_command,
    diff_command,
    export_command,
    import_command,
    test_command,
)
from service.workflows import Cell

ALL_TENANTS = "*"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """workflow-authz: who may view, edit and advance assessments at each workflow phase.

    Configuration comes from WORKFLOW_AUTHZ_* environment variables (see `workflow-authz config`).
    """
    with _errors():
        load_config()


@contextmanager
def _errors() -> Iterator[None]:
    """Print a service error as `Error: ...` and exit with its code (1, or 2 for bad input)."""
    try:
        yield
    except ServiceError as error:
        where = f" ({error.field})" if error.field else ""
        click.echo(f"Error: {error.message}{where}", err=True)
        sys.exit(error.exit_code)


def _engine() -> PolicyEngine:
    settings = load_config()
    return PolicyEngine.from_settings(Database(settings["DATABASE_URL"], 1), settings)


def default_cells() -> list[Cell]:
    """The shipped default policy's cells (rows of tenant `default` in policy/policy.csv)."""
    settings = load_config()
    rows = read_policy_file(Path(settings["POLICY_DIR"]) / "policy.csv")
    return [row[1:] for row in rows if row[0] == "default"]


@main.command()
@click.option(
    "--quickstart", is_flag=True, help="Also create and print a first API key if none exists."
)
def init(quickstart: bool) -> None:
    """Create or upgrade the schema; load the default policy into an empty store."""
    engine = _engine()
    with _errors():
        engine.db.upgrade()
        with engine.db.write() as conn:
            if not tenants(conn):
                engine.create_tenant(conn, "default", default_cells(), actor="init")
                click.echo("Loaded the default policy into tenant 'default' (version 1).")
            if quickstart:
                _quickstart_key(conn)
                _quickstart_admin(conn)
    click.echo(f"Store ready: {engine.db.url.render_as_string(hide_password=True)}")


def _quickstart_key(conn: Connection) -> None:
    if conn.execute(select(ApiKey.id)).first() is not None:
        click.echo("API keys exist already; make another with `workflow-authz keys create`.")
        return
    token = keys.create(conn, "quickstart", "default")
    click.echo("\nAn API key for tenant 'default' (shown once, stored only as a hash):\n")
    click.echo(f"    export KEY={token}\n")


def _quickstart_admin(conn: Connection) -> None:
    if conn.execute(select(Admin.id)).first() is not None:
        return
    password = secrets.token_urlsafe(12)
    accounts.create_admin(conn, "admin", None, password)
    click.echo("An admin for the web form (/admin/login), for every tenant (shown once):\n")
    click.echo(f"    username: admin    password: {password}\n")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers",
    default=(os.cpu_count() or 1) * 2 + 1,
    show_default="2 x cores + 1",
    type=click.IntRange(1, 64),
)
def serve(host: str, port: int, workers: int) -> None:
    """Serve the API with gunicorn (sync workers, one store connection pool each)."""
    from service.server import run

    settings = load_config()
    with _errors():
        if not Database(settings["DATABASE_URL"], 1).is_current():
            raise click.ClickException("the schema is not current: run `workflow-authz init` first")
    run(host, port, workers)


@main.group(name="keys")
def keys_group() -> None:
    """Create, list and revoke API keys."""


@keys_group.command(name="create")
@click.option("--tenant", required=True, help="The tenant the key may act for, or '*' for all.")
@click.option("--name", required=True, help="Who or what uses the key.")
def keys_create(tenant: str, name: str) -> None:
    """Create a key and print it once; only its hash is stored."""
    engine = _engine()
    with _errors(), engine.db.write() as conn:
        scope = None if tenant == ALL_TENANTS else tenant
        if scope is not None and scope not in tenants(conn):
            raise click.ClickException(
                f"unknown tenant {scope!r}: create it with `workflow-authz tenants create {scope}`"
            )
        click.echo(keys.create(conn, name, scope))


@keys_group.command(name="revoke")
@click.argument("prefix")
def keys_revoke(prefix: str) -> None:
    """Revoke the key with this prefix (the part after `wa_`); refused from the next request on."""
    engine = _engine()
    with _errors(), engine.db.write() as conn:
        keys.revoke(conn, prefix)
    click.echo(f"Revoked key {prefix}.")


@keys_group.command(name="list")
def keys_list() -> None:
    """List keys: prefix, tenant, state, name (never the key)."""
    engine = _engine()
    with _errors(), engine.db.read() as conn:
        for key in keys.listing(conn):
            click.echo(f"{key['prefix']}\t{key['tenant']}\t{key['state']}\t{key['name']}")


@main.group(name="tenants")
def tenants_group() -> None:
    """Create and list tenants."""


@tenants_group.command(name="create")
@click.argument("tenant")
def tenants_create(tenant: str) -> None:
    """Create a tenant whose policy starts as a copy of the shipped default policy."""
    engine = _engine()
    with _errors(), engine.db.write() as conn:
        engine.create_tenant(conn, tenant, default_cells(), actor="cli")
    click.echo(f"Created tenant {tenant!r} from the default policy.")


@tenants_group.command(name="list")
def tenants_list() -> None:
    """List tenants."""
    engine = _engine()
    with _errors(), engine.db.read() as conn:
        for tenant in tenants(conn):
            click.echo(tenant)


@main.group(name="admins")
def admins_group() -> None:
    """Create admin accounts for the web form."""


@admins_group.command(name="create")
@click.option("--tenant", required=True, help="The tenant the admin manages, or '*' for all.")
@click.option("--username", required=True)
def admins_create(tenant: str, username: str) -> None:
    """Create an admin; the password is read from standard input (first line)."""
    password = sys.stdin.readline().rstrip("\n")
    engine = _engine()
    with _errors(), engine.db.write() as conn:
        accounts.create_admin(conn, username, None if tenant == ALL_TENANTS else tenant, password)
    click.echo(f"Created admin {username!r}.")


@main.command(name="config")
def show_config() -> None:
    """List the configuration variables, their current values and what each is for."""
    current = load_config()
    for setting in SETTINGS:
        value = (
            "(set)"
            if setting.name == "SECRET_KEY" and current[setting.name]
            else current[setting.name]
        )
        click.echo(f"{PREFIX}{setting.name}={value}\n    {setting.description}")


for command in (check_command, test_command, export_command, import_command, diff_command):
    main.add_command(command)

if __name__ == "__main__":  # pragma: no cover
    main()
