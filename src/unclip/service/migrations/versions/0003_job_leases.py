"""job leases: which worker runs a job and until when, cancel requests, dispatch times

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 06:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("worker", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("lease_until", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("cancel_requested", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("dispatched_at", sa.Double(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("dispatched_at")
        batch_op.drop_column("cancel_requested")
        batch_op.drop_column("lease_until")
        batch_op.drop_column("worker")
