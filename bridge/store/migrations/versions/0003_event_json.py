"""Each event's JSON body, so that reconciliation can publish the original event again.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    """Add `events.event_json` (nullable: older rows have none)."""
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("event_json", sa.Text))


def downgrade() -> None:
    """Drop `events.event_json`."""
    with op.batch_alter_table("events") as batch:
        batch.drop_column("event_json")
