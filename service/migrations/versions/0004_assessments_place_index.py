"""Assessments by place in id order: the index resource search pages through.

`ix_assessments_place (tenant, area, phase, id)` replaces `ix_assessments_phase (tenant, area,
phase)`, of which it is an extension: every query the old index served it serves too, and a page
of the assessments at one place after a given id is one range of it, read in id order.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_assessments_place", "assessments", ["tenant", "area", "phase", "id"])
    op.drop_index("ix_assessments_phase", table_name="assessments")


def downgrade() -> None:
    op.create_index("ix_assessments_phase", "assessments", ["tenant", "area", "phase"])
    op.drop_index("ix_assessments_place", table_name="assessments")
