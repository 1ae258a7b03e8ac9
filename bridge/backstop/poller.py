"""The backstop's poll: what no webhook brought is published as a normal event.

Shoplazza: for every store with API access (`[targets.shoplazza] shops`, the Access-Token with
`read_order`; within `[sources.shoplazza] shops` when that allowlist is set) the cancelled
orders updated since `since` are listed (`shoplazza_pages`). Each becomes the canonical event
the webhook would have made: the same deterministic event id, so an order the bridge has seen
is left alone and nothing is done twice. An unseen one is recorded like a webhook's arrival (an
order the bridge itself cancelled there is an echo, and skipped) and published, confirmed, with
`x-cancel-bridge-backstop: true`; `cancel_bridge_backstop_found_total` counts it. A dry run
lists and looks up, and publishes nothing.

OCC: with `[sources.occ]` and `[targets.occ]` (its admin host and application key, set), the
tenant's `REMOVED` orders are listed through the admin API (`occ_pages`), logged in as the OCC
target logs in (`make_target`'s `TokenAuth`, the same token cache and one new login on a 401),
by `lastModifiedDate` since `since`, or, when OCC refuses that query (a 400), those submitted
in the last `[backstop] occ_lookback` (a sliding window, the store's record deciding what is
new). Each order is counted once per poll, whatever the paging repeats.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiohttp
import structlog
import yarl
from pydantic import SecretStr

from bridge.amqp.messages import BACKSTOP_HEADER, event_properties
from bridge.amqp.publisher import Publisher
from bridge.backstop import occ_pages
from bridge.backstop.shoplazza_pages import (
    Page,
    PageRequest,
    beyond,
    cancelled,
    first_request,
    latest_update,
    next_request,
    read_page,
)
from bridge.executor import Executor, HttpAnswer
from bridge.metrics import Metrics
from bridge.settings import Config
from bridge.store.arrivals import Arrival, Echo
from bridge.store.deliveries import Store
from bridge.tokens import NoToken, TokenCache, call_with_token
from contracts.events import OrderCancelled, Source
from handlers import occ
from handlers.base import HttpCall, MalformedPayloadError, RetryLater, TokenAuth
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

    @property
    def refused(self) -> bool:
        """OCC refused the request itself (its errorModel with a 400: `occ_pages.refused`)."""
        return self.failure is None and occ_pages.refused(self.status)


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
    source: str = "shoplazza"
    query: str | None = None  # OCC: lastModifiedDate, or submittedDate after a fallback
    truncated: bool = False  # stopped at the page limit with more to list

    def logged(self) -> None:
        """The poll's `backstop.polled` line (`query` where the source has one: OCC)."""
        query = {} if self.query is None else {"query": self.query}
        log.info(
            "backstop.polled",
            source=self.source,
            shop=self.shop,
            **query,
            listed=self.listed,
            found=len(self.found),
            pages=self.pages,
            truncated=self.truncated,
            error=self.error,
        )


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
            if beyond(request):
                poll.truncated, request = True, None
            if request is not None:
                await asyncio.sleep(PACE)  # the platform's rate, not a wait for our own work
        poll.logged()
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

    async def poll_occ(
        self,
        access: OCCAccess,
        since: datetime,
        now: datetime,
        session: aiohttp.ClientSession,
    ) -> ShopPoll:
        """The tenant's cancelled (`REMOVED`) orders since `since`, each published once.

        Asked by `lastModifiedDate`; when OCC refuses that query (a 400 to the first page), by
        `submittedDate` over the last `[backstop] occ_lookback` (at least back to `since`),
        orders modified before `since` left out where the list shows the date.
        """
        poll = ShopPoll(access.name, watermark=since, source="occ", query=occ_pages.WATERMARK)
        api = OCCList(access, session)
        seen: set[tuple[str | None, str]] = set()  # (site, order id): pages may repeat rows
        request: occ_pages.PageRequest | None = occ_pages.first_request(
            occ_pages.WATERMARK, since, access.sites
        )
        while request is not None:
            answer = await api.get(request)
            if poll.query == occ_pages.WATERMARK and request.number == 1 and answer.refused:
                poll.query = occ_pages.WINDOW
                lookback = timedelta(seconds=self.config.settings.backstop.occ_lookback)
                log.warning(
                    "backstop.occ_fallback",
                    shop=access.name,
                    detail=occ_pages.error_of(answer.body) or f"HTTP {answer.status}",
                    window=str(lookback),
                )
                start = min(since, now - lookback)
                request = occ_pages.first_request(occ_pages.WINDOW, start, access.sites)
                continue
            page = _occ_page(answer, poll)
            if page is None:
                break
            poll.pages += 1
            poll.skipped += page.skipped
            await self._take_events(_occ_events(page, since, now, seen, poll), now, poll)
            poll.watermark = occ_pages.latest_update(page, poll.watermark or since)
            request = occ_pages.next_request(request, page)
            if occ_pages.beyond(request):
                poll.truncated, request = True, None
        poll.logged()
        return poll

    async def _take(self, shop: str, page: Page, now: datetime, poll: ShopPoll) -> None:
        events: list[OrderCancelled] = []
        for order in cancelled(page):
            try:
                events.append(event_from_order(order, shop, now, None))
            except MalformedPayloadError:
                poll.skipped += 1
        await self._take_events(events, now, poll)

    async def _take_events(
        self, events: list[OrderCancelled], now: datetime, poll: ShopPoll
    ) -> None:
        """Publish the events the store has not seen (`poll.listed` counts them all)."""
        poll.listed += len(events)
        known = await self.store.known_events([str(event.event_id) for event in events])
        for event in events:
            if str(event.event_id) not in known:
                poll.found.append(await self._publish(event.shop, event, now))

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


