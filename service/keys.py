"""API keys: made once by the CLI, stored as SHA-256 digests, scoped to one tenant or all."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, insert, select, update

from service.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthorized
from service.limits import MAX_TEXT
from service.models import ApiKey, utcnow
from service.workflows import is_identifier

PREFIX_BYTES = 4
# Built once: this runs on every API request, and building a statement costs more than running it.
_BY_PREFIX = select(ApiKey.id, ApiKey.name, ApiKey.tenant, ApiKey.digest, ApiKey.revoked_at).where(
    ApiKey.prefix == bindparam("prefix")
)


@dataclass(frozen=True)
class Key:
    """An authenticated caller: the key's name and its tenant (None: every tenant)."""

    id: int
    name: str
    tenant: str | None

    def require_tenant(self, tenant: str) -> None:
        """Forbidden unless this key may act for `tenant`."""
        if self.tenant is not None and self.tenant != tenant:
            raise Forbidden(f"this API key is not valid for tenant {tenant!r}", field="tenant")


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create(conn: Connection, name: str, tenant: str | None) -> str:
    """Store a new key's digest and return the key itself, which is never stored or shown again.

    A key is `wa_<prefix>_<secret>`: the prefix finds the row, the 256-bit secret proves it.
    """
    if not name.strip() or len(name) > MAX_TEXT:
        raise InvalidRequest(f"key name must be 1-{MAX_TEXT} characters", field="name")
    if tenant is not None and not is_identifier(tenant):
        raise InvalidRequest(f"invalid tenant {tenant!r}", field="tenant")
    prefix = secrets.token_hex(PREFIX_BYTES)
    token = f"wa_{prefix}_{secrets.token_urlsafe(32)}"
    conn.execute(
        insert(ApiKey).values(
            name=name, tenant=tenant, prefix=prefix, digest=digest(token), created_at=utcnow()
        )
    )
    return token


def create_unique(conn: Connection, name: str, tenant: str | None) -> str:
    """Like create, but Conflict when an active key has this name: people tell keys apart by
    name in `keys list` and revoke by prefix. (The rule is the CLI's: tests and benchmarks make
    many keys of one name through create.)"""
    prefix = conn.execute(
        select(ApiKey.prefix).where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
    ).scalar()
    if prefix is not None:
        raise Conflict(
            f"an active key is already named {name!r}: revoke it first "
            f"(`workflow-authz keys revoke {prefix}`) or pick another name",
            field="name",
        )
    return create(conn, name, tenant)


def has_any(conn: Connection) -> bool:
    """Whether any key was ever made (revoked ones count): the quickstart makes the first."""
    return conn.execute(select(ApiKey.id).limit(1)).first() is not None


def authenticate(conn: Connection, header: str | None) -> Key:
    """The key named by an `Authorization: Bearer ...` header; Unauthorized otherwise.

    The row is found by the key's public prefix and the digests are compared in constant time.
    """
    token = _bearer(header)
    parts = token.split("_")
    if len(parts) < 3 or parts[0] != "wa":
        raise Unauthorized("the API key is not valid")
    row = conn.execute(_BY_PREFIX, {"prefix": parts[1]}).first()
    if row is None or not hmac.compare_digest(row.digest, digest(token)) or row.revoked_at:
        raise Unauthorized("the API key is not valid")
    return Key(row.id, row.name, row.tenant)


def revoke(conn: Connection, prefix: str) -> None:
    """Revoke a key by its prefix (the part after `wa_`); it fails from the next request on."""
    result = conn.execute(
        update(ApiKey)
        .where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    if result.rowcount != 1:
        raise NotFound(f"no active key with prefix {prefix!r}")


def listing(conn: Connection) -> list[dict[str, str | None]]:
    """Every key's prefix, name, tenant and state; never the key."""
    rows = conn.execute(select(ApiKey).order_by(ApiKey.id))
    return [
        {
            "prefix": r.prefix,
            "name": r.name,
            "tenant": r.tenant or "*",
            "state": "revoked" if r.revoked_at else "active",
        }
        for r in rows
    ]


def _bearer(header: str | None) -> str:
    if not header:
        raise Unauthorized("missing Authorization header: send 'Authorization: Bearer <api key>'")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <api key>'")
    return token.strip()
