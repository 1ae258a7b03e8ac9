"""A fake Shoplazza Open API: cancel and read orders as PLATFORMS.md section 1 describes.

Stores are path prefixes (`/<shop>/openapi/<version>/...`), each with its Access-Token. It answers
only what Shoplazza documents, and where Shoplazza is silent the most conservative reading:

- Cancel (https://shoplazza.dev/reference/openapi2022-01ordersidcancel): an open order 200 with
  the order, bare; an unknown one 404 "Unable to find resource"; a finished one 406, the
  documented "wrong state" status (https://shoplazza.dev/reference/http-status: "refund an order
  which is not in after-sale status").
- Re-cancel (the order is already cancelled): undocumented. `recancel_status` picks 406, 422 or
  400; the default is **400**, the most conservative reading: it is the one status documented in
  every API version (2022-01 and the 2025-06/2026-01 pages that group all errors into
  400/403/500, https://www.shoplazza.dev/api/openapi), and the least telling: 400 also means bad
  input or bad credentials (the seed files "Unauthorized" under it), so the bridge can only learn
  "already cancelled" by reading the order.
- Error bodies: `error_shape` picks 2022-01's `{"errors": ["..."]}` (401's `{"error": "..."}`, the
  other documented 2022-01 shape) or 2025-06's `{"code": "...", "message": "..."}`
  (https://www.shoplazza.dev/v2025.06/reference/order-delete-v2025-06). Codes other than the
  documented `InvalidParameter` are the seed's 500 reason names (`NotFound`, `Unauthenticated`).
- Read (`GET .../orders/{id}`): `{"order": {...}}`, as https://shoplazza.dev/reference/api-usage
  shows it.
- List (`GET .../orders`, the backstop's poll; docs/platforms/backstop-research.md section 1):
  2022-01 (https://shoplazza.dev/reference/order-list-3) takes `status`, `updated_at_min` (at or
  after), `limit` (default 10, 1 to 250) and `page` (from 1) and answers `{count, next_token,
  orders}`; 2026-01 (Shoplazza's CLI) takes `page_size` (1 to 250) and `cursor` and answers
  `{orders, cursor, has_more}`. A parameter it does not know is ignored (the unfiltered list, as
  the CLI notes say). Entries carry `id`, `number`, `status`, `cancel_reason`, `updated_at` and
  the version's cancel time (`canceled_at` in 2022-01, `cancelled_at` after).
- Webhooks (`subscriptions check|ensure`; backstop-research.md section 2): `GET .../webhooks`
  lists the store's subscriptions (`topic` and `address` filters; 2022-01 `limit`/`page` answering
  `{webhooks}`, 2026-01 `page_size`/`cursor` answering `{webhooks, cursor, has_more}`); `POST
  .../webhooks` takes `{address, topic}` (2022-01) or `{"webhook": {...}}` (2026-01), both
  required (400 otherwise), and answers `{"webhook": {id, address, topic, format, created_at,
  updated_at}}`. A second identical subscription is created too (undocumented: the worst case).
- Above 2 requests per second per store a bare 429 (leaky bucket, no body or header documented),
  counted in `too_fast`.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from aiohttp import web

from bridge.backstop.shoplazza_pages import CURSOR_FROM
from bridge.demo.fake_platform import FakePlatform
from contracts.timestamps import utc_z
from handlers.base import parse_timestamp

# Seconds: two requests per store within this are allowed, a third is 429. A client paced at
# 2/s sends its third call 1.0 s after its first: 0.8 leaves 200 ms for the first to arrive late
# (a busy event loop, a loaded machine) where 0.95 left 50 ms; a burst, or pacing faster than
# 2.5/s, still draws 429s.
RATE_WINDOW = 0.8
RATE_LIMIT = 2

RecancelStatus = Literal[400, 406, 422]
ErrorShape = Literal["errors", "code"]
RECANCEL_STATUSES: tuple[RecancelStatus, ...] = (400, 406, 422)
ERROR_SHAPES: tuple[ErrorShape, ...] = ("errors", "code")


@dataclass
class FakeShoplazza(FakePlatform):
    """Orders by (shop, id) with their status; tokens by shop; every request recorded."""

    tokens: dict[str, str]
    orders: dict[tuple[str, str], str] = field(default_factory=dict)
    recancel_status: RecancelStatus = 400  # undocumented; see the module docstring
    error_shape: ErrorShape = "errors"
    cancels: list[tuple[str, str]] = field(default_factory=list)
    reads: list[tuple[str, str]] = field(default_factory=list)
    too_fast: int = 0
    updated: dict[tuple[str, str], datetime] = field(default_factory=dict)  # else first seen
    lists: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (shop, query)
    webhooks: dict[str, list[dict[str, str]]] = field(default_factory=dict)  # by shop
    _recent: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        FakePlatform.__init__(self)

    def _error(self, status: int, code: str, message: str) -> web.Response:
        if self.error_shape == "code":
            return web.json_response({"code": code, "message": message}, status=status)
        if status == 401:  # the seed's other shape, `{"error": "..."}`
            return web.json_response({"error": message}, status=status)
        return web.json_response({"errors": [message]}, status=status)

    def _refusal(self, request: web.Request, shop: str) -> web.Response | None:
        if request.headers.get("Access-Token") != self.tokens.get(shop):
            return self._error(401, "Unauthenticated", "Unauthorized")
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
            return self._error(404, "NotFound", "Unable to find resource")
        if status == "cancelled":
            return self._error(self.recancel_status, "InvalidParameter", "order status not allowed")
        if status == "finished":
            return self._error(406, "InvalidParameter", "order can not be cancelled")
        self.orders[(shop, order_id)] = "cancelled"
        await self.record(self.cancels, (shop, order_id))
        return web.json_response(self._order(shop, order_id))

    async def _read(self, request: web.Request) -> web.Response:
        shop, order_id = request.match_info["shop"], request.match_info["order_id"]
        if (refused := self._refusal(request, shop)) is not None:
            return refused
        self.reads.append((shop, order_id))
        if (shop, order_id) not in self.orders:
            return self._error(404, "NotFound", "Unable to find resource")
        return web.json_response({"order": self._order(shop, order_id)})

    def plant(self, shop: str, order_id: str, status: str, updated: datetime) -> None:
        """An order the store holds, last updated at `updated` (no webhook is sent for it)."""
        self.orders[(shop, order_id)] = status
        self.updated[(shop, order_id)] = updated

    def _listed(self, shop: str, order_id: str, version: str) -> dict[str, str]:
        updated = self.updated.setdefault((shop, order_id), datetime.now(UTC))
        stamp = utc_z(updated, "seconds")
        entry = {**self._order(shop, order_id), "number": f"#{order_id}", "updated_at": stamp}
        if entry["status"] == "cancelled":
            entry["cancel_reason"] = "customer changed mind"
            entry["canceled_at" if version < CURSOR_FROM else "cancelled_at"] = stamp
        return entry

    async def _list(self, request: web.Request) -> web.Response:
        """`GET /openapi/{version}/orders`: one page of the store's orders, filtered as asked."""
        shop, version = request.match_info["shop"], request.match_info["version"]
        if (refused := self._refusal(request, shop)) is not None:
            return refused
        query = dict(request.query)
        self.lists.append((shop, query))
        cursor_paged = version >= CURSOR_FROM
        size_key = "page_size" if cursor_paged else "limit"
        try:
            size = int(query.get(size_key, "10"))
            start = (
                int(query.get("cursor", "0"))
                if cursor_paged
                else (int(query.get("page", "1")) - 1) * size
            )
            since = parse_timestamp(query["updated_at_min"]) if "updated_at_min" in query else None
        except ValueError:
            return self._error(400, "InvalidParameter", "invalid parameter")
        if not 1 <= size <= 250 or start < 0:
            return self._error(400, "InvalidParameter", f"{size_key} must be between 1 and 250")
        status = query.get("status")
        ids = [
            order_id
            for (at, order_id), state in self.orders.items()
            if at == shop
            and (status is None or state == status)
            and (
                since is None or self.updated.setdefault((at, order_id), datetime.now(UTC)) >= since
            )
        ]
        chunk = [self._listed(shop, order_id, version) for order_id in ids[start : start + size]]
        more = start + size < len(ids)
        if cursor_paged:
            cursor = str(start + size) if more else ""
            return web.json_response({"orders": chunk, "cursor": cursor, "has_more": more or None})
        token = f"t{start + size}" if more else ""
        return web.json_response({"count": len(ids), "next_token": token, "orders": chunk})

    def subscribe(self, shop: str, address: str, topic: str = "orders/cancelled") -> None:
        """A subscription the store holds already."""
        stamp = utc_z(datetime.now(UTC), "seconds")
        self.webhooks.setdefault(shop, []).append(
            {
                "id": str(uuid.uuid4()),
                "address": address,
                "topic": topic,
                "format": "json",
                "created_at": stamp,
                "updated_at": stamp,
            }
        )

    async def _list_webhooks(self, request: web.Request) -> web.Response:
        shop, version = request.match_info["shop"], request.match_info["version"]
        if (refused := self._refusal(request, shop)) is not None:
            return refused
        query = request.query
        cursor_paged = version >= CURSOR_FROM
        try:
            size = int(query.get("page_size" if cursor_paged else "limit", "50"))
            start = (
                int(query.get("cursor", "0"))
                if cursor_paged
                else (int(query.get("page", "1")) - 1) * size
            )
        except ValueError:
            return self._error(400, "InvalidParameter", "invalid parameter")
        if not 1 <= size <= 250 or start < 0:
            return self._error(400, "InvalidParameter", "limit must be between 1 and 250")
        mine = [
            hook
            for hook in self.webhooks.get(shop, [])
            if query.get("topic", hook["topic"]) == hook["topic"]
            and query.get("address", hook["address"]) == hook["address"]
        ]
        chunk, more = mine[start : start + size], start + size < len(mine)
        if cursor_paged:
            cursor = str(start + size) if more else ""
            return web.json_response(
                {"webhooks": chunk, "cursor": cursor, "has_more": more or None}
            )
        return web.json_response({"webhooks": chunk})

    async def _create_webhook(self, request: web.Request) -> web.Response:
        shop, version = request.match_info["shop"], request.match_info["version"]
        if (refused := self._refusal(request, shop)) is not None:
            return refused
        try:
            document = await request.json()
        except ValueError:
            return self._error(400, "InvalidParameter", "body is not JSON")
        wanted = (
            document.get("webhook")
            if version >= CURSOR_FROM and isinstance(document, dict)
            else document
        )
        if not isinstance(wanted, dict) or not all(
            isinstance(wanted.get(key), str) and wanted[key] for key in ("address", "topic")
        ):
            return self._error(400, "InvalidParameter", "address and topic are required")
        self.subscribe(shop, wanted["address"], wanted["topic"])
        return web.json_response({"webhook": self.webhooks[shop][-1]})

    async def wait_cancels(self, count: int) -> None:
        """Return once `count` orders were cancelled."""
        await self.wait_until(lambda: len(self.cancels) >= count)

    def routes(self, app: web.Application) -> None:
        """Cancel, read and list orders, under each store's path prefix."""
        prefix = "/{shop}/openapi/{version}/orders/{order_id}"
        app.router.add_post(prefix + "/cancel", self._cancel)
        app.router.add_get(prefix, self._read)
        app.router.add_get("/{shop}/openapi/{version}/orders", self._list)
        app.router.add_get("/{shop}/openapi/{version}/webhooks", self._list_webhooks)
        app.router.add_post("/{shop}/openapi/{version}/webhooks", self._create_webhook)
