"""The `workflow-authz` command: serve, init, keys, admins, tenants, webhooks and config."""

from __future__ import annotations

import os
import re
import secrets
import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy import Connection
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from service import accounts, keys, policy_changes
from service.admin import secret_key
from service.checker.rows import read_policy_file
from service.cli_errors import CommandError, loading, reported, settings, store_engine
from service.config import PREFIX, SETTINGS, Setting
from service.limits import visible
from service.models import iso
from service.policies.store import DEFAULT_TENANT, current_version, tenants
from service.policy_cli import (
    check_command,
    diff_command,
    export_command,
    import_command,
    test_command,
)
from service.webhooks.cli import webhooks_group
from service.workflows import Cell

ALL_TENANTS = "*"
HIDDEN = "***"
SECRET_QUERY = re.compile(r"([?&](?:password|passwd|pass|sslpassword|secret|token)=)[^&#]*", re.I)
"""A password given as a URL's query parameter (libpq reads `?password=`)."""
USERINFO_PASSWORD = re.compile(r"(://[^/?#@:]*:)[^/?#@]*@")
"""The password of a URL's `user:password@`, for URLs SQLAlchemy cannot parse (several hosts)."""
HOST = click.option("--host", default="127.0.0.1", show_default=True)
PORT = click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """workflow-authz: who may view, edit and advance assessments at each workflow phase.

    Configuration comes from WORKFLOW_AUTHZ_* environment variables (see `workflow-authz config`).
    """
    settings()


def default_cells() -> list[Cell]:
    """The shipped default policy's cells (rows of tenant `default` in policy/policy.csv)."""
    config = settings()
    policy = Path(config["POLICY_DIR"]) / "policy.csv"
    with loading("default policy", policy):
        rows = read_policy_file(policy)
    return [row[1:] for row in rows if row[0] == DEFAULT_TENANT]


@main.command()
@click.option(
    "--quickstart", is_flag=True, help="Also create and print a first API key if none exists."
)
@HOST
@PORT
def init(quickstart: bool, host: str, port: int) -> None:
    """Create or upgrade the schema; load the default policy into an empty store.

    With --quickstart, --host and --port say where `serve` will listen, for the address printed.
    """
    with store_engine() as engine:
        engine.db.upgrade()
        with engine.db.write() as conn:
            if not tenants(conn):
                policy_changes.create_tenant(conn, DEFAULT_TENANT, default_cells(), actor="init")
                click.echo("Loaded the default policy into tenant 'default' (version 1).")
            if quickstart:
                _quickstart_key(conn)
                _quickstart_admin(conn, _admin_url(host, port))
        click.echo(f"Store ready: {engine.db.url.render_as_string(hide_password=True)}")


def _quickstart_key(conn: Connection) -> None:
    """A first key for tenant `default`, unless there is a key already."""
    if keys.has_any(conn):
        click.echo("API keys exist already; make another with `workflow-authz keys create`.")
        return
    token = keys.create(conn, "quickstart", DEFAULT_TENANT)
    click.echo("\nAn API key for tenant 'default' (shown once, stored only as a hash):\n")
    click.echo(f"    export KEY={token}\n")


def _quickstart_admin(conn: Connection, url: str) -> None:
    """A first all-tenant admin with a random password, unless there is an admin already."""
    if accounts.has_any(conn):
        click.echo(f"Admins exist already; the web form is at {url}")
        return
    password = secrets.token_urlsafe(12)
    accounts.create_admin(conn, "admin", None, password)
    click.echo(f"An admin for the web form at {url}, for every tenant (shown once):\n")
    click.echo(f"    username: admin    password: {password}\n")


