"""Admin passwords are never stored or logged in clear (issue 6, item 5): after logins through the
admin form -- a successful one, wrong passwords up to the limit and one past it, an unknown name,
the right password while that address waits -- neither the password nor a wrong one appears in any
file of the SQLite store (the main file and its -wal, read while the service still has them open,
and again after it closed them), in any log record captured at DEBUG (SQLAlchemy's statements,
parameters and rows included), or in any answer the form sent."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.test import TestResponse

from service import accounts, create_app
from service.throttle import LOGIN_ACCOUNT

PASSWORD = "Secret-passphrase-4-admin"
WRONG = "Wrong-passphrase-9-guess"
SECRETS = (PASSWORD, WRONG)


@pytest.fixture
def app(sqlite_url: str, caplog: pytest.LogCaptureFixture) -> Iterator[Flask]:
    """The service on a SQLite file, logging everything at DEBUG into caplog."""
    application = create_app({"DATABASE_URL": sqlite_url, "TESTING": True, "LOG_LEVEL": "DEBUG"})
    for name in ("", "workflow_authz", "sqlalchemy.engine"):  # the SQL, parameters and rows too
        caplog.set_level(logging.DEBUG, logger=name or None)
    with application.extensions["workflow_authz.db"].write() as conn:
        accounts.create_admin(conn, "sysadmin", None, PASSWORD)
    yield application
    application.extensions["workflow_authz.db"].dispose()


def csrf_token(html: str) -> str:
    """The CSRF token of the page's form."""
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the login form carries a CSRF token"
    return match.group(1)


def store_files(sqlite_url: str) -> dict[str, bytes]:
    """Every file of the store: the database, its -wal and -shm (and a -journal, if any)."""
    database = Path(sqlite_url.removeprefix("sqlite:///"))
    return {p.name: p.read_bytes() for p in database.parent.glob(f"{database.name}*")}


def log_in(app: Flask, username: str, password: str) -> list[TestResponse]:
    """A login through the form as a browser sends it: the page, then the POST."""
    client = app.test_client()
    page = client.get("/admin/login")
    data = {"csrf_token": csrf_token(page.text), "username": username, "password": password}
    return [page, client.post("/admin/login", data=data)]


def every_kind_of_login(app: Flask) -> list[TestResponse]:
    """Success, failures up to the limit and one past it, an unknown name, the right password
    while the address waits."""
    answers = log_in(app, "sysadmin", PASSWORD)
    assert answers[-1].status_code == 303
    limit = LOGIN_ACCOUNT[0].amount
    for _ in range(limit + 1):
        answers += log_in(app, "sysadmin", WRONG)
    answers += log_in(app, "nobody", PASSWORD)
    answers += log_in(app, "sysadmin", PASSWORD)
    posts = [a.status_code for a in answers[3::2]]
    assert posts == [200] * limit + [429, 200, 429], "refused, waits, refused, waits"
    return answers


def test_no_password_is_in_the_store_files_including_the_wal(app: Flask, sqlite_url: str) -> None:
    every_kind_of_login(app)
    while_open = store_files(sqlite_url)
    assert any(name.endswith("-wal") for name in while_open), "the store runs in WAL mode"
    app.extensions["workflow_authz.db"].dispose()
    after_close = store_files(sqlite_url)
    for files in (while_open, after_close):
        everything = b"".join(files.values())
        assert b"scrypt:" in everything, "the admin's hash is there: these are the right files"
        for secret in SECRETS:
            assert secret.encode() not in everything


def test_no_password_is_in_the_logs(app: Flask, caplog: pytest.LogCaptureFixture) -> None:
    every_kind_of_login(app)
    assert "password_hash" in caplog.text, "the queries reading the admin were captured"
    for secret in SECRETS:
        assert secret not in caplog.text
        assert not [r for r in caplog.records if secret in r.getMessage()]


def test_no_password_is_sent_back(app: Flask) -> None:
    for answer in every_kind_of_login(app):
        sent = answer.get_data() + str(answer.headers).encode()
        assert not [s for s in SECRETS if s.encode() in sent]
