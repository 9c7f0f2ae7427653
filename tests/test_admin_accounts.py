"""Admin sessions that end and the admin lifecycle (issue 10, items 4 and 5), on SQLite and
PostgreSQL: logging out ends every session of the account, a copy of the cookie included (GET and
POST alike go to the login); `admins reset-password` and `admins disable`, run
from the CLI, end a session that is live in a browser; a disabled admin's right password is
answered as a wrong one; the last active all-tenant admin cannot be disabled, not even by two
disables at once; `admins list` shows each state (failed logins lock no account); `admins unlock`
and `reset-password` clear what the per-account lock of earlier versions left in a row."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text, update

from service import accounts
from service.cli import main
from service.db import Database
from service.errors import Conflict
from service.models import Admin, iso, utcnow

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a brand new long passphrase"
WRONG = "not the password at all"
Cli = Callable[..., Result]


@pytest.fixture
def cli(store_url: str, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """`workflow-authz ARGS` on the test's store, with INPUT on standard input."""
    monkeypatch.setenv("WORKFLOW_AUTHZ_DATABASE_URL", store_url)

    def run(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(main, list(args), input=input)

    return run


def make_admin(db: Database, username: str, tenant: str | None = None) -> None:
    with db.write() as conn:
        accounts.create_admin(conn, username, tenant, PASSWORD)


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "every form carries a CSRF token"
    return match.group(1)


def log_in(client: FlaskClient, username: str, password: str = PASSWORD) -> Any:
    token = csrf_token(client.get("/admin/login").text)
    return client.post(
        "/admin/login", data={"csrf_token": token, "username": username, "password": password}
    )


def logged_in(app: Flask, username: str) -> FlaskClient:
    """A browser of its own, logged in as this admin."""
    client = app.test_client()
    assert log_in(client, username).status_code == 303
    assert signed_in(client)
    return client


def signed_in(client: FlaskClient) -> bool:
    """Whether an admin page opens (200) rather than sending the browser to the login (302)."""
    page = client.get("/admin/audit?tenant=default")
    assert page.status_code in (200, 302)
    if page.status_code == 302:
        assert page.headers["Location"].startswith("/admin/login?next=")
    return page.status_code == 200


def states(cli: Cli) -> dict[str, str]:
    """`admins list` as username -> state."""
    listed = cli("admins", "list")
    assert listed.exit_code == 0, listed.output
    return {line.split("\t")[0]: line.split("\t")[2] for line in listed.stdout.splitlines()}


# -- sessions that end ----------------------------------------------------------------------------


def test_a_copy_of_the_cookie_taken_before_logout_is_sent_to_the_login(
    app: Flask, db: Database
) -> None:
    make_admin(db, "sysadmin")
    browser, elsewhere = logged_in(app, "sysadmin"), logged_in(app, "sysadmin")
    token = csrf_token(browser.get("/admin/workflow/behaviour?tenant=default").text)
    cookie = browser.get_cookie("session")
    assert cookie is not None

    logout = browser.post("/admin/logout", data={"csrf_token": token})
    assert logout.status_code == 303
    browser.set_cookie("session", cookie.value)  # the cookie as it was before logging out
    assert not signed_in(browser)
    browser.set_cookie("session", cookie.value)  # the refusal cleared it; present it again
    post = browser.post("/admin/workflow/behaviour", data={"csrf_token": token, "step": "review"})
    assert post.status_code == 302
    assert post.headers["Location"] == "/admin/login?next=/admin/workflow/behaviour"

    assert not signed_in(elsewhere), "logging out ends the account's sessions in every browser"
    assert signed_in(logged_in(app, "sysadmin")), "a new login works"


def test_reset_password_from_the_cli_ends_a_live_session(
    app: Flask, db: Database, cli: Cli
) -> None:
    make_admin(db, "sysadmin")
    browser = logged_in(app, "sysadmin")
    reset = cli("admins", "reset-password", "sysadmin", input=f"{NEW_PASSWORD}\n")
    assert reset.exit_code == 0, reset.output
    assert reset.stdout == "New password set for 'sysadmin'; its sessions are ended.\n"
    assert not signed_in(browser)
    assert "Wrong username or password." in log_in(browser, "sysadmin").text
    assert log_in(browser, "sysadmin", NEW_PASSWORD).status_code == 303
    assert signed_in(browser)


def test_disable_from_the_cli_ends_a_live_session_and_the_password_then_fails_as_a_wrong_one(
    app: Flask, db: Database, cli: Cli
) -> None:
    make_admin(db, "root")
    make_admin(db, "alice", "default")
    browser = logged_in(app, "alice")
    disabled = cli("admins", "disable", "alice")
    assert (disabled.exit_code, disabled.stdout) == (0, "Disabled admin 'alice'.\n")
    assert not signed_in(browser)

    right, wrong = log_in(browser, "alice"), log_in(browser, "alice", WRONG)
    for refused in (right, wrong):
        assert refused.status_code == 200
        assert "Wrong username or password." in refused.text and "disabled" not in refused.text
    assert not signed_in(browser)
    for _ in range(2):  # failing on a disabled account says nothing else either (4 failures
        assert log_in(browser, "alice", WRONG).status_code == 200  # in all: under the limit)

    assert cli("admins", "disable", "alice").stdout == "'alice' was disabled before.\n"
    enabled = cli("admins", "enable", "alice")
    assert (enabled.exit_code, enabled.stdout) == (0, "Enabled admin 'alice'.\n")
    assert log_in(browser, "alice").status_code == 303 and signed_in(browser)
    assert cli("admins", "enable", "alice").stdout == "'alice' was not disabled.\n"


# -- the last all-tenant admin --------------------------------------------------------------------


def test_the_last_active_all_tenant_admin_cannot_be_disabled(
    app: Flask, db: Database, cli: Cli
) -> None:
    make_admin(db, "root")
    make_admin(db, "alice", "default")
    refused = cli("admins", "disable", "root")
    assert refused.exit_code == 1
    assert refused.stderr == (
        "Error: 'root' is the last active admin for every tenant: create or enable another "
        "(`workflow-authz admins create --tenant '*' ...`) before disabling this one\n"
    )
    assert states(cli)["root"] == "active"
    browser = logged_in(app, "root")

    make_admin(db, "root2")
    assert cli("admins", "disable", "root").exit_code == 0
    assert not signed_in(browser)
    assert cli("admins", "disable", "root2").exit_code == 1, "root2 is the last one now"
    assert cli("admins", "disable", "alice").exit_code == 0, "tenant admins may all go"
    assert states(cli) == {"alice": "disabled", "root": "disabled", "root2": "active"}


def test_two_disables_at_once_of_the_last_two_all_tenant_admins_leave_one(db: Database) -> None:
    """The first disable holds its transaction open; the second must wait for it (PostgreSQL:
    seen waiting on a lock) and then be refused, whatever the order they were sent in."""
    make_admin(db, "root")
    make_admin(db, "root2")
    outcome: list[BaseException | bool] = []
    started = threading.Event()

    def second() -> None:
        started.set()
        try:
            with db.write() as conn:
                outcome.append(accounts.disable(conn, "root2"))
        except Conflict as error:
            outcome.append(error)

    with db.write() as conn:
        assert accounts.disable(conn, "root")
        thread = threading.Thread(target=second)
        thread.start()
        assert started.wait(10)
        if db.url.get_backend_name() == "postgresql":
            wait_for_a_lock_wait(db)
        assert not outcome, "the second disable must wait for the first"
    thread.join(30)
    assert not thread.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], Conflict)
    with db.read() as conn:
        active = conn.execute(select(Admin.username).where(Admin.disabled_at.is_(None))).all()
    assert [row.username for row in active] == ["root2"]


