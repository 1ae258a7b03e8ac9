"""A fake CJ tracking API (tests, demo, benchmarks): `/graphql` answers like CJ documents."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

TOKEN = "fake-cj-token-5e1"  # noqa: S105 - the fake's own, public by design


@dataclass(frozen=True)
class Reply:
    """One scripted answer: status, JSON body (or raw bytes), headers, and a delay first."""

    status: int = 200
    body: object = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


def accepted(order_id: str) -> Reply:
    """CJ's success answer, with a fresh submissionId."""
    submission = str(uuid.uuid4())
    return Reply(
        body={
            "data": {
                "cancelOrders": {
                    "orders": [
                        {"submissionId": submission, "orderId": order_id, "status": "Declined"}
                    ],
                    "errors": None,
                }
            }
        }
    )


def error_in_200(message: str) -> Reply:
    """CJ's failure answer: HTTP 200 with `cancelOrders.errors`."""
    return Reply(
        body={
            "data": {
                "cancelOrders": {
                    "orders": None,
                    "errors": [{"message": message, "fields": ["orderId"]}],
                }
            }
        }
    )


@dataclass
class Call:
    """One request the fake received."""

    order: dict[str, Any]
    authorization: str
    at: float


class FakeCJ:
    """Records every cancel request; answers from `script[order_id]`, else accepts."""

    def __init__(
        self, *, remember: bool = False, on_call: Callable[[Call], None] | None = None
    ) -> None:
        self.script: dict[str, list[Reply]] = {}
        self.calls: list[Call] = []
        # With `remember`, an order accepted once is answered "already declined" afterwards,
        # as a real tracker would refuse a second cancellation.
        self.remember = remember
        # `on_call` sees each call as it is recorded, before it is answered (benchmarks
        # timestamp arrivals with it).
        self.on_call = on_call
        self.accepted: Counter[str] = Counter()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._stopping = asyncio.Event()
        self.url = ""

    async def _graphql(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"message": "Unauthorized"}, status=401)
        document = await request.json()
        orders = document["variables"]["orders"]
        order = orders[0]
        order_id = order["orderId"]
        async with self._changed:
            call = Call(order, request.headers["Authorization"], asyncio.get_running_loop().time())
            self.calls.append(call)
            if self.on_call is not None:
                self.on_call(call)
            replies = self.script.get(order_id)
            if replies:
                reply = replies.pop(0)
            elif self.remember and self.accepted[order_id]:
                reply = error_in_200(f"Order {order_id} is already declined")
            else:
                reply = accepted(order_id)
                self.accepted[order_id] += 1  # the decline happens on receipt
            self._changed.notify_all()
        if reply.delay:  # the scripted slowness itself, cut short when the fake stops
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(reply.delay):
                    await self._stopping.wait()
        body = reply.body if isinstance(reply.body, bytes) else orjson.dumps(reply.body)
        return web.Response(
            status=reply.status, body=body, headers=reply.headers, content_type="application/json"
        )

    def calls_for(self, order_id: str) -> list[Call]:
        """The calls that named `order_id`."""
        return [call for call in self.calls if call.order["orderId"] == order_id]

    async def wait_calls(self, count: int) -> None:
        """Return once `count` calls have arrived."""
        async with self._changed:
            await self._changed.wait_for(lambda: len(self.calls) >= count)

    async def wait_accepted(self, orders: int) -> None:
        """Return once `orders` distinct orders have been accepted."""
        async with self._changed:
            await self._changed.wait_for(lambda: len(self.accepted) >= orders)

    async def start(self) -> str:
        """Serve on an ephemeral loopback port; returns the GraphQL URL."""
        app = web.Application()
        app.router.add_post("/graphql", self._graphql)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/graphql"
        return self.url

    async def stop(self) -> None:
        """Stop serving (scripted delays end at once)."""
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()
