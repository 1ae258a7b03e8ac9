"""Parked messages of a target: list them, replay them to the work queue, or drop them.

Each command reads the whole parked queue on one channel without acking, acts on the chosen
messages (replay: publish to the work queue, confirmed, then ack; drop: ack), and closes the
channel, which returns every other message to the queue untouched.

`replay_or_drop` is the operator's step, from the CLI (`cancel-bridge parked`) and the console
alike: the move, then a note in each moved pair's history. The note goes to the store, which the
AMQP side may not import (`tests/test_layering.py`): the caller hands it in as a `HistoryWriter`,
the store's history markers, and decides what a store that cannot be written means.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal, Protocol

import aio_pika
import orjson
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractMessage, FieldValue
from rich.progress import track

from bridge.amqp import topology
from bridge.amqp.messages import (
    ATTEMPTS_HEADER,
    FIRST_ATTEMPT_HEADER,
    LAST_ERROR_HEADER,
    NOT_BEFORE_HEADER,
    PARK_REASON_HEADER,
    PARKED_AT_HEADER,
    copy_with,
)
from bridge.settings import first_url

REPLAY_HEADER = "x-replays"
CLEARED_ON_REPLAY = (
    ATTEMPTS_HEADER,
    FIRST_ATTEMPT_HEADER,
    NOT_BEFORE_HEADER,
    PARK_REASON_HEADER,
    PARKED_AT_HEADER,
)
PROGRESS_FROM = 20  # show a progress bar when moving at least this many


@dataclass(frozen=True, slots=True)
class ParkedRow:
    """One parked message as the table shows it."""

    event_id: str
    order: str
    reason: str
    attempts: int
    age_seconds: float | None


def _int(value: FieldValue | None) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _order(body: bytes) -> str:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "?"
    if not isinstance(document, dict):
        return "?"
    return "/".join(str(document.get(key, "?")) for key in ("source", "shop", "order_id"))


def _latest_death(headers: Mapping[str, FieldValue]) -> str | None:
    """The broker's newest dead-letter reason (x-death[0]); x-first-death-* is the oldest trip."""
    deaths = headers.get("x-death")
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        reason = deaths[0].get("reason")
        return str(reason) if reason is not None else None
    return None


def parked_row(
    message_id: str | None, headers: Mapping[str, FieldValue], body: bytes, now: float
) -> ParkedRow:
    """What a parked message says: our `x-park-reason`, or the broker's death reason."""
    reason = headers.get(PARK_REASON_HEADER) or _latest_death(headers) or "?"
    # Not x-delivery-count: reading the parked queue (list/replay/drop) raises it.
    attempts = _int(headers.get(ATTEMPTS_HEADER)) or 0
    parked_ms = _int(headers.get(PARKED_AT_HEADER))
    age = now - parked_ms / 1000 if parked_ms is not None else None
    return ParkedRow(message_id or "?", _order(body), str(reason), attempts, age)


def format_age(seconds: float | None) -> str:
    """`42s`, `17m`, `5h`, `3d`; `?` when unknown."""
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(max(seconds, 0))}s"


