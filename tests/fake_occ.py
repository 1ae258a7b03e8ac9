"""A fake Oracle Commerce Cloud admin API: login, cancel and order read (PLATFORMS.md section 3).

Login takes the application key as a bearer and the client-credentials grant and issues 300-second
tokens (`expire_all` ends them early: the next call gets 401). Cancelling an open order answers
`{"result": "success"}`; a `REMOVED` or shipped one 400 `200101`; an unknown one 400 `210105`; a
reason outside `reasons` 400 `200218`; no `x-ccsite` 400 `200126`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from tests.bridges import serve

CANCEL_REASONS = frozenset(
    {"changeOfMind", "cannotProcessOrder", "paymentNotReceived", "noLongerNeeded"}
)


def _error(code: str, message: str, status: int = 400) -> web.Response:
    return web.json_response(
        {"errorCode": code, "message": message, "status": str(status)}, status=status
    )


@dataclass
class FakeOCC:
    """Orders by (site, id) with their state; every cancel and login recorded."""

    app_key: str
    orders: dict[tuple[str, str], str] = field(default_factory=dict)
    cancels: list[tuple[str, str, str]] = field(default_factory=list)
    logins: int = 0
    url: str = ""
    _tokens: set[str] = field(default_factory=set)
    _runner: web.AppRunner | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def expire_all(self) -> None:
        """Every token issued so far stops working."""
        self._tokens.clear()

    async def _login(self, request: web.Request) -> web.Response:
        form = await request.post()
        if request.headers.get("Authorization") != f"Bearer {self.app_key}":
            return _error("100001", "invalid application key", 401)
        if form.get("grant_type") != "client_credentials":
            return _error("100002", "unsupported grant", 400)
        self.logins += 1
        token = f"occ-token-{self.logins}"
        self._tokens.add(token)
        return web.json_response({"access_token": token, "token_type": "bearer", "expires_in": 300})

    def _refusal(self, request: web.Request) -> web.Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self._tokens:
            return _error("100003", "token expired or invalid", 401)
        if not request.headers.get("x-ccsite"):
            return _error("200126", "x-ccsite header is required")
        return None

    async def _cancel(self, request: web.Request) -> web.Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        site = request.headers["x-ccsite"]
        document = await request.json()
        order_id, reason = str(document.get("orderId")), str(document.get("cancelReason"))
        state = self.orders.get((site, order_id))
        if state is None:
            return _error("210105", f"Order {order_id} not found")
        if reason not in CANCEL_REASONS:
            return _error("200218", f"Invalid cancel reason {reason}")
        if state in ("REMOVED", "SHIPPED"):
            return _error("200101", f"Order {order_id} cannot be cancelled")
        self.orders[(site, order_id)] = "REMOVED"
        async with self._changed:
            self.cancels.append((site, order_id, reason))
            self._changed.notify_all()
        return web.json_response({"result": "success"})

    async def _read(self, request: web.Request) -> web.Response:
        if (refused := self._refusal(request)) is not None:
            return refused
        site, order_id = request.headers["x-ccsite"], request.match_info["order_id"]
        state = self.orders.get((site, order_id))
        if state is None:
            return _error("210105", f"Order {order_id} not found", 404)
        return web.json_response({"id": order_id, "state": state, "siteId": site})

    async def start(self) -> None:
        """Serve on an ephemeral loopback port."""
        app = web.Application()
        app.router.add_post("/ccadmin/v1/login", self._login)
        app.router.add_post("/ccadmin/v1/orders/cancel", self._cancel)
        app.router.add_get("/ccadmin/v1/orders/{order_id}", self._read)
        self._runner, self.url = await serve(app)

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
