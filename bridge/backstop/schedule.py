"""The backstop on a schedule: `run` polls every `[backstop] interval` from a stored watermark.

On the same beat, with `[sources.shoplazza] webhook_url` set, each store's `orders/cancelled`
subscription is checked (`subscriptions`: a warning line and the gauge when it is not there once).

Each Shoplazza store has its watermark in the store (`backstop shoplazza <shop>`): when its
last poll listed to the end, the later of the poll's start and the newest `updated_at` listed
(a quiet store's window does not grow from its first poll on). The next poll starts
`[backstop] overlap` before it (list bounds that may not be inclusive, the platform's clock
behind ours by up to `overlap`, an order slow to show in the list; an order seen twice is
published once, by its event id); the first poll, with no watermark yet, looks `first_window`
back. A poll whose list failed leaves the watermark where it was, so the next one covers the
gap.

The OCC tenant (`occ_tenant`: `[sources.occ]`, `[targets.occ]` and its application key) is
polled on the same beat with its own watermark (`backstop occ <admin host>`), moved the same
way (the newest `lastModifiedDate` listed, whichever query OCC took, or the poll's start).
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
from bridge.backstop.poller import Backstop, OCCAccess, ShopPoll, occ_tenant, shoplazza_stores
from bridge.backstop.subscriptions import check_stores, webhook_url
from bridge.metrics import Metrics
from bridge.settings import Config
from bridge.store.deliveries import Store
from bridge.store.engine import StoreUnavailable
from handlers.shoplazza import ShopAccess

log = structlog.get_logger(__name__)


def watermark_name(shop: str, source: str = "shoplazza") -> str:
    """The store's name for a backstop watermark: a Shoplazza store's, or an OCC tenant's."""
    return f"backstop {source} {shop}"


async def _since(backstop: Backstop, name: str, now: datetime) -> datetime:
    """Where a poll starts: `overlap` before the watermark `name`, else `first_window` back."""
    settings = backstop.config.settings.backstop
    mark = await backstop.store.watermark(name)
    if mark is not None:
        return mark - timedelta(seconds=settings.overlap)
    return now - timedelta(seconds=settings.first_window)


async def _moved(backstop: Backstop, name: str, poll: ShopPoll, now: datetime) -> ShopPoll:
    """`poll`, its watermark stored if its list held.

    Listed to the end: at least the poll's start. Cut short at the page limit: the newest
    update listed, so the next poll goes on from there.
    """
    if poll.error is not None:
        return poll
    if poll.truncated:
        log.warning("backstop.truncated", shop=poll.shop, source=poll.source, pages=poll.pages)
        if poll.watermark is not None:
            await backstop.store.move_watermark(name, poll.watermark)
        return poll
    await backstop.store.move_watermark(name, max(poll.watermark or now, now))
    return poll


async def poll_once(
    backstop: Backstop,
    stores: Mapping[str, ShopAccess],
    session: aiohttp.ClientSession,
    now: datetime,
) -> list[ShopPoll]:
    """One poll of every store from its watermark; the watermarks moved where the list held."""
    polls = []
    for shop, access in stores.items():
        name = watermark_name(shop)
        since = await _since(backstop, name, now)
        (poll,) = await backstop.poll_shoplazza({shop: access}, since, now, session)
        polls.append(await _moved(backstop, name, poll, now))
    return polls


async def poll_occ_once(
    backstop: Backstop, tenant: OCCAccess, session: aiohttp.ClientSession, now: datetime
) -> ShopPoll:
    """One poll of the OCC tenant from its watermark; the watermark moved if the list held."""
    name = watermark_name(tenant.name, "occ")
    since = await _since(backstop, name, now)
    return await _moved(backstop, name, await backstop.poll_occ(tenant, since, now, session), now)


@contextlib.asynccontextmanager
async def scheduled(
    config: Config, env: Mapping[str, str], store: Store, publisher: Publisher, metrics: Metrics
) -> AsyncIterator[None]:
    """Poll in the background while the context lasts (nothing to do: nothing started)."""
    stores = shoplazza_stores(config, env)
    tenant = occ_tenant(config, env)
    interval = config.settings.backstop.interval
    if not (stores or tenant) or interval <= 0:
        yield
        return
    backstop = Backstop(config, store, publisher, metrics)
    if stores:
        log.info("backstop.scheduled", source="shoplazza", stores=len(stores), interval=interval)
    if tenant is not None:
        log.info("backstop.scheduled", source="occ", shop=tenant.name, interval=interval)
    async with in_background(_every(backstop, stores, tenant, interval), "backstop"):
        yield


async def _every(
    backstop: Backstop,
    stores: Mapping[str, ShopAccess],
    tenant: OCCAccess | None,
    interval: float,
) -> None:
    address = webhook_url(backstop.config)
    async with aiohttp.ClientSession() as session:
        while True:
            if backstop.publisher is not None:
                await backstop.publisher.wait_ready()
            now = datetime.now(UTC)
            try:
                await poll_once(backstop, stores, session, now)
                if tenant is not None:
                    await poll_occ_once(backstop, tenant, session, now)
            except (StoreUnavailable, BrokerUnavailable) as exc:
                log.warning("backstop.failed", detail=str(exc))
            if address is not None:  # the subscriptions, checked (never changed) on this beat
                for verdict in await check_stores(
                    stores, address, backstop.metrics, session, ensure=False
                ):
                    if verdict.state != "ok":
                        log.warning("subscriptions.unhealthy", **verdict.as_json())
            await asyncio.sleep(interval)
