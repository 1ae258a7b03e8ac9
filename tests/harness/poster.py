"""A platform under load: signed Shoplazza cancellations, each sent again until it gets a 2xx.

Every non-2xx answer and every connection error is retried, as a platform would, after a short
growing backoff (not the 5 s `Retry-After`: the tests would take minutes), bounded by an overall
timeout. With several receiver URLs, attempt k of order i goes to URL (i + k) mod n, as a load
balancer would move a retry to another receiver.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import aiohttp
import orjson

from tests.harness.receiver import Webhook, signed

CONNECTIONS = 32
REQUEST_TIMEOUT = 30.0  # seconds for one request
BACKOFF_FIRST = 0.05  # seconds before the first retry; doubles, up to BACKOFF_MAX
BACKOFF_MAX = 1.0


@dataclass(frozen=True, slots=True)
class Order:
    """One cancelled order and the webhook announcing it (the same bytes on every retry)."""

    order_id: str
    shop: str
    hook: Webhook


def shoplazza_orders(count: int, shop: str) -> list[Order]:
    """`count` distinct cancelled orders of `shop`, each with its signed webhook."""
    run = uuid.uuid4().hex[:6]
    orders = []
    for n in range(count):
        order_id = f"{run}-{n}"
        body = orjson.dumps(
            {
                "id": order_id,
                "number": f"#{1000 + n}",
                "status": "cancelled",
                "cancel_reason": "Out of stock",
                "cancelled_at": "2026-11-23T10:00:00+08:00",
            }
        )
        hook = signed(body, topic="orders/cancelled", shop=shop, delivery_id=str(uuid.uuid4()))
        orders.append(Order(order_id, shop, hook))
    return orders


@dataclass
class Tally:
    """What the platform saw: every answer's status, connection errors, orders with a 2xx."""

    answers: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    accepted: set[str] = field(default_factory=set)
    attempts: int = 0

    @property
    def refused(self) -> int:
        """Attempts that did not get a 2xx (any other status, or no answer at all)."""
        return self.attempts - sum(n for status, n in self.answers.items() if 200 <= status < 300)


class Poster:
    """Sends `orders` to `urls` over `connections` connections, each until it gets a 2xx."""

    def __init__(
        self,
        urls: Sequence[str],
        orders: Sequence[Order],
        *,
        timeout: float,
        connections: int = CONNECTIONS,
        rate: float | None = None,
    ) -> None:
        self.urls = list(urls)
        self.orders = list(orders)
        self.timeout = timeout
        self.connections = connections
        self.rate = rate  # orders per second (first attempts), or as fast as answered
        self.tally = Tally()
        self.timed_out = False
        self.started: list[Order] = []  # orders sent at least once, in order
        self._finishing = False
        self._changed = asyncio.Condition()
        self._random = random.Random(7)  # noqa: S311 - backoff jitter, not cryptography

    @property
    def unaccepted(self) -> list[str]:
        """Orders sent that never got a 2xx."""
        return [o.order_id for o in self.started if o.order_id not in self.tally.accepted]

    def finish(self) -> None:
        """Start no new order; those already sent are still sent until they get a 2xx."""
        self._finishing = True

    def summary(self) -> str:
        """posted, 2xx, 503, other, errors: the figures every assertion message states."""
        tally = self.tally
        ok = sum(n for status, n in tally.answers.items() if 200 <= status < 300)
        other = {s: n for s, n in sorted(tally.answers.items()) if s != 503 and not 200 <= s < 300}
        return (
            f"posted {len(self.started)} orders in {tally.attempts} attempts;"
            f" orders with a 2xx {len(tally.accepted)} (2xx answers {ok});"
            f" 503 answers {tally.answers[503]}; other answers {other or 0};"
            f" connection errors {dict(tally.errors) or 0}"
            + ("; the poster TIMED OUT" if self.timed_out else "")
        )

    async def wait_accepted(self, count: int) -> None:
        """Return once `count` orders got a 2xx."""
        async with self._changed:
            await self._changed.wait_for(lambda: len(self.tally.accepted) >= count)

    async def wait_refused(self, count: int) -> None:
        """Return once `count` attempts in all were refused or failed."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.tally.refused >= count)

    async def run(self) -> None:
        """Send every order (until `finish`) until it got a 2xx, or until the overall timeout."""
        connector = aiohttp.TCPConnector(limit=self.connections)
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        queue = iter(enumerate(self.orders))
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

            async def sender() -> None:
                for index, order in queue:
                    if self.rate:
                        # An open-loop arrival schedule: order i is cancelled at i / rate.
                        pause = max(0.0, started + index / self.rate - loop.time())
                        await asyncio.sleep(pause)  # paced: the arrival schedule
                    if self._finishing:
                        return
                    self.started.append(order)
                    await self._deliver(session, index, order)

            try:
                async with asyncio.timeout(self.timeout), asyncio.TaskGroup() as group:
                    for _ in range(self.connections):
                        group.create_task(sender())
            except TimeoutError:
                self.timed_out = True

    async def _deliver(self, session: aiohttp.ClientSession, index: int, order: Order) -> None:
        attempt = 0
        while True:
            url = self.urls[(index + attempt) % len(self.urls)]
            status = await self._post(session, url, order.hook)
            async with self._changed:
                self.tally.attempts += 1
                if status is not None:
                    self.tally.answers[status] += 1
                    if 200 <= status < 300:
                        self.tally.accepted.add(order.order_id)
                self._changed.notify_all()
            if status is not None and 200 <= status < 300:
                return
            backoff = min(BACKOFF_MAX, BACKOFF_FIRST * 2**attempt)
            attempt += 1
            # A platform's retry pacing (jittered), not a wait for some state.
            await asyncio.sleep(backoff * self._random.uniform(0.5, 1.0))  # paced: retry backoff

    async def _post(self, session: aiohttp.ClientSession, url: str, hook: Webhook) -> int | None:
        """The answer's status, or None (the error counted) when there was no answer."""
        try:
            async with session.post(url, data=hook.body, headers=hook.headers) as response:
                await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.tally.errors[type(exc).__name__] += 1
            return None
        return response.status
