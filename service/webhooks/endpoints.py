"""A tenant's webhook endpoints: add, list, remove, rotate a secret, retry; and the secrets an
endpoint's deliveries are signed with at a moment.

A secret is `whsec_` and the base64 of 32 random bytes, the form the `standardwebhooks` library
reads. It is stored as it is (deliveries must sign with it) and shown only once, when made.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, case, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from service.errors import Conflict, InvalidRequest, NotFound
from service.limits import MAX_NUMBER, MAX_TEXT, text_problem
from service.models import PolicyVersion, WebhookEndpoint, utcnow
from service.policies.store import require_version
from service.webhooks import addresses

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32


@dataclass(frozen=True)
class Listed:
    """An endpoint as `webhooks list` and the admin page show it (never its secret)."""

    id: int
    tenant: str
    name: str
    url: str
    state: str
    state_reason: str | None
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    last_success_at: datetime | None
    backlog: int
    """The tenant's events this endpoint has not had yet."""


def new_secret() -> str:
    """A fresh signing secret."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def add(
    conn: Connection, tenant: str, url: str, name: str | None, *, allow_private: bool
) -> tuple[int, str]:
    """Register an endpoint for the tenant's events from now on; its id and its secret, which is
    never shown again. Refused, with nothing stored: an unknown tenant (NotFound), a URL the
    service may not deliver to or a name that is not free text (InvalidRequest), a URL the
    tenant has an endpoint for already, in any spelling of it (Conflict: every event would be
    sent to it twice), also when a concurrent add stored it after this one looked (the unique
    index on tenant and URL decides). The URL is stored in its `addresses.canonical` spelling."""
    require_version(conn, tenant)
    problem = addresses.problem(url, allow_private=allow_private)
    if problem is not None:
        raise InvalidRequest(f"webhook URL {problem}", field="url")
    url = addresses.canonical(url)
    name = name if name is not None else addresses.host(url)[:MAX_TEXT]
    named = text_problem(name, MAX_TEXT)
    if named is not None:
        raise InvalidRequest(f"endpoint name {named}", field="name")
    _refuse_same_url(conn, tenant, url)
    last = conn.execute(
        select(PolicyVersion.event_seq).where(PolicyVersion.tenant == tenant)
    ).scalar_one()
    secret = new_secret()
    row = dict(tenant=tenant, name=name, url=url, secret=secret, state="active")
    try:
        with conn.begin_nested():
            endpoint_id: int = conn.execute(
                insert(WebhookEndpoint)
                .values(**row, delivered_seq=last, attempts=0, created_at=utcnow())
                .returning(WebhookEndpoint.id)
            ).scalar_one()
    except IntegrityError:
        _refuse_same_url(conn, tenant, url)  # a concurrent add's row, committed meanwhile
        raise
    return endpoint_id, secret


def _refuse_same_url(conn: Connection, tenant: str, url: str) -> None:
    """Conflict naming the tenant's endpoint that has this URL already, if one has."""
    same = conn.execute(
        select(WebhookEndpoint.id).where(
            WebhookEndpoint.tenant == tenant, WebhookEndpoint.url == url
        )
    ).scalar()
    if same is not None:
        raise Conflict(
            f"tenant {tenant!r} has endpoint {same} for this URL already: each event would be "
            f"sent to it twice (`workflow-authz webhooks remove {same}` first)",
            field="url",
        )


_UNSENT = PolicyVersion.event_seq - WebhookEndpoint.delivered_seq
BACKLOG = case((_UNSENT > 0, _UNSENT), else_=0)
"""An endpoint's backlog, with its tenant's policy_versions row joined: the tenant's events it
has not had yet (what `webhooks list`, the admin page and the metrics show)."""


def listing(conn: Connection, tenant: str | None = None) -> list[Listed]:
    """The endpoints (of one tenant, or all), oldest first, with their backlog."""
    query = (
        _ENDPOINT.add_columns(BACKLOG.label("backlog"))
        .join(PolicyVersion, PolicyVersion.tenant == WebhookEndpoint.tenant)
        .order_by(WebhookEndpoint.id)
    )
    if tenant is not None:
        query = query.where(WebhookEndpoint.tenant == tenant)
    return [
        Listed(
            e.id,
            e.tenant,
            e.name,
            e.url,
            e.state,
            e.state_reason,
            e.last_attempt_at,
            e.last_status,
            e.last_error,
            e.last_success_at,
            e.backlog,
        )
        for e in conn.execute(query)
    ]


Stored = Row[Any]
"""An endpoint's row, every column (models.WebhookEndpoint)."""
_ENDPOINT = select(*WebhookEndpoint.__table__.c)


def find(conn: Connection, endpoint_id: int) -> Stored:
    """The endpoint with this id; NotFound naming it otherwise."""
    row = None
    if 0 < endpoint_id <= MAX_NUMBER:  # a larger id makes PostgreSQL refuse the whole query
        row = conn.execute(_ENDPOINT.where(WebhookEndpoint.id == endpoint_id)).first()
    if row is None:
        raise NotFound(f"no webhook endpoint {endpoint_id} (`workflow-authz webhooks list`)")
    return row


def remove(conn: Connection, endpoint_id: int) -> Listed:
    """Delete the endpoint: nothing more is sent to it. What it was, for the operator."""
    (gone,) = [e for e in listing(conn, find(conn, endpoint_id).tenant) if e.id == endpoint_id]
    conn.execute(delete(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))
    return gone


def rotate_secret(conn: Connection, endpoint_id: int, grace: timedelta) -> str:
    """A new secret, returned once; the current one keeps signing beside it for `grace` (the
    spec's several signatures), so receivers can switch without losing a delivery."""
    current = find(conn, endpoint_id)
    secret = new_secret()
    conn.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id)
        .values(
            secret=secret,
            previous_secret=current.secret,
            previous_secret_until=utcnow() + grace,
        )
    )
    return secret


def retry(conn: Connection, endpoint_id: int) -> str:
    """Make a failing or disabled endpoint active again, and an active one waiting to retry try
    at once: its kept events are sent from the one it stopped at, the backoff starting afresh.
    The state it had."""
    before: str = find(conn, endpoint_id).state
    conn.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id)
        .values(state="active", state_reason=None, attempts=0, next_attempt_at=None)
    )
    return before


def signing_secrets(endpoint: Stored, now: datetime) -> list[str]:
    """The secrets a delivery at `now` is signed with: the current one, and the one before a
    rotation while its grace period lasts."""
    until = endpoint.previous_secret_until
    if endpoint.previous_secret and until is not None and now < until:
        return [endpoint.secret, endpoint.previous_secret]
    return [endpoint.secret]
