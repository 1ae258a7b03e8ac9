"""Console test helpers: the console on a plain app, seeded stores, and Debian's Chromium.

Plain tests mount the console alone (no broker needed) on an app holding the config and a real
store; browser tests drive Chromium through Playwright against the whole pipeline.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web

from bridge.settings import Config
from bridge.store.arrivals import Arrival
from bridge.store.deliveries import Store
from bridge.store.lifecycle import DeliveryState
from bridge.web import console
from bridge.web.app import json_errors
from bridge.web.keys import CONFIG, STORE
from contracts.events import CancelReason, OrderCancelled, Source
from tests.harness.pipeline import pipeline_config

CHROMIUM = os.environ.get("CB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
DEAD_BROKER = "amqp://guest:guest@127.0.0.1:1/"  # nothing listens on port 1
NO_CJ = "http://127.0.0.1:9/graphql"


def console_config(store_url: str | None = None) -> Config:
    """The pipeline's configuration for console tests: no broker, no CJ, a scratch store."""
    return pipeline_config(DEAD_BROKER, NO_CJ, store_url)


SHOP = "console.myshoplaza.com"
WORKER = "console-test-worker"


def console_app(config: Config, store: Store, **options: int) -> web.Application:
    """The console alone on an app with the receiver's error middleware, config and store."""
    app = web.Application(middlewares=[json_errors])
    app[CONFIG] = config
    app[STORE] = store
    console.add_routes(app, **options)
    return app


def event(
    order_id: str | None = None, shop: str = SHOP, source: Source = Source.SHOPLAZZA
) -> OrderCancelled:
    """A cancellation (a fresh order id unless given)."""
    now = datetime.now(UTC)
    return OrderCancelled.create(
        source=source,
        shop=shop,
        order_id=order_id or uuid.uuid4().hex[:10],
        order_number=None,
        reason=CancelReason.INVENTORY,
        source_reason="Out of stock",
        cancelled_at=now,
        received_at=now,
        delivery_id=None,
    )


async def arrive(
    store: Store, cancelled: OrderCancelled, at: datetime, targets: Sequence[str] = ("cj",)
) -> None:
    """Record the event as the receiver does, routed to `targets`."""
    await store.arrive_many([Arrival(cancelled, at, tuple(targets), at - timedelta(days=30))])


async def attempt(  # noqa: PLR0913 - one argument per column the worker writes
    store: Store,
    cancelled: OrderCancelled,
    at: datetime,
    state: DeliveryState,
    detail: str | None = None,
    *,
    target: str = "cj",
) -> None:
    """One claimed call to `target` ending in `state`, as the worker records it."""
    await store.claim(cancelled, target, WORKER, at, at + timedelta(minutes=1))
    await store.finish(str(cancelled.event_id), target, WORKER, state, at, detail=detail)


def chromium_or_skip() -> str:
    """Chromium's path; without it (or Playwright) fail under CI=true, else skip loudly."""
    reason = None
    try:
        import playwright.async_api  # noqa: F401, PLC0415 - only browser tests need it
    except ImportError as exc:  # pragma: no cover - dev extras missing
        reason = f"Playwright is not installed ({exc})"
    if reason is None and not Path(CHROMIUM).exists():
        reason = f"no Chromium at {CHROMIUM} (set CB_CHROMIUM)"
    if reason is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but browser tests cannot run: {reason}")
        pytest.skip(f"NO CHROMIUM: {reason}")
    return CHROMIUM
