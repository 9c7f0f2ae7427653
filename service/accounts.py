"""Admin accounts for the web form: created by the CLI, passwords hashed with scrypt (werkzeug),
checked at login under a bounded number of concurrent hashes, disabled and enabled, and their
sessions ended. No account is ever locked: failed logins are limited per address and per
(username, address) by service.throttle, so nobody can lock another admin out. No Flask: the
admin views and the CLI are thin shells over these functions, and this is the only module that
queries the admins table.

Every session carries the account's `session_version` from its login and is valid only while the
account still has that version and is not disabled: logging out, a new password and disabling bump
the version, which ends every session of the account (every browser) at once."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Literal

from sqlalchemy import Connection, Update, insert, or_, select, update
from werkzeug.security import check_password_hash, generate_password_hash

from service.db import Database
from service.errors import Conflict, InvalidRequest, NotFound, RateLimited
from service.hash_slots import HashSlots
from service.models import Admin, utcnow
from service.workflows import IDENTIFIER_RULE, is_identifier

MIN_PASSWORD = 12
HASHES_AT_ONCE = 2
"""Password hashes (scrypt: tens of ms of CPU and 32 MiB each) checked at once by all the
processes of one `serve` (service.server shares the slots), or by one process otherwise."""
HASH_WAIT = 0.05
"""Seconds a login waits for a free hash before it is refused with 429: a sync worker that waits
serves nobody else, so a flood of logins is turned away at once and leaves the other workers and
the CPU to the API."""
State = Literal["active", "disabled"]
hash_slots = HashSlots(HASHES_AT_ONCE)


class HashesBusy(RateLimited):
    """Every hash slot stayed taken for HASH_WAIT: the login is refused, not queued."""

    def __init__(self) -> None:
        super().__init__("too many logins are being checked at once; retry in 1 s", 1)


@dataclass(frozen=True)
class Account:
    """An admin as the pages know it; `tenant` None means it may manage every tenant."""

    id: int
    username: str
    tenant: str | None


@dataclass(frozen=True)
class LoginResult:
    """A login attempt's outcome: on success the admin's id and the session version to carry."""

    admin_id: int | None
    session_version: int = 0


@dataclass(frozen=True)
class Listed:
    """An admin as `admins list` shows it; `tenant` None means every tenant."""

    username: str
    tenant: str | None
    state: State
    created_at: datetime


def create_admin(conn: Connection, username: str, tenant: str | None, password: str) -> None:
    """Create an admin for one tenant (or every tenant when None); Conflict if the name is taken."""
    if not is_identifier(username):
        raise InvalidRequest(f"username must be {IDENTIFIER_RULE}", field="username")
    if tenant is not None and not is_identifier(tenant):
        raise InvalidRequest(f"invalid tenant {tenant!r}", field="tenant")
    _check_password(password)
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


def signed_in(conn: Connection, admin_id: int, session_version: int) -> Account | None:
    """The admin a session names, in one query by primary key; None when that session has ended:
    the account is gone or disabled, or its version moved on (logout, new password, disable)."""
    row = conn.execute(
        select(Admin.id, Admin.username, Admin.tenant).where(
            Admin.id == admin_id,
            Admin.session_version == session_version,
            Admin.disabled_at.is_(None),
        )
    ).one_or_none()
    return None if row is None else Account(row.id, row.username, row.tenant)


def end_sessions(conn: Connection, admin_id: int) -> None:
    """End every session of this admin, in every browser (logging out)."""
    conn.execute(_next_session_version(admin_id))


def check_login(db: Database, username: str, password: str) -> LoginResult:
    """Check a password. A disabled account is refused as an unknown name is, and both take as
    long as a wrong password (a dummy hash is checked): nothing tells the names apart. The slow
    hash runs outside any transaction, in one of `hash_slots` (HashesBusy when none is free
    within HASH_WAIT); only a success writes (nothing for a failure to count or lock)."""
    with db.read() as conn:
        row = conn.execute(
            select(Admin.id, Admin.password_hash, Admin.disabled_at).where(
                Admin.username == username
            )
        ).one_or_none()
    usable = row if row is not None and row.disabled_at is None else None
    correct = _checked(usable.password_hash if usable else _dummy_hash(), password)
    if usable is None or not correct:
        return LoginResult(None)
    with db.write() as conn:
        return _record_login(conn, usable.id, usable.password_hash)


def _checked(password_hash: str, password: str) -> bool:
    """Whether the password fits the hash, checked in a free hash slot."""
    with hash_slots.taken(HASH_WAIT) as free:
        if not free:
            raise HashesBusy()
        return check_password_hash(password_hash, password)


def _record_login(conn: Connection, admin_id: int, checked: str) -> LoginResult:
    """The session version a right password starts a session with; refused when the account was
    disabled or given a new password (`checked` is the hash the password was checked against)
    while the hash was being checked."""
    row = conn.execute(
        select(Admin.password_hash, Admin.disabled_at, Admin.session_version)
        .where(Admin.id == admin_id)
        .with_for_update()
    ).one()
    if row.disabled_at is not None or row.password_hash != checked:
        return LoginResult(None)
    return LoginResult(admin_id, row.session_version)


# -- the CLI's lifecycle: list, disable, enable, reset-password, unlock ----------------------------


def listing(conn: Connection) -> list[Listed]:
    """Every admin by name: tenant, state (active or disabled), created."""
    rows = conn.execute(
        select(Admin.username, Admin.tenant, Admin.disabled_at, Admin.created_at).order_by(
            Admin.username
        )
    )
    return [
        Listed(r.username, r.tenant, "disabled" if r.disabled_at else "active", r.created_at)
        for r in rows
    ]


def disable(conn: Connection, username: str) -> bool:
    """Disable an admin and end its sessions; False if it was disabled already. Conflict for the
    last active all-tenant admin, which would leave nobody to manage every tenant.

    The admin and every active all-tenant admin are locked first, in id order: of two concurrent
    disables of the last two, the second waits, then sees the first's commit and is refused
    (SQLite's write transactions are serial anyway)."""
    rows = conn.execute(
        select(Admin.id, Admin.username, Admin.tenant, Admin.disabled_at)
        .where(
            or_(
                Admin.username == username,
                Admin.tenant.is_(None) & Admin.disabled_at.is_(None),
            )
        )
        .order_by(Admin.id)
        .with_for_update()
    ).all()
    target = next((row for row in rows if row.username == username), None)
    if target is None:
        raise _unknown(username)
    if target.disabled_at is not None:
        return False
    if target.tenant is None and len(rows) == 1:
        raise Conflict(
            f"{username!r} is the last active admin for every tenant: create or enable another "
            "(`workflow-authz admins create --tenant '*' ...`) before disabling this one",
            field="username",
        )
    conn.execute(_next_session_version(target.id).values(disabled_at=utcnow()))
    return True


def enable(conn: Connection, username: str) -> bool:
    """Let a disabled admin log in again; False if it was not disabled."""
    result = conn.execute(
        update(Admin)
        .where(Admin.id == _locked_id(conn, username), Admin.disabled_at.is_not(None))
        .values(disabled_at=None)
    )
    return result.rowcount == 1


def reset_password(conn: Connection, username: str, password: str) -> None:
    """Give an admin a new password: ends its sessions (a disabled admin stays disabled)."""
    _check_password(password)
    admin_id = _locked_id(conn, username)
    conn.execute(
        _next_session_version(admin_id).values(
            password_hash=generate_password_hash(password), failed_logins=0, locked_until=None
        )  # the columns of the old per-account lock, cleared as `unlock` does
    )


def unlock(conn: Connection, username: str) -> None:
    """Clear what the per-account lock of earlier versions left in the row (`failed_logins`,
    `locked_until`, read by nothing now); NotFound for an unknown name. Logins no longer lock
    accounts: an address that failed waits out its delay (service.throttle)."""
    conn.execute(
        update(Admin)
        .where(Admin.id == _locked_id(conn, username))
        .values(failed_logins=0, locked_until=None)
    )


def _locked_id(conn: Connection, username: str) -> int:
    """The admin's id, its row locked for this transaction; NotFound for an unknown name."""
    admin_id = conn.execute(
        select(Admin.id).where(Admin.username == username).with_for_update()
    ).scalar()
    if admin_id is None:
        raise _unknown(username)
    return admin_id


def _unknown(username: str) -> NotFound:
    return NotFound(
        f"no admin named {username!r} (`workflow-authz admins list` shows them)", field="username"
    )


def _next_session_version(admin_id: int) -> Update:
    """The update that ends every session of an admin; callers may add values to it."""
    return (
        update(Admin).where(Admin.id == admin_id).values(session_version=Admin.session_version + 1)
    )


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidRequest(
            f"the password needs at least {MIN_PASSWORD} characters", field="password"
        )


@cache
def _dummy_hash() -> str:
    """A hash to check unknown usernames against, so they take as long as known ones."""
    return generate_password_hash(secrets.token_hex(16))
