"""A parked replay or drop stands when the store cannot take its history note."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bridge.cli.main import _history
from bridge.settings import parse_settings, resolve


async def test_a_store_that_cannot_be_opened_is_said_not_raised(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The messages already moved: the CLI says the note was not written and carries on."""
    settings = parse_settings(
        {"sources": {"shoplazza": {"secret_env": "S"}}, "store": {"path": "/proc/nope/x.db"}}
    )
    config = resolve(settings, {"S": "secret"})
    async with _history(config) as history:
        await history.note_parked("event-1", "cj", datetime.now(UTC), "REPLAYED: test")
    assert "not written to the store's history" in capsys.readouterr().err
