"""API keys: made once by the CLI, stored as SHA-256 digests, scoped to one tenant or all."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from flask import current_app
from sqlalchemy import Connection, Label, Row, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from service.db import Reading
from service.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    Unauthorized,
    Unavailable,
)
from service.limits import MAX_TEXT, storable, text_problem
from service.models import ApiKey, utcnow
from service.workflows import is_identifier

PREFIX_BYTES = 4
# A draw is taken with odds keys / 2**32 (1 in 430,000 at 10,000 keys): five in a row never are.
PREFIX_DRAWS = 5
MIN_REVOKE_PART = 4
_HEX = re.compile(r"[0-9a-f]+")
# Built once: this runs on every API request, and building a statement costs more than running it.
_BY_PREFIX = select(ApiKey.id, ApiKey.name, ApiKey.tenant, ApiKey.digest, ApiKey.revoked_at).where(
    ApiKey.prefix == bindparam("prefix")
)
LIVE: Label[bool] = (
    select(ApiKey.id)
    .where(
        ApiKey.id == bindparam("key_id"),
        ApiKey.digest == bindparam("key_digest"),
        ApiKey.revoked_at.is_(None),
    )
    .exists()
    .label("key_live")
)
"""Whether a remembered key's row still holds its digest, unrevoked: a column that the first
statement of a decision carries beside what it reads anyway (see Pending)."""
_LIVE = select(LIVE)
KNOWN_KEYS = 4096
"""How many verified keys a process remembers (a full memory forgets the oldest)."""
_EXTENSION = "workflow_authz.keys"


# A key as revoke finds it: id, prefix, name, tenant, revoked_at.
_Found = Row[int, str, str, str | None, datetime | None]


class Revoked(NamedTuple):
    """The key a revoke ended: its prefix and name, for the operator to check."""

    prefix: str
    name: str


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


class KnownKeys:
    """The keys this process has verified, by prefix, with their digests: a request whose token
    has a remembered digest skips the key's own statement. Never trusted alone: such a request
    is a Pending key until a statement of its own transaction finds the row still live, so a
    revocation committed in any process governs the very next request here too."""

    def __init__(self, capacity: int = KNOWN_KEYS) -> None:
        self.capacity = capacity
        self._known: dict[str, tuple[str, Key]] = {}
        self._lock = threading.Lock()

    def recall(self, header: str | None) -> Pending | None:
        """The remembered key the header's token proves (its digest matches), unconfirmed; None
        for any other header (then the key is read and checked as on a first request)."""
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        parts = token.split("_")
        if scheme.lower() != "bearer" or len(parts) < 3 or parts[0] != "wa":
            return None
        prefix = parts[1]
        found = self._known.get(prefix)
        if found is None:
            return None
        token_digest = digest(token)
        if not hmac.compare_digest(found[0], token_digest):
            return None
        return Pending(found[1], token_digest, self, prefix)

    def remember(self, prefix: str, key_digest: str, key: Key) -> None:
        """Remember a key just verified by its row (the oldest goes when full)."""
        with self._lock:
            self._known.pop(prefix, None)
            self._known[prefix] = (key_digest, key)
            while len(self._known) > self.capacity:
                del self._known[next(iter(self._known))]

    def forget(self, prefix: str) -> None:
        """Forget a key its row no longer proves (revoked, or gone)."""
        with self._lock:
            self._known.pop(prefix, None)


def known_keys() -> KnownKeys:
    """The current app's remembered keys (one memory per app, so per process)."""
    extensions = current_app.extensions
    found: KnownKeys | None = extensions.get(_EXTENSION)
    if found is None:
        found = extensions.setdefault(_EXTENSION, KnownKeys())
    return found


@dataclass(slots=True)
class Pending:
    """A remembered key whose row is yet to be confirmed live in this request's transaction.

    The first statement a decision runs carries LIVE (`params()` binds it) and `settle`s it with
    the answer; `confirm` runs LIVE alone when no statement carried it. Until settled, nothing
    may be decided or answered under the key (decisions.Stored and api.deciding see to it)."""

    key: Key
    digest: str
    known: KnownKeys
    prefix: str
    confirmed: bool = field(default=False)

    def params(self) -> dict[str, Any]:
        """The bind parameters of LIVE."""
        return {"key_id": self.key.id, "key_digest": self.digest}

    def settle(self, live: bool) -> None:
        """Record a statement's LIVE: Unauthorized, and the key forgotten, when it is false."""
        if not live:
            self.known.forget(self.prefix)
            raise Unauthorized("the API key is not valid")
        self.confirmed = True

    def confirm(self, reading: Reading) -> None:
        """Settle the key with a statement of its own, unless a decision's statement did."""
        if not self.confirmed:
            row = reading.one(_LIVE, self.params())
            self.settle(row is not None and bool(row[0]))


