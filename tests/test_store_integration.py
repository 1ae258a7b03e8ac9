"""The state store on both engines: SQLite in a file, and PostgreSQL when DATABASE_URL is set."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
from yarl import URL

from bridge.cli import main
from bridge.settings import ConfigError, parse_settings, resolve
from bridge.store import SCHEMA_HEAD, Store, async_url
from contracts.events import CancelReason, OrderCancelled, Source

NOW = datetime(2025, 4, 9, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield str(tmp_path / "state.db")
        return
    server = os.environ.get("DATABASE_URL")
    if not server:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but DATABASE_URL is not set: the store needs PostgreSQL")
        pytest.skip("NO POSTGRESQL: DATABASE_URL unset (SQLite still tested)")
    name = f"cb_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield str(URL(server).with_path(f"/{name}"))
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def event(order_id: str = "1001") -> OrderCancelled:
    return OrderCancelled.create(
        source=Source.SHOPLAZZA,
        shop="demo.myshoplaza.com",
        order_id=order_id,
        order_number=None,
        reason=CancelReason.OTHER,
        source_reason=None,
        cancelled_at=NOW,
        received_at=NOW,
        delivery_id=None,
    )


async def test_events_count_their_deliveries(database_url: str) -> None:
    async with Store.open(database_url) as store:
        assert await store.record_event(event(), NOW) == 1
        assert await store.record_event(event(), NOW + timedelta(minutes=1)) == 2
        assert await store.record_event(event("other"), NOW) == 1


async def test_schema_survives_reopening(database_url: str) -> None:
    """Migrations run on every open and are idempotent; data stays."""
    async with Store.open(database_url) as store:
        await store.record_event(event(), NOW)
    async with Store.open(database_url) as store:
        assert await store.record_event(event(), NOW) == 2
        assert await store.delivery(str(event().event_id), "cj") is None


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u@h:5432/db", "postgresql+asyncpg://u@h:5432/db"),
        ("postgres://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("sqlite:///var/lib/cb/state.db", "sqlite+aiosqlite:///var/lib/cb/state.db"),
        ("/var/lib/cb/state.db", "sqlite+aiosqlite:////var/lib/cb/state.db"),
        ("sqlite+aiosqlite:///x.db", "sqlite+aiosqlite:///x.db"),
    ],
)
def test_async_url(given: str, expected: str) -> None:
    assert async_url(given) == expected


def test_db_upgrade_creates_the_sqlite_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store = tmp_path / "state.db"
    config = tmp_path / "c.toml"
    config.write_text(
        f'[store]\npath = "{store}"\n[sources.shoplazza]\nsecret_env = "SHOPLAZZA_CLIENT_SECRET"\n'
    )
    monkeypatch.setenv("SHOPLAZZA_CLIENT_SECRET", "s")
    assert main(["db", "upgrade", "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == f"store schema at {SCHEMA_HEAD}: {store}"
    assert store.exists()
    assert main(["db", "upgrade", "--config", str(config)]) == 0  # idempotent


def test_store_url_comes_from_the_named_variable_or_the_path() -> None:
    settings = parse_settings(
        {
            "store": {"path": "/var/lib/cb/state.db", "url_env": "DATABASE_URL"},
            "sources": {"shoplazza": {"secret_env": "S"}},
        }
    )
    pg = "postgresql://bridge:pw@db:5432/bridge"
    assert resolve(settings, {"S": "x", "DATABASE_URL": pg}).store_url.get_secret_value() == pg
    assert resolve(settings, {"S": "x"}).store_url.get_secret_value() == "/var/lib/cb/state.db"
    with pytest.raises(ConfigError) as caught:
        resolve(settings, {"S": "x", "DATABASE_URL": "mysql://db/x"})
    assert caught.value.key == "store.url_env"
    assert "pw" not in str(caught.value)