# --- OCC ----------------------------------------------------------------------------------

NO_OCC = (
    "no OCC tenant to ask: [sources.occ], and [targets.occ] with its application key set"
    " (app_key_env), are needed"
)


@dataclass(frozen=True, slots=True)
class OCCAccess:
    """An OCC tenant the backstop can list: its admin host, and the target's login."""

    base_url: str
    auth: TokenAuth  # the OCC target's: `POST /ccadmin/v1/login` with the application key
    timeout: float  # the login's (`[targets.occ] timeout`)
    sites: tuple[str, ...] = ()  # the sites asked about (none: every site of the tenant)

    @property
    def name(self) -> str:
        """The tenant as the poll is reported and its watermark named: the admin host."""
        return self.base_url.partition("://")[2] or self.base_url


def occ_tenant(config: Config, env: Mapping[str, str]) -> OCCAccess | None:
    """The OCC tenant the backstop can list: `[targets.occ]` with its application key set.

    None without a `[sources.occ]` (nothing of OCC's is served), without `[targets.occ]`, or
    with its key unset. The login is the target's own (`occ.make_target`).
    """
    section = config.settings.targets.occ  # type: ignore[attr-defined]
    if section is None or Source.OCC not in config.source_settings:
        return None
    envs = occ.target_secret_envs(section)
    secrets = {key: SecretStr(env.get(name, "").strip()) for key, name in envs.items()}
    if not all(secret.get_secret_value() for secret in secrets.values()):
        return None
    build = occ.make_target(section, secrets)
    if build.auth is None:  # pragma: no cover - the OCC target always logs in
        return None
    source = config.source_settings[Source.OCC]
    sites = source.sites if isinstance(source, occ.OCCSourceSettings) else ()
    return OCCAccess(section.base_url.rstrip("/"), build.auth, section.timeout, sites)


class OCCList:
    """Calls to one tenant's admin API with the target's token (one login, kept while good)."""

    def __init__(self, access: OCCAccess, session: aiohttp.ClientSession) -> None:
        self._access = access
        self._session = session
        self._tokens = TokenCache(access.auth, Executor(session), access.timeout)

    async def get(self, request: occ_pages.PageRequest) -> ApiAnswer:
        """One page; a 401 logs in once more (`call_with_token`)."""
        url = str(yarl.URL(self._access.base_url + request.path).with_query(list(request.query)))
        call = HttpCall(method="GET", url=url, headers={"Accept": "application/json"}, body=b"")
        answer = await call_with_token(call, self._tokens, self._send)
        if isinstance(answer, NoToken):
            return ApiAnswer(0, b"", f"login: {answer.why.reason}")
        if isinstance(answer, RetryLater):
            return ApiAnswer(0, b"", f"order list unreachable ({answer.reason})")
        return ApiAnswer(answer.status, answer.body)

    async def _send(self, call: HttpCall) -> HttpAnswer | RetryLater:
        try:
            async with self._session.request(
                call.method,
                yarl.URL(call.url, encoded=True),
                headers=dict(call.headers),
                timeout=TIMEOUT,
            ) as response:
                # The whole body: `content.read(n)` returns what has arrived so far.
                return HttpAnswer(response.status, response.headers, await response.read())
        except TimeoutError:
            return RetryLater("no answer in time")
        except aiohttp.ClientError as exc:
            return RetryLater(type(exc).__name__)


def _occ_page(answer: ApiAnswer, poll: ShopPoll) -> occ_pages.Page | None:
    """The page `answer` holds, or None with `poll.error` saying why not."""
    if answer.failure is not None:
        poll.error = answer.failure  # the login's, or why the list did not answer
    elif answer.status != HTTP_OK:
        detail = occ_pages.error_of(answer.body)
        poll.error = f"order list answered {answer.status}{f': {detail}' if detail else ''}"
    else:
        try:
            return occ_pages.read_page(answer.body)
        except ValueError as exc:
            poll.error = str(exc)
    return None


def _occ_events(
    page: occ_pages.Page,
    since: datetime,
    now: datetime,
    seen: set[tuple[str | None, str]],
    poll: ShopPoll,
) -> list[OrderCancelled]:
    """The events of the page's cancelled orders not met before in this poll (`seen`)."""
    events: list[OrderCancelled] = []
    for order in occ_pages.removed_since(page, since):
        if (order.siteId, order.id) in seen:
            continue
        seen.add((order.siteId, order.id))
        try:
            events.append(occ_pages.event_from_order(order, now))
        except MalformedPayloadError:
            poll.skipped += 1
    return events
