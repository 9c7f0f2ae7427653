"""Reopen and the external-systems feed: transition action and reason, per-tenant event sequence.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.models import UTCDateTime
from service.workflows import ADVANCE

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "transitions",
        sa.Column("action", sa.String(16), nullable=False, server_default=ADVANCE),
    )
    op.add_column("transitions", sa.Column("reason", sa.String(500), nullable=True))
    # The next event number of each tenant: taking it locks the tenant's row until commit, so a
    # tenant's events become visible in number order and a poller's cursor never skips one.
    op.add_column(
        "policy_versions",
        sa.Column("event_seq", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "events",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("assessment_id", sa.String(128), nullable=False),
        sa.Column("area", sa.String(64), nullable=False),
        sa.Column("phase", sa.String(64), nullable=False),
        sa.Column("visible", sa.Boolean, nullable=False),
        sa.Column("cause", sa.String(16), nullable=False),
        sa.Column("policy_version", sa.Integer, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
    )

    for table in APPEND_ONLY:
        _forbid_changes(table)


# History, feed and audit are append-only: the database itself refuses UPDATE and DELETE on them.
APPEND_ONLY = ("transitions", "events", "policy_changes")


def _forbid_changes(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
        )
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION append_only()"
        )
        return
    for event in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {table}_no_{event.lower()} BEFORE {event} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
        )


def _allow_changes(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        return
    for event in ("update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{event}")


def downgrade() -> None:
    for table in APPEND_ONLY:
        _allow_changes(table)
    op.drop_table("events")
    op.drop_column("policy_versions", "event_seq")
    op.drop_column("transitions", "reason")
    op.drop_column("transitions", "action")
