"""The backstop's poll: what no webhook brought is published as a normal event.

For every Shoplazza store with API access (`[targets.shoplazza] shops`, the Access-Token with
`read_order`; within `[sources.shoplazza] shops` when that allowlist is set) the cancelled
orders updated since `since` are listed (`shoplazza_pages`). Each becomes the canonical event
the webhook would have made: the same deterministic event id, so an order the bridge has seen
is left alone and nothing is done twice. An unseen one is recorded like a webhook's arrival (an
order the bridge itself cancelled there is an echo, and skipped) and published, confirmed, with
`x-cancel-bridge-backstop: true`; `cancel_bridge_backstop_found_total` counts it. A dry run
lists and looks up, and publishes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiohttp
import structlog
from pydantic import SecretStr

from bridge.amqp.messages import BACKSTOP_HEADER, event_properties
from bridge.amqp.publisher import Publisher
from bridge.backstop.shoplazza_pages import (
    Page,
    PageRequest,
    cancelled,
    first_request,
    latest_update,
    next_request,
    read_page,
)
from bridge.metrics import Metrics
from bridge.settings import Config
from bridge.store.arrivals import Arrival, Echo
from bridge.store.deliveries import Store
from contracts.events import OrderCancelled, Source
from handlers.base import MalformedPayloadError
from handlers.shoplazza import (
    ShopAccess,
    ShoplazzaSourceSettings,
    event_from_order,
    shop_accesses,
    target_secret_envs,
)

log = structlog.get_logger(__name__)

PACE = 0.5  # seconds between one store's pages: Shoplazza allows 2 requests a second
TOO_FAST_TRIES = 5  # 429s in a row before a store's poll gives up until the next one
TIMEOUT = aiohttp.ClientTimeout(total=30)


HTTP_OK, TOO_MANY = 200, 429


@dataclass(frozen=True, slots=True)
class ApiAnswer:
    """A store's answer: its status and body, or why there was none (`status` 0)."""

    status: int
    body: bytes
    failure: str | None = None  # the exception's type: unreachable, timed out


async def call_store(  # noqa: PLR0913 - a call's parts
    session: aiohttp.ClientSession,
    access: ShopAccess,
    method: str,
    path: str,
    *,
    query: tuple[tuple[str, str], ...] = (),
    body: bytes | None = None,
) -> ApiAnswer:
    """One Shoplazza Open API call for a store (`path` after its base URL).

    A 429 is tried again a second later, `TOO_FAST_TRIES` times at most: no header says how long
    (none is documented); the last 429 is the answer.
    """
    headers = {"Access-Token": access.token.get_secret_value()}
    if body is not None:
        headers["Content-Type"] = "application/json"
    status = TOO_MANY
    for _ in range(TOO_FAST_TRIES):
        try:
            async with session.request(
                method,
                access.base_url + path,
                params=list(query),
                data=body,
                headers=headers,
                timeout=TIMEOUT,
            ) as response:
                answer, status = await response.read(), response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            return ApiAnswer(0, b"", type(exc).__name__)
        if status != TOO_MANY:
            return ApiAnswer(status, answer)
        await asyncio.sleep(1.0)
    return ApiAnswer(status, b"")


@dataclass(frozen=True, slots=True)
class Found:
    """A cancelled order no webhook had brought."""

    shop: str
    order_id: str
    event_id: str
    published: bool  # False in a dry run, or for an echo of the bridge's own cancellation


@dataclass(slots=True)
class ShopPoll:
    """One store's poll: what it found, how far it read, and why it stopped early (if it did)."""

    shop: str
    found: list[Found] = field(default_factory=list)
    listed: int = 0  # cancelled orders listed
    pages: int = 0
    skipped: int = 0  # list entries that made no order or no event
    watermark: datetime | None = None
    error: str | None = None


NO_STORES = (
    "no Shoplazza store to ask: [sources.shoplazza], and [targets.shoplazza] shops with their"
    " Access-Token (scope read_order), are needed"
)


