"""The store's tables (SQLAlchemy Core); the Alembic migrations in `migrations/` create them.

The values of `deliveries.state` and `transitions.state` are `lifecycle.DeliveryState`s.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
When = sa.DateTime(timezone=True)

events = sa.Table(
    "events",
    metadata,
    sa.Column("event_id", sa.String(36), primary_key=True),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("shop", sa.String(255), nullable=False),
    sa.Column("order_id", sa.String(255), nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("first_seen", When, nullable=False),
    sa.Column("last_seen", When, nullable=False),
    sa.Column("delivery_count", sa.Integer, nullable=False),
    # The event as first published (its JSON body), to publish it again (reconciliation).
    # Rows written before migration 0003 have none: they are rebuilt from the columns above.
    sa.Column("event_json", sa.Text),
    sa.Index("events_by_order", "source", "order_id"),
)

deliveries = sa.Table(
    "deliveries",
    metadata,
    sa.Column("event_id", sa.String(36), sa.ForeignKey("events.event_id"), primary_key=True),
    sa.Column("target", sa.String(32), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("reference", sa.String(255)),
    sa.Column("created_at", When, nullable=False),
    sa.Column("updated_at", When, nullable=False),
    sa.Column("claimed_by", sa.String(100)),
    sa.Column("lease_until", When),
)

# Every state a delivery went through, for `status` and the API.
transitions = sa.Table(
    "transitions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("target", sa.String(32), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("at", When, nullable=False),
    sa.Column("detail", sa.Text),
    sa.Index("transitions_by_delivery", "event_id", "target"),
)

# One order across platforms: rows sharing `group_id` are the same order.
links = sa.Table(
    "links",
    metadata,
    sa.Column("platform", sa.String(32), primary_key=True),
    sa.Column("order_id", sa.String(255), primary_key=True),
    sa.Column("group_id", sa.String(36), nullable=False),
    sa.Column("updated_at", When, nullable=False),
    sa.Index("links_by_group", "group_id"),
)

# Orders the bridge itself cancelled on a platform: that platform's webhook for it is an echo.
echoes = sa.Table(
    "echoes",
    metadata,
    sa.Column("platform", sa.String(32), primary_key=True),
    sa.Column("order_id", sa.String(255), primary_key=True),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("created_at", When, nullable=False),
    sa.Index("echoes_by_age", "created_at"),
)

# Events the broker could not take (link down, no confirm in time), held for the forwarder: it
# publishes them oldest first once the broker is back and deletes each after its confirm.
spool = sa.Table(
    "spool",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("source", sa.String(32), nullable=False),
    sa.Column("event_json", sa.Text, nullable=False),
    sa.Column("seen", sa.Integer, nullable=False),
    sa.Column("spooled_at", When, nullable=False),
    sa.Column("claimed_by", sa.String(100)),
    sa.Column("lease_until", When),
)

# Where a scheduled poll got to (the backstop's, by source and shop): the next starts there.
watermarks = sa.Table(
    "watermarks",
    metadata,
    sa.Column("name", sa.String(300), primary_key=True),
    sa.Column("at", When, nullable=False),
)

# Which event holds each target order (the name the target knows it by: CJ's orderId, a linked
# platform order): one effect per (target, order) whatever the event id; the others settle as
# `duplicate` (`effects.py`).
effects = sa.Table(
    "effects",
    metadata,
    sa.Column("target", sa.String(32), primary_key=True),
    sa.Column("order_key", sa.String(255), primary_key=True),
    sa.Column("event_id", sa.String(36), nullable=False),
    sa.Column("created_at", When, nullable=False),
    sqlite_with_rowid=False,
)

# Console sessions signed out before they expired: every receiver process refuses their cookie
# (`sessions.py`). A row is forgotten once its session would have expired anyway.
revocations = sa.Table(
    "revocations",
    metadata,
    sa.Column("session_id", sa.String(64), primary_key=True),
    sa.Column("expires_at", When, nullable=False),
)
