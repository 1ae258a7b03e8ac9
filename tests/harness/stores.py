"""Stores for tests: scratch SQLite files nobody inspects, `[store]` sections, PostgreSQL."""

from __future__ import annotations

import os
import tempfile
import uuid
from datetime import datetime
from pathlib import Path

import pytest

from bridge.store.deliveries import Store
from bridge.store.spool import ToSpool
from contracts.events import OrderCancelled

# Stores of tests that do not look at them: one fresh SQLite file per config, removed at exit.
_SCRATCH = tempfile.TemporaryDirectory(prefix="cancel-bridge-tests-")


def scratch_store() -> str:
    """A fresh SQLite file path for a store nobody inspects."""
    return str(Path(_SCRATCH.name) / f"{uuid.uuid4().hex}.db")


def store_section(database_url: str) -> tuple[dict[str, str], dict[str, str]]:
    """`[store]` settings and the environment that select `database_url` (file or URL)."""
    if "://" in database_url:
        return {"url_env": "CB_TEST_STORE_URL"}, {"CB_TEST_STORE_URL": database_url}
    return {"path": database_url}, {}


def postgres_server() -> str:
    """DATABASE_URL (a server tests may create databases on); in CI it must be set."""
    server = os.environ.get("DATABASE_URL")
    if not server:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but DATABASE_URL is not set: the store needs PostgreSQL")
        pytest.skip("NO POSTGRESQL: DATABASE_URL unset (SQLite still tested)")
    return server


async def hold_in_spool(store: Store, event: OrderCancelled, at: datetime, seen: int = 1) -> None:
    """Hold `event` in the spool as the receiver does while the broker is away."""
    (held,) = await store.spool_many(
        [ToSpool(str(event.event_id), event.source.value, event.to_json(), seen, at)], limit=100
    )
    assert held
