"""Parked-message rows, the table and replay copies, by plain calls; CLI argument refusals."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from aio_pika import Message
from aio_pika.abc import FieldValue

from bridge.amqp import parked
from bridge.amqp.messages import ATTEMPTS_HEADER, PARK_REASON_HEADER, PARKED_AT_HEADER
from bridge.cli.main import main

NOW = 1_700_000_000.0
BODY = orjson.dumps({"source": "shoplazza", "shop": "demo.myshoplaza.com", "order_id": "1001"})


def test_row_from_our_park_headers() -> None:
    headers: dict[str, FieldValue] = {
        PARK_REASON_HEADER: "cj: Order not found",
        ATTEMPTS_HEADER: 3,
        PARKED_AT_HEADER: int((NOW - 7200) * 1000),
    }
    row = parked.parked_row("ev-1", headers, BODY, NOW)
    assert row == parked.ParkedRow(
        "ev-1", "shoplazza/demo.myshoplaza.com/1001", "cj: Order not found", 3, 7200.0
    )


def test_row_from_a_broker_dead_letter() -> None:
    """A poison message parked by the delivery limit carries the broker's headers only."""
    headers: dict[str, FieldValue] = {
        "x-first-death-reason": "expired",  # its first trip was through a delay queue
        "x-death": [{"reason": "delivery_limit"}, {"reason": "expired"}],
        "x-delivery-count": 6,  # raised by every read of the parked queue: not shown
    }
    row = parked.parked_row(None, headers, b"\x00not json", NOW)
    assert (row.event_id, row.order, row.reason, row.attempts, row.age_seconds) == (
        "?",
        "?",
        "delivery_limit",
        0,
        None,
    )


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "?"), (-3, "0s"), (42, "42s"), (61, "1m"), (7200, "2h"), (3 * 86400 + 5, "3d")],
)
def test_format_age(seconds: float | None, text: str) -> None:
    assert parked.format_age(seconds) == text


def test_table_is_aligned_and_counts() -> None:
    rows = [
        parked.ParkedRow("ev-1", "shoplazza/a/1", "cj: Order not found", 1, 30),
        parked.ParkedRow("ev-22", "shoplazza/b/22", "retries exhausted: HTTP 503", 29, 90000),
    ]
    lines = parked.table(rows).splitlines()
    assert lines[0].split() == ["EVENT", "ID", "ORDER", "REASON", "ATTEMPTS", "AGE"]
    assert lines[-1] == "2 parked"
    assert lines[1].index("shoplazza/a/1") == lines[2].index("shoplazza/b/22")
    assert lines[2].endswith("1d")


def test_replay_copy_is_a_fresh_attempt() -> None:
    """Attempts and park headers go; the reason becomes the last error; replays are counted."""
    original = Message(
        BODY,
        message_id="ev-1",
        headers={
            PARK_REASON_HEADER: "cj: Order not found",
            ATTEMPTS_HEADER: 3,
            PARKED_AT_HEADER: 1,
            "ce-id": "ev-1",
            parked.REPLAY_HEADER: 1,
        },
    )
    copy = parked.for_replay(original)
    assert copy.body == BODY
    assert copy.message_id == "ev-1"
    assert copy.headers == {
        "ce-id": "ev-1",
        parked.REPLAY_HEADER: 2,
        "x-last-error": "cj: Order not found",
    }


@pytest.fixture
def config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(
        '[targets.cj]\nurl = "http://127.0.0.1:9/graphql"\nenterprise_id = "1"\n'
        'action_tracker_id = 2\nopen_ended_locking = true\norder_id_from = "order_id"\n'
        '[routes]\nshoplazza = ["cj"]\n'
    )
    monkeypatch.setenv("CJ_ACCESS_TOKEN", "t")
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["replay"],  # neither --event-id nor --all
        ["replay", "--all", "--event-id", "x"],  # both
        ["drop", "--all"],  # --all without --yes
    ],
)
def test_parked_commands_refuse_vague_selections(
    config_file: Path, args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["parked", args[0], "--target", "cj", "--config", str(config_file), *args[1:]])
    assert status == 2
    assert capsys.readouterr().err.startswith("cancel-bridge: ")