def riding(pending: Pending | None) -> Pending | None:
    """`pending` while it still needs a statement to carry LIVE; None once settled."""
    return pending if pending is not None and not pending.confirmed else None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create(conn: Connection, name: str, tenant: str | None) -> str:
    """Store a new key's digest and return the key itself, which is never stored or shown again.

    A key is `wa_<prefix>_<secret>`: the prefix finds the row, the 256-bit secret proves it.
    Prefixes are unique (a unique index): a draw that is taken, by a row already there or by a
    concurrent create, is undone to its savepoint and another is drawn.
    """
    problem = text_problem(name, MAX_TEXT)
    if problem is not None:
        raise InvalidRequest(f"key name {problem}", field="name")
    if tenant is not None and not is_identifier(tenant):
        raise InvalidRequest(f"invalid tenant {tenant!r}", field="tenant")
    for _ in range(PREFIX_DRAWS):
        token = _inserted(conn, name, tenant)
        if token is not None:
            return token
    raise Unavailable(f"no free key prefix in {PREFIX_DRAWS} draws; nothing was created")


def _inserted(conn: Connection, name: str, tenant: str | None) -> str | None:
    """A new key on a freshly drawn prefix, or None (nothing written) when the prefix is taken."""
    prefix = secrets.token_hex(PREFIX_BYTES)
    token = f"wa_{prefix}_{secrets.token_urlsafe(32)}"
    row = insert(ApiKey).values(
        name=name, tenant=tenant, prefix=prefix, digest=digest(token), created_at=utcnow()
    )
    try:
        with conn.begin_nested():
            conn.execute(row)
    except IntegrityError:
        return None
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


def authenticate(conn: Connection, header: str | None, known: KnownKeys | None = None) -> Key:
    """The key named by an `Authorization: Bearer ...` header; Unauthorized otherwise.

    The row is found by the key's public prefix, unique, so the one row it finds is the only
    candidate; the digests are compared in constant time. A key that passes is remembered in
    `known`, when given.
    """
    token = _bearer(header)
    parts = token.split("_")
    if len(parts) < 3 or parts[0] != "wa" or not storable(parts[1]):
        raise Unauthorized("the API key is not valid")
    row = conn.execute(_BY_PREFIX, {"prefix": parts[1]}).first()
    if row is None or not hmac.compare_digest(row.digest, digest(token)) or row.revoked_at:
        raise Unauthorized("the API key is not valid")
    key = Key(row.id, row.name, row.tenant)
    if known is not None:
        known.remember(parts[1], row.digest, key)
    return key


def named_prefix(header: str | None) -> str | None:
    """The key prefix an Authorization header names, for counting failed guesses at one key: the
    part after `wa_` when it has a prefix's shape; None when there is none (no key, or not one
    of ours), which names no key to protect."""
    parts = (header or "").partition(" ")[2].strip().split("_")
    named = parts[1] if len(parts) >= 3 and parts[0] == "wa" else ""
    return named if len(named) == 2 * PREFIX_BYTES and _HEX.fullmatch(named) else None


def revoke(conn: Connection, given: str) -> Revoked:
    """Revoke one key; it fails from the next request on. `given` is the key itself, its prefix
    (with or without `wa_`), or a leading part of the prefix of at least MIN_REVOKE_PART
    characters. One that fits several keys is refused, naming them, and revokes nothing."""
    row = _the_key(conn, given)
    result = conn.execute(
        update(ApiKey)
        .where(ApiKey.id == row.id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    if result.rowcount != 1:
        raise Conflict(f"key {row.prefix} ({row.name}) is revoked already")
    return Revoked(row.prefix, row.name)


def _the_key(conn: Connection, given: str) -> _Found:
    """The one key `given` names (see revoke); NotFound, or InvalidRequest when ambiguous."""
    text = given.strip()
    columns = select(ApiKey.id, ApiKey.prefix, ApiKey.name, ApiKey.tenant, ApiKey.revoked_at)
    if text.startswith("wa_") and text.count("_") >= 2:  # the whole key: its digest says which
        row = conn.execute(columns.where(ApiKey.digest == digest(text))).first()
        if row is None:  # never repeat the secret
            raise NotFound(f"no key is wa_{text.split('_')[1]}_...")
        return row
    part = text.removeprefix("wa_").lower()
    if not MIN_REVOKE_PART <= len(part) <= 2 * PREFIX_BYTES or not _HEX.fullmatch(part):
        raise InvalidRequest(
            f"{given!r} is not a key prefix: give the {2 * PREFIX_BYTES} hex digits after `wa_` "
            f"that `keys list` shows (at least the first {MIN_REVOKE_PART})",
            field="prefix",
        )
    rows = conn.execute(columns.where(ApiKey.prefix.startswith(part)).order_by(ApiKey.id)).all()
    if not rows:
        raise NotFound(f"no key with prefix {part!r} (`workflow-authz keys list` shows them)")
    if len(rows) > 1:
        fits = ", ".join(
            f"{r.prefix} ({r.tenant or '*'}, {'revoked' if r.revoked_at else 'active'}, {r.name})"
            for r in rows
        )
        raise InvalidRequest(
            f"{part!r} fits {len(rows)} keys: {fits}; give more of the prefix. Nothing was revoked",
            field="prefix",
        )
    return rows[0]


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
