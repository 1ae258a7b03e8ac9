"""The spool: events the broker could not take, held until it can.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

When = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add the `spool` table."""
    op.create_table(
        "spool",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("event_json", sa.Text, nullable=False),
        sa.Column("seen", sa.Integer, nullable=False),
        sa.Column("spooled_at", When, nullable=False),
        sa.Column("claimed_by", sa.String(100)),
        sa.Column("lease_until", When),
    )


def downgrade() -> None:
    """Drop the `spool` table."""
    op.drop_table("spool")