def shoplazza_stores(config: Config, env: Mapping[str, str]) -> dict[str, ShopAccess]:
    """The stores the backstop can list: `[targets.shoplazza]`'s with their tokens set.

    Within `[sources.shoplazza] shops` when that allowlist is set; empty without a Shoplazza
    source or without `[targets.shoplazza]`.
    """
    section = config.settings.targets.shoplazza  # type: ignore[attr-defined]
    source = config.source_settings.get(Source.SHOPLAZZA)
    if section is None or source is None:
        return {}
    envs = target_secret_envs(section)  # the target's own names of the stores' tokens
    secrets = {key: SecretStr(env.get(name, "").strip()) for key, name in envs.items()}
    allowed = source.shops if isinstance(source, ShoplazzaSourceSettings) else ()
    return {
        shop: access
        for shop, access in shop_accesses(section, secrets).items()
        # A store whose token is unset cannot be asked; one off the allowlist is not served.
        if access.token.get_secret_value() and (not allowed or shop in allowed)
    }


@dataclass(frozen=True, slots=True)
class Backstop:
    """What a poll needs: the store, the configuration, and a publisher (None: a dry run)."""

    config: Config
    store: Store
    publisher: Publisher | None
    metrics: Metrics

    async def poll_shoplazza(
        self,
        stores: Mapping[str, ShopAccess],
        since: datetime,
        now: datetime,
        session: aiohttp.ClientSession,
    ) -> list[ShopPoll]:
        """Every store's poll, one after the other."""
        return [
            await self._poll_shop(shop, access, since, now, session)
            for shop, access in stores.items()
        ]

    async def _poll_shop(
        self,
        shop: str,
        access: ShopAccess,
        since: datetime,
        now: datetime,
        session: aiohttp.ClientSession,
    ) -> ShopPoll:
        poll = ShopPoll(shop, watermark=since)
        request: PageRequest | None = first_request(access.api_version, since)
        while request is not None:
            page = await self._page(session, access, request, poll)
            if page is None:
                break
            poll.pages += 1
            poll.skipped += page.skipped
            await self._take(shop, page, now, poll)
            poll.watermark = latest_update(page, poll.watermark or since)
            request = next_request(access.api_version, request, page)
            if request is not None:
                await asyncio.sleep(PACE)  # the platform's rate, not a wait for our own work
        log.info(
            "backstop.polled",
            source="shoplazza",
            shop=shop,
            listed=poll.listed,
            found=len(poll.found),
            pages=poll.pages,
            error=poll.error,
        )
        return poll

    async def _page(
        self,
        session: aiohttp.ClientSession,
        access: ShopAccess,
        request: PageRequest,
        poll: ShopPoll,
    ) -> Page | None:
        answer = await call_store(session, access, "GET", request.path, query=request.query)
        if answer.failure is not None:
            poll.error = f"order list unreachable ({answer.failure})"
        elif answer.status == TOO_MANY:
            poll.error = "order list answered 429 every time"
        elif answer.status != HTTP_OK:
            poll.error = f"order list answered {answer.status}"
        else:
            try:
                return read_page(answer.body)
            except ValueError as exc:
                poll.error = str(exc)
        return None

    async def _take(self, shop: str, page: Page, now: datetime, poll: ShopPoll) -> None:
        events: list[OrderCancelled] = []
        for order in cancelled(page):
            try:
                events.append(event_from_order(order, shop, now, None))
            except MalformedPayloadError:
                poll.skipped += 1
        poll.listed += len(events)
        known = await self.store.known_events([str(event.event_id) for event in events])
        for event in events:
            if str(event.event_id) not in known:
                poll.found.append(await self._publish(shop, event, now))

    async def _publish(self, shop: str, event: OrderCancelled, now: datetime) -> Found:
        key = str(event.event_id)
        if self.publisher is None:
            return Found(shop, event.order_id, key, published=False)
        settings = self.config.settings
        body = event.to_json()
        arrival = Arrival(
            event,
            now,
            tuple(settings.routes.get(event.source, ())),
            echo_since=now - timedelta(seconds=settings.store.echo_ttl),
            body=body,
        )
        (arrived,) = await self.store.arrive_many([arrival])
        if isinstance(arrived, Echo):  # the bridge cancelled it there itself
            return Found(shop, event.order_id, key, published=False)
        properties = event_properties(event, app_id=settings.broker.app_id, seen=arrived.count)
        if properties.headers is not None:
            properties.headers[BACKSTOP_HEADER] = True
        await self.publisher.publish_event(event, body, properties)
        self.metrics.backstop_found.labels(event.source.value).inc()
        log.warning(
            "backstop.found",
            source=event.source.value,
            shop=shop,
            order_id=event.order_id,
            event_id=key,
        )
        return Found(shop, event.order_id, key, published=True)
