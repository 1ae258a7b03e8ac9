"""Claims on deliveries, state transitions, order links, echoes.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

When = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add the claim columns and the three new tables."""
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(100)))
        batch.add_column(sa.Column("lease_until", When))
    op.create_table(
        "transitions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("target", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("at", When, nullable=False),
        sa.Column("detail", sa.Text),
    )
    op.create_index("transitions_by_delivery", "transitions", ["event_id", "target"])
    op.create_table(
        "links",
        sa.Column("platform", sa.String(32), primary_key=True),
        sa.Column("order_id", sa.String(255), primary_key=True),
        sa.Column("group_id", sa.String(36), nullable=False),
        sa.Column("updated_at", When, nullable=False),
    )
    op.create_index("links_by_group", "links", ["group_id"])
    op.create_table(
        "echoes",
        sa.Column("platform", sa.String(32), primary_key=True),
        sa.Column("order_id", sa.String(255), primary_key=True),
        sa.Column("event_id", sa.String(36), nullable=False),
        sa.Column("created_at", When, nullable=False),
    )
    op.create_index("echoes_by_age", "echoes", ["created_at"])


def downgrade() -> None:
    """Drop what `upgrade` added."""
    op.drop_index("echoes_by_age", "echoes")
    op.drop_table("echoes")
    op.drop_index("links_by_group", "links")
    op.drop_table("links")
    op.drop_index("transitions_by_delivery", "transitions")
    op.drop_table("transitions")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("claimed_by")
