"""review queue: decisions on refused requests, reports of images, withheld images

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("review", sa.String(length=20), nullable=False, server_default="pending")
        )
        batch_op.add_column(sa.Column("reviewed_by", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("reviewed_at", sa.Double(), nullable=True))
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.add_column(sa.Column("withheld_at", sa.Double(), nullable=True))
    op.create_table(
        "image_reports",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("image_id", sa.String(length=40), nullable=False),
        sa.Column("user_id", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("review", sa.String(length=20), nullable=False),
        sa.Column("reviewed_by", sa.String(length=40), nullable=True),
        sa.Column("reviewed_at", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_image_reports_image_id"), "image_reports", ["image_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_image_reports_image_id"), table_name="image_reports")
    op.drop_table("image_reports")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_column("withheld_at")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("reviewed_at")
        batch_op.drop_column("reviewed_by")
        batch_op.drop_column("review")
