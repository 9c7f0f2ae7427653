"""Initial schema: policy rows, policy versions and audit, assessments, keys, admins.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from service.models import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _nonempty(*columns: str) -> list[sa.CheckConstraint]:
    return [sa.CheckConstraint(f"{c} <> ''", name=f"ck_casbin_rule_{c}_nonempty") for c in columns]


def upgrade() -> None:
    # casbin-sqlalchemy-adapter's table, plus what the adapter leaves out: no empty or missing
    # value, no duplicate row, and an index whose leading column is the tenant (v0).
    op.create_table(
        "casbin_rule",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ptype", sa.String(255), nullable=False),
        *(sa.Column(f"v{i}", sa.String(255), nullable=False) for i in range(5)),
        sa.Column("v5", sa.String(255), nullable=True),
        *_nonempty("ptype", "v0", "v1", "v2", "v3", "v4"),
        sa.CheckConstraint("v5 IS NULL", name="ck_casbin_rule_v5_unused"),
    )
    op.create_index(
        "ux_casbin_rule_tenant_row",
        "casbin_rule",
        ["v0", "ptype", "v1", "v2", "v3", "v4"],
        unique=True,
    )
    op.create_table(
        "policy_versions",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("updated_by", sa.String(200), nullable=False),
        sa.CheckConstraint("version >= 1", name="ck_policy_versions_positive"),
    )
    op.create_table(
        "policy_changes",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("area", sa.String(64), nullable=False),
        sa.Column("phase", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("before", sa.Boolean, nullable=False),
        sa.Column("after", sa.Boolean, nullable=False),
    )
    op.create_index("ix_policy_changes_tenant", "policy_changes", ["tenant", "id"])
    op.create_table(
        "assessments",
        sa.Column("tenant", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("area", sa.String(64), nullable=False),
        sa.Column("phase", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_assessments_phase", "assessments", ["tenant", "area", "phase"])
    op.create_table(
        "transitions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tenant", sa.String(64), nullable=False),
        sa.Column("assessment_id", sa.String(128), nullable=False),
        sa.Column("from_phase", sa.String(64), nullable=False),
        sa.Column("to_phase", sa.String(64), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("policy_version", sa.Integer, nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant", "assessment_id"], ["assessments.tenant", "assessments.id"]
        ),
    )
    op.create_index("ix_transitions_assessment", "transitions", ["tenant", "assessment_id", "id"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_api_keys_prefix", "api_keys", ["prefix"])
    op.create_table(
        "admins",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("tenant", sa.String(64), nullable=True),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("failed_logins", sa.Integer, nullable=False),
        sa.Column("locked_until", UTCDateTime(), nullable=True),
    )


def downgrade() -> None:
    for table in ("admins", "api_keys", "transitions", "assessments", "policy_changes"):
        op.drop_table(table)
    op.drop_table("policy_versions")
    op.drop_table("casbin_rule")
