"""A fake Shoplazza Open API: cancel and read orders as PLATFORMS.md section 1 describes.

Stores are path prefixes (`/<shop>/openapi/<version>/...`), each with its Access-Token. Cancelling
an open order answers 200 with the order; a cancelled or finished one 406; an unknown one 404
`{"errors": ["Unable to find resource"]}`. Above 2 requests per second per store it answers a bare
429 (a leaky bucket, as Shoplazza documents) and counts it in `too_fast`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from tests.bridges import serve

RATE_WINDOW = 0.95  # seconds: two requests per store within this are allowed, a third is 429
RATE_LIMIT = 2


@dataclass
class FakeShoplazza:
    """Orders by (shop, id) with their status; tokens by shop; every request recorded."""

    tokens: dict[str, str]
    orders: dict[tuple[str, str], str] = field(default_factory=dict)
    cancels: list[tuple[str, str]] = field(default_factory=list)
    reads: list[tuple[str, str]] = field(default_factory=list)
    too_fast: int = 0
    url: str = ""
    _recent: dict[str, list[float]] = field(default_factory=dict)
    _runner: web.AppRunner | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def _refusal(self, request: web.Request, shop: str) -> web.Response | None:
        if request.headers.get("Access-Token") != self.tokens.get(shop):
            return web.json_response({"error": "Unauthorized"}, status=401)
        now = asyncio.get_running_loop().time()
        recent = [at for at in self._recent.get(shop, []) if at > now - RATE_WINDOW]
        if len(recent) >= RATE_LIMIT:
            self.too_fast += 1
            return web.Response(status=429)
        self._recent[shop] = [*recent, now]
        return None

    def _order(self, shop: str, order_id: str) -> dict[str, str]:
        return {"id": order_id, "status": self.orders[(shop, order_id)]}

    async def _cancel(self, request: web.Request) -> web.Response:
        shop, order_id = request.match_info["shop"], request.match_info["order_id"]
        if (refused := self._refusal(request, shop)) is not None:
            return refused
        status = self.orders.get((shop, order_id))
        if status is None:
            return web.json_response({"errors": ["Unable to find resource"]}, status=404)
        if status in ("cancelled", "finished"):
            return web.json_response({"errors": ["order can not be cancelled"]}, status=406)
        self.orders[(shop, order_id)] = "cancelled"
        async with self._changed:
            self.cancels.append((shop, order_id))
            self._changed.notify_all()
        return web.json_response(self._order(shop, order_id))

    async def _read(self, request: web.Request) -> web.Response:
        shop, order_id = request.match_info["shop"], request.match_info["order_id"]
        if (refused := self._refusal(request, shop)) is not None:
            return refused
        self.reads.append((shop, order_id))
        if (shop, order_id) not in self.orders:
            return web.json_response({"errors": ["Unable to find resource"]}, status=404)
        return web.json_response({"order": self._order(shop, order_id)})

    async def wait_cancels(self, count: int) -> None:
        """Return once `count` orders were cancelled."""
        async with self._changed:
            await self._changed.wait_for(lambda: len(self.cancels) >= count)

    async def start(self) -> None:
        """Serve on an ephemeral loopback port."""
        app = web.Application()
        prefix = "/{shop}/openapi/{version}/orders/{order_id}"
        app.router.add_post(prefix + "/cancel", self._cancel)
        app.router.add_get(prefix, self._read)
        self._runner, self.url = await serve(app)

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
