"""Admin accounts for the web form: created by the CLI, passwords hashed with scrypt (werkzeug)."""

from __future__ import annotations

from sqlalchemy import Connection, insert, select
from werkzeug.security import generate_password_hash

from service.errors import Conflict, InvalidRequest
from service.models import Admin, utcnow
from service.workflows import is_identifier

MIN_PASSWORD = 12


def create_admin(conn: Connection, username: str, tenant: str | None, password: str) -> None:
    """Create an admin for one tenant (or every tenant when None); Conflict if the name is taken."""
    if not is_identifier(username):
        raise InvalidRequest(
            "username must match [a-z][a-z0-9_]* (at most 64 characters)", field="username"
        )
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
