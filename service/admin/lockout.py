"""Checking an admin's password, counting failures and locking the account after too many.

No Flask: the login view is a thin shell over check_login.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import Connection, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from service.db import Database
from service.models import Admin, utcnow

MAX_FAILED_LOGINS = 5
LOCKOUT = timedelta(minutes=15)


@dataclass(frozen=True)
class LoginResult:
    """A login attempt's outcome: the admin's id on success, the lock's end when locked."""

    admin_id: int | None
    locked_until: datetime | None = None


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