def wait_for_a_lock_wait(db: Database, deadline: float = 10.0) -> None:
    """Poll (bounded) until a session of this database waits for a row lock."""
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    found = threading.Event()
    stop = threading.Event()

    def poll() -> None:
        with db.reader.connect() as conn:
            while not stop.wait(0.01):  # a poll interval; the deadline is found.wait's
                if conn.execute(query).scalar_one():
                    found.set()
                    return

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        assert found.wait(deadline), "the second disable never waited for the first's lock"
    finally:
        stop.set()
        poller.join()


# -- list, unlock, reset-password ------------------------------------------------------------------


def fail_logins(db: Database, username: str) -> None:
    """Fail the login many times, as the form would: no account is locked by it."""
    for _ in range(12):
        assert accounts.check_login(db, username, WRONG).admin_id is None
    assert accounts.check_login(db, username, PASSWORD).admin_id is not None


def locked_by_an_earlier_version(db: Database, username: str) -> None:
    """The row as the per-account lock of earlier versions left it: locked for 15 minutes."""
    with db.write() as conn:
        conn.execute(
            update(Admin)
            .where(Admin.username == username)
            .values(failed_logins=5, locked_until=utcnow() + timedelta(minutes=15))
        )


def test_admins_list_shows_tenant_state_and_creation(db: Database, cli: Cli) -> None:
    for username, tenant in [("carol", "default"), ("alice", None), ("bob", "default")]:
        make_admin(db, username, tenant)
    make_admin(db, "root")
    fail_logins(db, "bob")
    locked_by_an_earlier_version(db, "alice")
    assert cli("admins", "disable", "carol").exit_code == 0
    with db.read() as conn:
        created = {r.username: r.created_at for r in conn.execute(select(Admin))}
    listed = cli("admins", "list")
    assert listed.exit_code == 0
    assert listed.stdout.splitlines() == [
        f"alice\t*\tactive\t{iso(created['alice'])}",
        f"bob\tdefault\tactive\t{iso(created['bob'])}",
        f"carol\tdefault\tdisabled\t{iso(created['carol'])}",
        f"root\t*\tactive\t{iso(created['root'])}",
    ]


