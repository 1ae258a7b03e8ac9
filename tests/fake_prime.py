"""A fake Buy with Prime API: `POST /token` and the GraphQL `order` query and `cancelOrder`.

Tokens: client credentials by HTTP Basic, 900 s (`expire_all` ends them: the next call gets
401). GraphQL requires the bearer token, `x-api-version` and `x-api-target-id`. Orders are kept
per id with their package state and aliases; `cancelOrder` answers a PENDING cancellation while
the package is PENDING, `CancellationIneligible` otherwise (as the seed shows), and
`ResourceNotFoundError` for an unknown order. `unavailable` makes the next N calls 503.
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.bridges import serve


@dataclass
class PrimeOrder:
    """One order as the fake knows it."""

    state: str = "PENDING"  # package summary state
    aliases: dict[str, str] = field(default_factory=dict)  # alias type -> id
    cancellations: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None  # package reason once cancelled


def _error(kind: str, code: str, message: str) -> dict[str, Any]:
    return {
        "errors": [
            {
                "message": message,
                "path": ["cancelOrder"],
                "extensions": {
                    "classification": {
                        "type": kind,
                        "code": code,
                        "details": {"message": message},
                        "errorType": "ValidationException",
                        "errorCode": 400,
                    }
                },
            }
        ],
        "data": {"cancelOrder": None},
    }


@dataclass
class FakePrime:
    """The fake API; `orders` by order id, every token request and mutation recorded."""

    client_id: str
    client_secret: str
    orders: dict[str, PrimeOrder] = field(default_factory=dict)
    token_requests: int = 0
    cancels: list[dict[str, Any]] = field(default_factory=list)
    unavailable: int = 0
    url: str = ""
    _tokens: set[str] = field(default_factory=set)
    _runner: web.AppRunner | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    def expire_all(self) -> None:
        """Every token issued so far stops working."""
        self._tokens.clear()

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        basic = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {basic}":
            return web.json_response({"error": "invalid_client"}, status=401)
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        self.token_requests += 1
        token = f"prime-token-{uuid.uuid4().hex[:8]}"
        self._tokens.add(token)
        return web.json_response({"access_token": token, "token_type": "bearer", "expires_in": 900})

    def _order_json(self, order_id: str, order: PrimeOrder) -> dict[str, Any]:
        return {
            "id": order_id,
            "aliases": [{"aliasId": v, "aliasType": k} for k, v in order.aliases.items()],
            "packageInformation": {
                "summary": {"state": order.state},
                "details": [{"id": "pkg-1", "state": order.state, "reason": order.reason}],
            },
            "cancellations": {"details": order.cancellations},
        }

    def _find(self, identifier: dict[str, Any]) -> tuple[str, PrimeOrder] | None:
        if "orderId" in identifier:
            order = self.orders.get(identifier["orderId"])
            return (identifier["orderId"], order) if order else None
        alias = identifier.get("alias") or {}
        for order_id, order in self.orders.items():
            if order.aliases.get(str(alias.get("aliasType"))) == alias.get("aliasId"):
                return order_id, order
        return None

    async def _graphql(self, request: web.Request) -> web.Response:  # noqa: PLR0911 - one per case
        if self.unavailable > 0:
            self.unavailable -= 1
            return web.Response(status=503, text="Service Unavailable")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self._tokens:
            return web.json_response({"message": "Unauthorized"}, status=401)
        if request.headers.get("x-api-version") != "2024-11-01" or not request.headers.get(
            "x-api-target-id"
        ):
            return web.json_response(_error("ValidationError", "MissingHeader", "headers"))
        document = await request.json()
        variables = document["variables"]
        found = self._find(variables["order"])
        if document["query"].startswith("query"):
            if found is None:
                return web.json_response(
                    {
                        **_error("ResourceNotFoundError", "", "order not found"),
                        "data": {"order": None},
                    }
                )
            return web.json_response({"data": {"order": self._order_json(*found)}})
        if found is None:
            return web.json_response(_error("ResourceNotFoundError", "", "order not found"))
        order_id, order = found
        if order.state != "PENDING":
            return web.json_response(
                _error(
                    "ValidationError",
                    "CancellationIneligible",
                    "The order cannot be cancelled as fulfillment is in progress.",
                )
            )
        cancellation = {
            "id": uuid.uuid4().hex,
            "state": "PENDING",
            "reason": variables["input"]["reason"],
            "requestedBy": "MERCHANT",
            "createdAt": "2025-04-09T12:00:00Z",
            "aliases": variables["input"]["aliases"],
        }
        order.cancellations.append(cancellation)
        order.state, order.reason = "CANCELLED", "CUSTOMER_REQUESTED"
        async with self._changed:
            self.cancels.append({**variables, "order_id": order_id})
            self._changed.notify_all()
        return web.json_response({"data": {"cancelOrder": {"cancellation": cancellation}}})

    async def start(self) -> None:
        """Serve on an ephemeral loopback port."""
        app = web.Application()
        app.router.add_post("/token", self._token)
        app.router.add_post("/graphql", self._graphql)
        self._runner, self.url = await serve(app)

    async def stop(self) -> None:
        """Stop serving."""
        if self._runner is not None:
            await self._runner.cleanup()
