"""Typed tables: assessment state and history, policy versions and audit, API keys, admins,
webhook endpoints.

The policy rows themselves live in casbin-sqlalchemy-adapter's `casbin_rule` table, which
policies.py owns; the migrations create it with the constraints the adapter leaves out.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from service.limits import (
    MAX_ASSESSMENT_ID,
    MAX_IDENTIFIER,
    MAX_REASON,
    MAX_SECRET,
    MAX_TEXT,
    MAX_URL,
)


def utcnow() -> datetime:
    """Now, timezone-aware in UTC: every timestamp the service stores."""
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    """RFC 3339 UTC with a Z, to the microsecond: every timestamp the service shows."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Assessment(Base):
    """Which phase an assessment is in; `version` grows by one with every transition."""

    __tablename__ = "assessments"
    # Made by migration 0004: a page of the assessments at a place, in id order (resource search).
    __table_args__ = (Index("ix_assessments_place", "tenant", "area", "phase", "id"),)

    tenant: Mapped[str] = mapped_column(String(MAX_IDENTIFIER), primary_key=True)
    id: Mapped[str] = mapped_column(String(MAX_ASSESSMENT_ID), primary_key=True)
    area: Mapped[str] = mapped_column(String(MAX_IDENTIFIER))
    phase: Mapped[str] = mapped_column(String(MAX_IDENTIFIER))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Who registered it: the API key (id and name) and the actor its caller named.
    created_key_id: Mapped[int | None] = mapped_column(Integer)
    created_key_name: Mapped[str | None] = mapped_column(String(MAX_TEXT))
    created_actor: Mapped[str | None] = mapped_column(String(MAX_TEXT))


class Transition(Base):
    """One phase change of an assessment. Append-only: no code path updates or deletes it."""

    __tablename__ = "transitions"
    __table_args__ = (
        ForeignKeyConstraint(["tenant", "assessment_id"], ["assessments.tenant", "assessments.id"]),
        Index("ix_transitions_assessment", "tenant", "assessment_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(MAX_IDENTIFIER))
    assessment_id: Mapped[str] = mapped_column(String(MAX_ASSESSMENT_ID))
    from_phase: Mapped[str] = mapped_column(String(MAX_IDENTIFIER))
    to_phase: Mapped[str] = mapped_column(String(MAX_IDENTIFIER))
    role: Mapped[str] = mapped_column(String(MAX_IDENTIFIER))
    actor: Mapped[str] = mapped_column(String(MAX_TEXT))
    policy_version: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(MAX_REASON))
    # The API key that made the move (None on rows older than migration 0003), beside `actor`,
    # which is only what the caller says.
    key_id: Mapped[int | None] = mapped_column(Integer)
    key_name: Mapped[str | None] = mapped_column(String(MAX_TEXT))


class PolicyVersion(Base):
    """A tenant exists when it has a row here; every policy change bumps `version` with it."""

    __tablename__ = "policy_versions"
    __table_args__ = (CheckConstraint("version >= 1", name="ck_policy_versions_positive"),)

    tenant: Mapped[str] = mapped_column(String(MAX_IDENTIFIER), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(MAX_TEXT))
    event_seq: Mapped[int] = mapped_column(Integer, default=0)


class Event(Base):
    """The external-systems feed: an assessment became visible (or stopped being visible) to
    external systems, through a transition or a policy change. Numbered per tenant."""

    __tablename__ = "events"

    tenant: Mapped[str] = mapped_column(String(MAX_IDENTIFIER), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    assessment_id: Mapped[str] = mapped_column(String(MAX_ASSESSMENT_ID))
    area: Mapped[str] = mapped_column(String(MAX_IDENTIFIER))
    phase: Mapped[str] = mapped_column(String(MAX_IDENTIFIER))
    visible: Mapped[bool] = mapped_column(Boolean)
    cause: Mapped[str] = mapped_column(String(16))
    policy_version: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PolicyChange(Base):
    """Audit: one changed matrix cell (who, when, which cell, before -> after)."""

    __tablename__ = "policy_changes"
    __table_args__ = (Index("ix_policy_changes_tenant", "tenant", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(MAX_IDENTIFIER))
    version: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(MAX_TEXT))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    role: Mapped[str] = mapped_column(String(MAX_IDENTIFIER))
    area: Mapped[str] = mapped_column(String(MAX_IDENTIFIER))
    phase: Mapped[str] = mapped_column(String(MAX_IDENTIFIER))
    action: Mapped[str] = mapped_column(String(MAX_IDENTIFIER))
    before: Mapped[bool] = mapped_column(Boolean)
    after: Mapped[bool] = mapped_column(Boolean)


class ApiKey(Base):
    """An API key, stored as a SHA-256 digest; `tenant` None means valid for every tenant."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(MAX_TEXT))
    tenant: Mapped[str | None] = mapped_column(String(MAX_IDENTIFIER))
    prefix: Mapped[str] = mapped_column(String(16), index=True, unique=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Admin(Base):
    """A sysadmin account for the web form; `tenant` None means it may pick any tenant."""

    __tablename__ = "admins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(MAX_IDENTIFIER), unique=True)
    tenant: Mapped[str | None] = mapped_column(String(MAX_IDENTIFIER))
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Sessions carry the version they were issued at; bumping it ends them all at once.
    session_version: Mapped[int] = mapped_column(Integer, default=0)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


WEBHOOK_STATES = ("active", "failing", "disabled")
"""An endpoint is `active` (delivered to), `failing` (an event outlived the maximum age: kept,
waiting for `webhooks retry`) or `disabled` (it answered 410 Gone, or an operator said so)."""


class WebhookEndpoint(Base):
    """A tenant's registered receiver of the feed, and where its delivery stands.

    The feed's `events` table is the outbox: every event is written in the transaction of the
    change that causes it, and an endpoint only keeps its place in that feed (`delivered_seq`:
    every event up to it was answered 2xx), the head event's retry state, and the lease of the
    one process that may be delivering to it now. So per-endpoint order holds by construction:
    the next event is only sent once the one before it is done.
    """

    __tablename__ = "webhook_endpoints"
    __table_args__ = (
        CheckConstraint(
            "state IN ('active', 'failing', 'disabled')", name="ck_webhook_endpoints_state"
        ),
        Index("ix_webhook_endpoints_tenant", "tenant", "id"),
        UniqueConstraint("tenant", "url", name="uq_webhook_endpoints_url"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(MAX_IDENTIFIER))
    name: Mapped[str] = mapped_column(String(MAX_TEXT))
    url: Mapped[str] = mapped_column(String(MAX_URL))
    # The signing secret (`whsec_` + base64), shown once when made; the one before a rotation
    # keeps signing beside it until `previous_secret_until`.
    secret: Mapped[str] = mapped_column(String(MAX_SECRET))
    previous_secret: Mapped[str | None] = mapped_column(String(MAX_SECRET))
    previous_secret_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    state: Mapped[str] = mapped_column(String(16), default="active")
    state_reason: Mapped[str | None] = mapped_column(String(MAX_REASON))
    # Every event of the tenant with seq <= delivered_seq is done (2xx) for this endpoint. A new
    # endpoint starts at the tenant's last event: it receives what happens from then on.
    delivered_seq: Mapped[int] = mapped_column(Integer, default=0)
    # The head event's (delivered_seq + 1) failed attempts so far, and when to try it next.
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Which delivering process holds the endpoint, until when (longer than one attempt's
    # timeout): at most one process sends to an endpoint at a time.
    lease_owner: Mapped[str | None] = mapped_column(String(MAX_IDENTIFIER))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(MAX_REASON))
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