def test_an_old_lock_locks_nothing_and_unlock_and_reset_password_clear_it(
    db: Database, cli: Cli
) -> None:
    make_admin(db, "alice")
    make_admin(db, "bob")
    locked_by_an_earlier_version(db, "alice")
    locked_by_an_earlier_version(db, "bob")
    assert accounts.check_login(db, "alice", PASSWORD).admin_id is not None
    assert cli("admins", "unlock", "alice").stdout == "Unlocked admin 'alice'.\n"
    assert accounts.check_login(db, "alice", PASSWORD).admin_id is not None
    assert cli("admins", "reset-password", "bob", input=f"{NEW_PASSWORD}\n").exit_code == 0
    assert states(cli) == {"alice": "active", "bob": "active"}
    assert accounts.check_login(db, "bob", NEW_PASSWORD).admin_id is not None
    with db.read() as conn:
        cleared = conn.execute(select(Admin.failed_logins, Admin.locked_until)).all()
        assert [tuple(row) for row in cleared] == [(0, None), (0, None)]


@pytest.mark.parametrize(
    "args",
    [
        ("disable", "nobody"),
        ("enable", "nobody"),
        ("unlock", "nobody"),
        ("reset-password", "nobody"),
    ],
)
def test_an_unknown_admin_is_named_and_nothing_changes(
    db: Database, cli: Cli, args: tuple[str, str]
) -> None:
    make_admin(db, "root")
    result = cli("admins", *args, input=f"{NEW_PASSWORD}\n")
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: no admin named 'nobody' (`workflow-authz admins list` shows them)\n"
    )


def test_a_short_new_password_is_bad_usage_and_the_old_one_still_works(
    app: Flask, db: Database, cli: Cli
) -> None:
    make_admin(db, "root")
    browser = logged_in(app, "root")
    short = cli("admins", "reset-password", "root", input="short\n")
    assert short.exit_code == 2
    assert short.stderr == "Error: the password needs at least 12 characters\n"
    assert signed_in(browser), "a refused reset ends no session"
    assert accounts.check_login(db, "root", PASSWORD).admin_id is not None
