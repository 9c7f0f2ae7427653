"""Who did it and sessions that end: the key beside every transition and create, a session
version and a disabled mark per admin, and a unique key prefix.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from service.models import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The key that made each move and each assessment, beside the actor its caller named. Rows
    # from before this migration have none (NULL): nothing recorded it then.
    op.add_column("transitions", sa.Column("key_id", sa.Integer, nullable=True))
    op.add_column("transitions", sa.Column("key_name", sa.String(200), nullable=True))
    op.add_column("assessments", sa.Column("created_key_id", sa.Integer, nullable=True))
    op.add_column("assessments", sa.Column("created_key_name", sa.String(200), nullable=True))
    op.add_column("assessments", sa.Column("created_actor", sa.String(200), nullable=True))
    # Every session carries the version it was issued at; logout, a password change and
    # disabling bump it, which ends every session of that account at once.
    op.add_column(
        "admins", sa.Column("session_version", sa.Integer, nullable=False, server_default="0")
    )
    op.add_column("admins", sa.Column("disabled_at", UTCDateTime(), nullable=True))
    _unique_prefixes()


def _unique_prefixes() -> None:
    """Make the lookup prefix unique, changing no key's answer. Where keys shared a prefix, the
    lookup (`WHERE prefix = ?`, first row) only ever checked one of them: on SQLite the first
    (its index holds ties in id order), on PostgreSQL the first too unless a revoke rewrote that
    row to another page, which puts it behind. So the row that lookup finds now is kept as it
    is, and the others, which could not authenticate, are revoked and their prefix marked
    (`~<id>`: not hex, so no issued key's)."""
    bind = op.get_bind()
    keys = sa.table(
        "api_keys",
        sa.column("id", sa.Integer),
        sa.column("name", sa.String),
        sa.column("tenant", sa.String),
        sa.column("prefix", sa.String),
        sa.column("digest", sa.String),
        sa.column("revoked_at", UTCDateTime()),
    )
    shared = bind.execute(
        sa.select(keys.c.prefix).group_by(keys.c.prefix).having(sa.func.count() > 1)
    ).scalars()
    now = datetime.now(UTC)
    for prefix in shared.all():
        lookup = sa.select(keys.c.id, keys.c.name, keys.c.tenant, keys.c.digest, keys.c.revoked_at)
        found, *shadowed = bind.execute(lookup.where(keys.c.prefix == prefix)).all()
        for row in shadowed:
            bind.execute(
                keys.update()
                .where(keys.c.id == row.id)
                .values(prefix=f"{prefix[:4]}~{row.id}", revoked_at=row.revoked_at or now)
            )
    op.drop_index("ix_api_keys_prefix", table_name="api_keys")
    op.create_index("ix_api_keys_prefix", "api_keys", ["prefix"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_api_keys_prefix", table_name="api_keys")
    op.create_index("ix_api_keys_prefix", "api_keys", ["prefix"])
    with op.batch_alter_table("admins") as admins:
        admins.drop_column("disabled_at")
        admins.drop_column("session_version")
    with op.batch_alter_table("assessments") as assessments:
        assessments.drop_column("created_actor")
        assessments.drop_column("created_key_name")
        assessments.drop_column("created_key_id")
    with op.batch_alter_table("transitions") as transitions:
        transitions.drop_column("key_name")
        transitions.drop_column("key_id")
