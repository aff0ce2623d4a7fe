"""admin actions: who changed which account, role, suspension, credits or key

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 12:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_actions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("actor_id", sa.String(length=40), nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target_user_id", sa.String(length=40), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_admin_actions_actor_id", "admin_actions", ["actor_id"])
    op.create_index("ix_admin_actions_target_created", "admin_actions", ["target_user_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_admin_actions_target_created", table_name="admin_actions")
    op.drop_index("ix_admin_actions_actor_id", table_name="admin_actions")
    op.drop_table("admin_actions")
