"""Typed tables: assessment state and history, policy versions and audit, API keys, admins.

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
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ID_LENGTH = 64
ASSESSMENT_ID_LENGTH = 128
TEXT_LENGTH = 200
REASON_LENGTH = 500


def utcnow() -> datetime:
    return datetime.now(UTC)


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

    tenant: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    id: Mapped[str] = mapped_column(String(ASSESSMENT_ID_LENGTH), primary_key=True)
    area: Mapped[str] = mapped_column(String(ID_LENGTH))
    phase: Mapped[str] = mapped_column(String(ID_LENGTH))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Transition(Base):
    """One phase change of an assessment. Append-only: no code path updates or deletes it."""

    __tablename__ = "transitions"
    __table_args__ = (
        ForeignKeyConstraint(["tenant", "assessment_id"], ["assessments.tenant", "assessments.id"]),
        Index("ix_transitions_assessment", "tenant", "assessment_id", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(ID_LENGTH))
    assessment_id: Mapped[str] = mapped_column(String(ASSESSMENT_ID_LENGTH))
    from_phase: Mapped[str] = mapped_column(String(ID_LENGTH))
    to_phase: Mapped[str] = mapped_column(String(ID_LENGTH))
    role: Mapped[str] = mapped_column(String(ID_LENGTH))
    actor: Mapped[str] = mapped_column(String(TEXT_LENGTH))
    policy_version: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    action: Mapped[str] = mapped_column(String(16), default="advance")
    reason: Mapped[str | None] = mapped_column(String(REASON_LENGTH))


class PolicyVersion(Base):
    """A tenant exists when it has a row here; every policy change bumps `version` with it."""

    __tablename__ = "policy_versions"
    __table_args__ = (CheckConstraint("version >= 1", name="ck_policy_versions_positive"),)

    tenant: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(TEXT_LENGTH))
    event_seq: Mapped[int] = mapped_column(Integer, default=0)


class Event(Base):
    """The external-systems feed: an assessment became visible (or stopped being visible) to
    external systems, through a transition or a policy change. Numbered per tenant."""

    __tablename__ = "events"

    tenant: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    assessment_id: Mapped[str] = mapped_column(String(ASSESSMENT_ID_LENGTH))
    area: Mapped[str] = mapped_column(String(ID_LENGTH))
    phase: Mapped[str] = mapped_column(String(ID_LENGTH))
    visible: Mapped[bool] = mapped_column(Boolean)
    cause: Mapped[str] = mapped_column(String(16))
    policy_version: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PolicyChange(Base):
    """Audit: one changed matrix cell (who, when, which cell, before -> after)."""

    __tablename__ = "policy_changes"
    __table_args__ = (Index("ix_policy_changes_tenant", "tenant", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant: Mapped[str] = mapped_column(String(ID_LENGTH))
    version: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(TEXT_LENGTH))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    role: Mapped[str] = mapped_column(String(ID_LENGTH))
    area: Mapped[str] = mapped_column(String(ID_LENGTH))
    phase: Mapped[str] = mapped_column(String(ID_LENGTH))
    action: Mapped[str] = mapped_column(String(ID_LENGTH))
    before: Mapped[bool] = mapped_column(Boolean)
    after: Mapped[bool] = mapped_column(Boolean)


class ApiKey(Base):
    """An API key, stored as a SHA-256 digest; `tenant` None means valid for every tenant."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(TEXT_LENGTH))
    tenant: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Admin(Base):
    """A sysadmin account for the web form; `tenant` None means it may pick any tenant."""

    __tablename__ = "admins"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    username: Mapped[str] = mapped_column(String(ID_LENGTH), unique=True)
    tenant: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
