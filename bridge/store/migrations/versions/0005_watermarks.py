"""Watermarks: where each scheduled poll (the backstop's) got to.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    """Add the `watermarks` table."""
    op.create_table(
        "watermarks",
        sa.Column("name", sa.String(300), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    """Drop the `watermarks` table."""
    op.drop_table("watermarks")