def table(rows: Collection[ParkedRow]) -> str:
    """A plain, aligned table: event id, order, reason, attempts, age."""
    header = ("EVENT ID", "ORDER", "REASON", "ATTEMPTS", "AGE")
    cells = [header] + [
        (r.event_id, r.order, r.reason[:80], str(r.attempts), format_age(r.age_seconds))
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [
        "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    ]
    lines.append(f"{len(rows)} parked")
    return "\n".join(lines)


def for_replay(message: AbstractMessage) -> aio_pika.Message:
    """The message as a fresh first attempt: retry and park headers cleared, replays counted."""
    headers = message.headers or {}
    return copy_with(
        message,
        {
            REPLAY_HEADER: (_int(headers.get(REPLAY_HEADER)) or 0) + 1,
            LAST_ERROR_HEADER: str(headers.get(PARK_REASON_HEADER, "")),
        },
        drop=CLEARED_ON_REPLAY,
    )


async def read_all(channel: AbstractChannel, queue_name: str) -> list[AbstractIncomingMessage]:
    """Every message in the queue, unacked (closing the channel returns those not acked)."""
    queue = await channel.get_queue(queue_name, ensure=True)
    messages = []
    while (message := await queue.get(no_ack=False, fail=False)) is not None:
        messages.append(message)
    return messages


Selector = Callable[[AbstractIncomingMessage], bool]


async def list_rows(url: str, parked_queue: str, now: float) -> list[ParkedRow]:
    """Rows for every parked message; the queue is left as it was."""
    async with (
        await aio_pika.connect(first_url(url)) as connection,
        connection.channel() as channel,
    ):
        messages = await read_all(channel, parked_queue)
        return [parked_row(m.message_id, m.headers or {}, m.body, now) for m in messages]


async def replay(url: str, parked_queue: str, work_queue: str, select: Selector) -> int:
    """Move the selected parked messages to the work queue (confirmed, then acked)."""
    async with (
        await aio_pika.connect(first_url(url)) as connection,
        connection.channel(publisher_confirms=True, on_return_raises=True) as channel,
    ):
        chosen = [m for m in await read_all(channel, parked_queue) if select(m)]
        steps = track(chosen, description="replaying") if len(chosen) >= PROGRESS_FROM else chosen
        for message in steps:
            await channel.default_exchange.publish(for_replay(message), work_queue, mandatory=True)
            await message.ack()
        return len(chosen)


async def drop(url: str, parked_queue: str, select: Selector) -> int:
    """Delete the selected parked messages for good."""
    async with (
        await aio_pika.connect(first_url(url)) as connection,
        connection.channel() as channel,
    ):
        chosen = [m for m in await read_all(channel, parked_queue) if select(m)]
        for message in chosen:
            await message.ack()
        return len(chosen)


Action = Literal["replay", "drop"]


class HistoryWriter(Protocol):
    """Where an operator's step is written: the store (`Store.note_parked`)."""

    async def note_parked(self, event_id: str, target: str, now: datetime, detail: str) -> None:
        """Write `detail` (starting with the step's marker) into the pair's history at `now`."""


@dataclass(frozen=True, slots=True)
class Markers:
    """The store's words a history step starts with (`REPLAYED`, `DROPPED`): never an attempt."""

    replayed: str
    dropped: str


async def replay_or_drop(  # noqa: PLR0913 - the move, who made it, and where it is written
    url: str,
    target: str,
    action: Action,
    select: Selector,
    *,
    by: str,
    markers: Markers,
    history: Callable[[], AbstractAsyncContextManager[HistoryWriter]],
    timeout: float | None = None,  # noqa: ASYNC109 - bounds the move, not the history note
) -> int:
    """Replay or drop `target`'s selected parked messages, then note it in each pair's history.

    The step is dated when it began, before the worker can act on a replayed message. `by` says
    who moved them (`in the console`); `timeout` bounds the move alone. The history is opened
    only when something moved, once, and each moved event is noted once; the move stands
    whatever the history does (the caller's `history` decides what a failure to write means).
    """
    moved: dict[str, None] = {}  # each event id once, in the order found

    def chosen(message: AbstractIncomingMessage) -> bool:
        if not select(message):
            return False
        if message.message_id:
            moved[message.message_id] = None
        return True

    began = datetime.now(UTC)
    parked, work = topology.parked_queue(target), topology.work_queue(target)
    async with asyncio.timeout(timeout):
        if action == "replay":
            count = await replay(url, parked, work, chosen)
        else:
            count = await drop(url, parked, chosen)
    detail = (
        f"{markers.replayed}: {by}, to {work}"
        if action == "replay"
        else f"{markers.dropped}: {by}, for good"
    )
    if count:
        async with history() as store:
            for event_id in moved:
                await store.note_parked(event_id, target, began, detail)
    return count
