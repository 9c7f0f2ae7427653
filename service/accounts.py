"""Admin accounts for the web form: created by the CLI, passwords hashed with scrypt (werkzeug),
checked at login with a lockout after too many failures in a row. No Flask: the admin views are
thin shells over these functions, and this is the only module that queries the admins table."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import Connection, insert, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from service.db import Database
from service.errors import Conflict, InvalidRequest
from service.models import Admin, utcnow
from service.workflows import IDENTIFIER_RULE, is_identifier

MIN_PASSWORD = 12
MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)


@dataclass(frozen=True)
class Account:
    """An admin as the pages know it; `tenant` None means it may manage every tenant."""

    id: int
    username: str
    tenant: str | None


@dataclass(frozen=True)
class LoginResult:
    """A login attempt's outcome: the admin's id on success, the lock's end when locked."""

    admin_id: int | None
    locked_until: datetime | None = None


def create_admin(conn: Connection, username: str, tenant: str | None, password: str) -> None:
    """Create an admin for one tenant (or every tenant when None); Conflict if the name is taken."""
    if not is_identifier(username):
        raise InvalidRequest(f"username must be {IDENTIFIER_RULE}", field="username")
    if tenant is not None and not is_identifier(tenant):
        raise InvalidRequest(f"invalid tenant {tenant!r}", field="tenant")
    if len(password) < MIN_PASSWORD:
        raise InvalidRequest(
            f"the password needs at least {MIN_PASSWORD} characters", field="password"
        )
    if conn.execute(select(Admin.id).where(Admin.username == username)).first() is not None:
        raise Conflict(f"admin {username!r} already exists", field="username")
    conn.execute(
        insert(Admin).values(
            username=username,
            tenant=tenant,
            password_hash=generate_password_hash(password),
            created_at=utcnow(),
            failed_logins=0,
        )
    )


def has_any(conn: Connection) -> bool:
    """Whether any admin exists (the quickstart makes the first)."""
    return conn.execute(select(Admin.id).limit(1)).first() is not None


def find(conn: Connection, admin_id: int) -> Account | None:
    """The admin with this id, or None (a deleted admin's session no longer signs anyone in)."""
    row = conn.execute(
        select(Admin.id, Admin.username, Admin.tenant).where(Admin.id == admin_id)
    ).one_or_none()
    return None if row is None else Account(row.id, row.username, row.tenant)


def check_login(db: Database, username: str, password: str) -> LoginResult:
    """Check a password, counting failures: after MAX_FAILED_LOGINS in a row the account is
    locked for LOCKOUT. The slow hash is checked outside any write transaction."""
    with db.read() as conn:
        row = conn.execute(
            select(Admin.id, Admin.password_hash, Admin.locked_until).where(
                Admin.username == username
            )
        ).one_or_none()
    if row is None:
        check_password_hash(_dummy_hash(), password)  # as slow as for a real account
        return LoginResult(None)
    if row.locked_until is not None and row.locked_until > utcnow():
        return LoginResult(None, row.locked_until)
    correct = check_password_hash(row.password_hash, password)
    with db.write() as conn:
        return _record_login(conn, row.id, correct)


def _record_login(conn: Connection, admin_id: int, correct: bool) -> LoginResult:
    """Reset the failure count on success; count a failure and lock when it reaches the limit."""
    now = utcnow()
    row = conn.execute(
        select(Admin.failed_logins, Admin.locked_until)
        .where(Admin.id == admin_id)
        .with_for_update()
    ).one()
    if row.locked_until is not None and row.locked_until > now:
        return LoginResult(None, row.locked_until)  # locked by a concurrent attempt
    failures = 0 if correct else row.failed_logins + 1
    until = now + LOCKOUT if failures >= MAX_FAILED_LOGINS else None
    conn.execute(
        update(Admin)
        .where(Admin.id == admin_id)
        .values(failed_logins=0 if until else failures, locked_until=until)
    )
    return LoginResult(admin_id if correct else None, until)


@cache
def _dummy_hash() -> str:
    """A hash to check unknown usernames against, so they take as long as known ones."""
    return generate_password_hash(secrets.token_hex(16))
