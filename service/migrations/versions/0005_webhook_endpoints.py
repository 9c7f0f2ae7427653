"""Webhook endpoints: each tenant's receivers of the feed and where their delivery stands.

The feed's `events` table is the outbox (its rows are written in the transaction of the change
that causes them); an endpoint keeps its place in it. A new endpoint starts at its tenant's last
event, so this migration needs no backfill.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.limits import MAX_IDENTIFIER, MAX_REASON, MAX_SECRET, MAX_TEXT, MAX_URL
from service.models import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(MAX_IDENTIFIER), nullable=False),
        sa.Column("name", sa.String(MAX_TEXT), nullable=False),
        sa.Column("url", sa.String(MAX_URL), nullable=False),
        sa.Column("secret", sa.String(MAX_SECRET), nullable=False),
        sa.Column("previous_secret", sa.String(MAX_SECRET), nullable=True),
        sa.Column("previous_secret_until", UTCDateTime(), nullable=True),
        sa.Column("state", sa.String(16), nullable=False, server_default="active"),
        sa.Column("state_reason", sa.String(MAX_REASON), nullable=True),
        sa.Column("delivered_seq", sa.Integer, nullable=False, server_default="0"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("lease_owner", sa.String(MAX_IDENTIFIER), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("last_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.String(MAX_REASON), nullable=True),
        sa.Column("last_success_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "state IN ('active', 'failing', 'disabled')", name="ck_webhook_endpoints_state"
        ),
        sa.UniqueConstraint("tenant", "url", name="uq_webhook_endpoints_url"),
    )
    op.create_index("ix_webhook_endpoints_tenant", "webhook_endpoints", ["tenant", "id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_endpoints_tenant", table_name="webhook_endpoints")
    op.drop_table("webhook_endpoints")
