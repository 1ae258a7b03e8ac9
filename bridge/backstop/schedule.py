"""The backstop on a schedule: `run` polls every `[backstop] interval` from a stored watermark.

On the same beat, with `[sources.shoplazza] webhook_url` set, each store's `orders/cancelled`
subscription is checked (`subscriptions`: a warning line and the gauge when it is not there once).

Each Shoplazza store has its watermark in the store (`backstop shoplazza <shop>`): the newest
`updated_at` its last poll listed. The next poll starts `[backstop] overlap` before it (list
bounds that may not be inclusive, clocks that differ; an order seen twice is published once,
by its event id); the first poll, with no watermark yet, looks `first_window` back. A poll whose
list failed leaves the watermark where it was, so the next one covers the gap.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta

import aiohttp
import structlog

from bridge.amqp.publisher import BrokerUnavailable, Publisher
from bridge.background import in_background
from bridge.backstop.poller import Backstop, ShopPoll, shoplazza_stores
from bridge.backstop.subscriptions import check_stores, webhook_url
from bridge.metrics import Metrics
from bridge.settings import Config
from bridge.store.deliveries import Store
from bridge.store.engine import StoreUnavailable
from handlers.shoplazza import ShopAccess

log = structlog.get_logger(__name__)


def watermark_name(shop: str) -> str:
    """The store's name for a Shoplazza store's backstop watermark."""
    return f"backstop shoplazza {shop}"


async def poll_once(
    backstop: Backstop,
    stores: Mapping[str, ShopAccess],
    session: aiohttp.ClientSession,
    now: datetime,
) -> list[ShopPoll]:
    """One poll of every store from its watermark; the watermarks moved where the list held."""
    settings = backstop.config.settings.backstop
    polls = []
    for shop, access in stores.items():
        mark = await backstop.store.watermark(watermark_name(shop))
        since = (
            mark - timedelta(seconds=settings.overlap)
            if mark is not None
            else now - timedelta(seconds=settings.first_window)
        )
        (poll,) = await backstop.poll_shoplazza({shop: access}, since, now, session)
        if poll.error is None and poll.watermark is not None:
            await backstop.store.move_watermark(watermark_name(shop), poll.watermark)
        polls.append(poll)
    return polls


@contextlib.asynccontextmanager
async def scheduled(
    config: Config, env: Mapping[str, str], store: Store, publisher: Publisher, metrics: Metrics
) -> AsyncIterator[None]:
    """Poll in the background while the context lasts (nothing to do: nothing started)."""
    stores = shoplazza_stores(config, env)
    interval = config.settings.backstop.interval
    if not stores or interval <= 0:
        yield
        return
    backstop = Backstop(config, store, publisher, metrics)
    log.info("backstop.scheduled", source="shoplazza", stores=len(stores), interval=interval)
    async with in_background(_every(backstop, stores, interval), "backstop"):
        yield


async def _every(backstop: Backstop, stores: Mapping[str, ShopAccess], interval: float) -> None:
    address = webhook_url(backstop.config)
    async with aiohttp.ClientSession() as session:
        while True:
            if backstop.publisher is not None:
                await backstop.publisher.wait_ready()
            try:
                await poll_once(backstop, stores, session, datetime.now(UTC))
            except (StoreUnavailable, BrokerUnavailable) as exc:
                log.warning("backstop.failed", detail=str(exc))
            if address is not None:  # the subscriptions, checked (never changed) on this beat
                for verdict in await check_stores(
                    stores, address, backstop.metrics, session, ensure=False
                ):
                    if verdict.state != "ok":
                        log.warning("subscriptions.unhealthy", **verdict.as_json())
            await asyncio.sleep(interval)