def _admin_url(host: str, port: int) -> str:
    """The admin login page's address on `serve --host HOST --port PORT` (IPv6 in brackets)."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/admin/login"


@main.command()
@HOST
@PORT
@click.option(
    "--workers",
    default=os.cpu_count() or 1,
    show_default="one per core",
    type=click.IntRange(1, 64),
)
def serve(host: str, port: int, workers: int) -> None:
    """Serve the API with granian: worker processes, each with its own store pools; headers are
    read by granian's Rust I/O and bodies on each worker's event loop, so only a whole request
    reaches one of the worker's THREADS (slow clients cost a socket, not a thread).

    What would fail in every worker is refused first, in one line: a server limit out of range
    or no session signing key for a shared store (exit 2), a broken model or definition, a store
    without the current schema.
    """
    from service.server import ServerSettings, run

    with reported():
        ServerSettings.from_config(settings())
    with store_engine() as engine:
        secret_key(settings())
        if not engine.db.is_current():
            raise CommandError("the schema is not current: run `workflow-authz init` first")
    run(host, port, workers)


@main.command()
@click.option("--parent", type=int, hidden=True, help="Stop when this process is gone (serve).")
def deliver(parent: int | None) -> None:
    """Run only the webhook delivery loop, until SIGTERM or SIGINT (the attempts in flight
    finish and are recorded). For operators who run it apart from `serve` (set
    WORKFLOW_AUTHZ_WEBHOOK_DELIVERY=false there); any number may run on one PostgreSQL."""
    from service import _configure_logging
    from service.webhooks.delivery import deliver as run_delivery

    config = settings()
    _configure_logging(config["LOG_LEVEL"])  # the attempts' lines, as the workers write theirs
    with store_engine() as engine:
        if not engine.db.is_current():
            raise CommandError("the schema is not current: run `workflow-authz init` first")
    run_delivery(config, parent)


@main.group(name="keys")
def keys_group() -> None:
    """Create, list and revoke API keys."""


@keys_group.command(name="create")
@click.option("--tenant", required=True, help="The tenant the key may act for, or '*' for all.")
@click.option("--name", required=True, help="Who or what uses the key (unique among active keys).")
def keys_create(tenant: str, name: str) -> None:
    """Create a key and print it once; only its hash is stored."""
    with store_engine() as engine, engine.db.write() as conn:
        click.echo(keys.create_unique(conn, name, _existing_tenant(conn, tenant)))


@keys_group.command(name="revoke")
@click.argument("prefix")
def keys_revoke(prefix: str) -> None:
    """Revoke the key with this prefix (the part after `wa_`, or its first 4+ characters when no
    other key's starts so; or the whole key); refused from the next request on."""
    with store_engine() as engine, engine.db.write() as conn:
        revoked = keys.revoke(conn, prefix)
    click.echo(f"Revoked key {revoked.prefix} ({revoked.name}).")


@keys_group.command(name="list")
def keys_list() -> None:
    """List keys: prefix, tenant, state, name (never the key)."""
    with store_engine() as engine, engine.db.read() as conn:
        for key in keys.listing(conn):
            name = visible(key["name"] or "")  # as stored, even from before the free-text rule
            click.echo(f"{key['prefix']}\t{key['tenant']}\t{key['state']}\t{name}")


def _existing_tenant(conn: Connection, tenant: str) -> str | None:
    """A --tenant value as stored: None for all tenants; refused when no such tenant exists."""
    if tenant == ALL_TENANTS:
        return None
    if current_version(conn, tenant) is None:
        raise CommandError(
            f"unknown tenant {tenant!r}: create it with `workflow-authz tenants create {tenant}`"
        )
    return tenant


@main.group(name="tenants")
def tenants_group() -> None:
    """Create and list tenants."""


@tenants_group.command(name="create")
@click.argument("tenant")
def tenants_create(tenant: str) -> None:
    """Create a tenant whose policy starts as a copy of the shipped default policy."""
    with store_engine() as engine, engine.db.write() as conn:
        policy_changes.create_tenant(conn, tenant, default_cells(), actor="cli")
    click.echo(f"Created tenant {tenant!r} from the default policy.")


@tenants_group.command(name="list")
def tenants_list() -> None:
    """List tenants."""
    with store_engine() as engine, engine.db.read() as conn:
        for tenant in tenants(conn):
            click.echo(tenant)


@main.group(name="admins")
def admins_group() -> None:
    """Create, list, disable and enable admin accounts for the web form; reset their passwords."""


@admins_group.command(name="create")
@click.option("--tenant", required=True, help="The tenant the admin manages, or '*' for all.")
@click.option("--username", required=True)
def admins_create(tenant: str, username: str) -> None:
    """Create an admin; the password is read from standard input (first line)."""
    password = _password_from_stdin()
    with store_engine() as engine, engine.db.write() as conn:
        accounts.create_admin(conn, username, _existing_tenant(conn, tenant), password)
    click.echo(f"Created admin {username!r}.")


@admins_group.command(name="list")
def admins_list() -> None:
    """List admins: username, tenant ('*' for all), state (active or disabled), created."""
    with store_engine() as engine, engine.db.read() as conn:
        for admin in accounts.listing(conn):
            tenant = admin.tenant or ALL_TENANTS
            click.echo(f"{admin.username}\t{tenant}\t{admin.state}\t{iso(admin.created_at)}")


@admins_group.command(name="disable")
@click.argument("username")
def admins_disable(username: str) -> None:
    """Refuse the admin's logins and end its sessions (never the last all-tenant admin's)."""
    with store_engine() as engine, engine.db.write() as conn:
        changed = accounts.disable(conn, username)
    click.echo(f"Disabled admin {username!r}." if changed else f"{username!r} was disabled before.")


@admins_group.command(name="enable")
@click.argument("username")
def admins_enable(username: str) -> None:
    """Let a disabled admin log in again."""
    with store_engine() as engine, engine.db.write() as conn:
        changed = accounts.enable(conn, username)
    click.echo(f"Enabled admin {username!r}." if changed else f"{username!r} was not disabled.")


@admins_group.command(name="reset-password")
@click.argument("username")
def admins_reset_password(username: str) -> None:
    """Set a new password, read from standard input (first line); ends the admin's sessions."""
    password = _password_from_stdin()
    with store_engine() as engine, engine.db.write() as conn:
        accounts.reset_password(conn, username, password)
    click.echo(f"New password set for {username!r}; its sessions are ended.")


@admins_group.command(name="unlock")
@click.argument("username")
def admins_unlock(username: str) -> None:
    """Clear a lock left by an earlier version (logins no longer lock accounts)."""
    with store_engine() as engine, engine.db.write() as conn:
        accounts.unlock(conn, username)
    click.echo(f"Unlocked admin {username!r}.")


def _password_from_stdin() -> str:
    """The first line of standard input: a password never appears in arguments or history."""
    return sys.stdin.readline().rstrip("\n")


@main.command(name="config")
def show_config() -> None:
    """List the configuration variables, their current values and what each is for; a secret is
    shown only as set, a URL without its password."""
    current = settings()
    for setting in SETTINGS:
        click.echo(f"{PREFIX}{setting.name}={_shown(setting, current[setting.name])}")
        click.echo(f"    {setting.description}")


def _shown(setting: Setting, value: Any) -> str:
    """A setting's value as `config` prints it: a secret as `(set)` or nothing; any URL (the
    store's, a Redis one) with its password, in the user part or the query, as ***."""
    if setting.secret:
        return "(set)" if value else ""
    if isinstance(value, str) and "://" in value:
        return SECRET_QUERY.sub(rf"\g<1>{HIDDEN}", _without_user_password(value))
    return str(value)


def _without_user_password(url: str) -> str:
    """The URL with the password of its user part hidden, as SQLAlchemy renders it; unchanged
    when it has none."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return USERINFO_PASSWORD.sub(rf"\g<1>{HIDDEN}@", url)
    return url if parsed.password is None else parsed.render_as_string(hide_password=True)


for command in (
    check_command,
    test_command,
    export_command,
    import_command,
    diff_command,
    webhooks_group,
):
    main.add_command(command)

if __name__ == "__main__":  # pragma: no cover
    main()
