"""one pending report per image and user: two reports sent at once made two queue items

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

PENDING = sa.text("review = 'pending'")


def upgrade() -> None:
    # keep the first of any pending duplicates (their reasons are the same user's words about the same image)
    op.execute(
        "DELETE FROM image_reports WHERE review = 'pending' AND id NOT IN "
        "(SELECT MIN(id) FROM image_reports WHERE review = 'pending' GROUP BY image_id, user_id)"
    )
    op.create_index(
        "uq_image_reports_pending",
        "image_reports",
        ["image_id", "user_id"],
        unique=True,
        sqlite_where=PENDING,
        postgresql_where=PENDING,
    )


def downgrade() -> None:
    op.drop_index("uq_image_reports_pending", table_name="image_reports")
