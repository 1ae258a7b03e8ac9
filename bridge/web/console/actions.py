"""Replay or drop one event's parked message of a target, after a confirmation page.

Both go through `bridge.amqp.parked.replay_or_drop`, as `cancel-bridge parked` does (read the
parked queue unacked, act on the messages whose id is the event id, return the rest, then note the
step in the pair's history) on a connection of their own to the configured broker.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import quote

import structlog
from aio_pika.abc import AbstractIncomingMessage
from aiohttp import web
from aiormq.exceptions import AMQPError, ChannelNotFoundEntity

from bridge.amqp import parked, topology
from bridge.amqp.publisher import BrokerUnavailable
from bridge.store.deliveries import Store
from bridge.store.engine import StoreUnavailable
from bridge.store.lifecycle import StepKind
from bridge.web.console import queries
from bridge.web.console.auth import Viewer, guarded
from bridge.web.console.render import PATH, error_page, html, json_page, redirect
from bridge.web.console.session import Flash
from bridge.web.console.views import not_found, plausible_id, recorded_event, targets_of
from bridge.web.keys import CONFIG, STORE

log = structlog.get_logger(__name__)

ACTIONS: dict[str, parked.Action] = {"replay": "replay", "drop": "drop"}  # as in the path
LOGGED = {"replay": "console.replayed", "drop": "console.dropped"}
FAILED = {"replay": "console.replay_failed", "drop": "console.drop_failed"}
BROKER_TIMEOUT = 15.0  # seconds for the whole move (connect, read the parked queue, act)
BROKER_RETRY_AFTER = "5"


async def move(request: web.Request, action: parked.Action, target: str, event_id: str) -> int:
    """Replay (to the work queue) or drop `event_id`'s messages in `target`'s parked queue.

    Then the step goes into the pair's history; the move stands even if the store is away.
    """
    url = request.app[CONFIG].amqp_url.get_secret_value()

    def chosen(message: AbstractIncomingMessage) -> bool:
        return message.message_id == event_id

    @asynccontextmanager
    async def history() -> AsyncIterator[Store]:
        try:
            yield request.app[STORE]
        except StoreUnavailable as exc:
            log.warning("console.note_failed", event_id=event_id, target=target, detail=str(exc))

    try:
        return await parked.replay_or_drop(
            url,
            target,
            action,
            chosen,
            by="in the console",
            markers=parked.Markers(
                replayed=StepKind.REPLAYED.marker, dropped=StepKind.DROPPED.marker
            ),
            history=history,
            timeout=BROKER_TIMEOUT,
        )
    except ChannelNotFoundEntity:  # no parked queue yet: nothing was ever parked there
        return 0
    except (AMQPError, OSError, TimeoutError) as exc:
        # The type only: a connection error's text may name the broker URL.
        raise BrokerUnavailable(f"broker unavailable ({type(exc).__name__})") from exc


def _what(action: str, target: str, moved: int) -> Flash:
    queue = topology.parked_queue(target)
    if moved == 0:
        return Flash(
            "warn",
            f"Nothing to {action}: no message of this event is in {queue}"
            " (replayed or dropped already?).",
        )
    many = "" if moved == 1 else f" ({moved} messages)"
    if action == "replay":
        return Flash(
            "ok",
            f"Replayed to {topology.work_queue(target)}{many}: the {target} worker will try"
            " this cancellation again.",
        )
    return Flash(
        "ok",
        f"Dropped from {queue}{many}: {target} will not be asked again (unless the platform"
        " sends this cancellation again). The store keeps the delivery as parked.",
    )


async def _checked(
    request: web.Request, viewer: Viewer
) -> tuple[str, str, parked.Action, queries.Json] | web.Response:
    """Event id, target, action and the event; or the page that says why not."""
    event_id = request.match_info["event_id"]
    target = request.match_info["target"]
    action = ACTIONS.get(request.match_info["action"])
    if action is None or target not in targets_of(request) or not plausible_id(event_id):
        return not_found(request, viewer, "No such action.")
    event = await recorded_event(request, viewer, event_id)
    if isinstance(event, web.Response):
        return event
    return event_id, target, action, event


async def _confirm(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    checked = await _checked(request, viewer)
    if isinstance(checked, web.Response):
        return checked
    event_id, target, action, event = checked
    delivery = next((d for d in event["deliveries"] if d["target"] == target), None)
    return html(
        request,
        "confirm.html",
        viewer=viewer,
        nav="events",
        event=event,
        delivery=delivery,
        target=target,
        action=action,
        parked_queue=topology.parked_queue(target),
        work_queue=topology.work_queue(target),
        back=f"{PATH}/events/{quote(event_id, safe='')}",
    )


async def _act(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    checked = await _checked(request, viewer)
    if isinstance(checked, web.Response):
        return checked
    event_id, target, action, _ = checked
    try:
        moved = await move(request, action, target, event_id)
    except BrokerUnavailable as exc:
        log.warning(FAILED[action], event_id=event_id, target=target, detail=str(exc))
        if viewer.bearer:
            return json_page(
                503,
                {"error": "broker_unavailable", "detail": str(exc)},
                {"Retry-After": BROKER_RETRY_AFTER},
            )
        return error_page(
            request,
            503,
            "Broker unavailable",
            f"The broker did not answer in time ({exc}). The move may not have happened, or"
            " only in part: look again in a moment (replaying twice is harmless: a second copy"
            " finds the delivery settled).",
            {"Retry-After": BROKER_RETRY_AFTER},
            viewer=viewer,
        )
    log.info(LOGGED[action], event_id=event_id, target=target, moved=moved)
    if viewer.bearer:
        return json_page(
            200, {"action": action, "event_id": event_id, "target": target, "moved": moved}
        )
    return redirect(
        request, f"{PATH}/events/{quote(event_id, safe='')}", _what(action, target, moved)
    )


confirm = guarded(_confirm)
act = guarded(_act)
