"""Effects: which event holds each target order, so it is acted on once whatever the event id.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    """Add the `effects` table."""
    op.create_table(
        "effects",
        sa.Column("target", sa.String(32), primary_key=True),
        sa.Column("order_key", sa.String(255), primary_key=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sqlite_with_rowid=False,  # SQLite: one B-tree, the key's (no rowid table beside it)
    )


def downgrade() -> None:
    """Drop the `effects` table."""
    op.drop_table("effects")
