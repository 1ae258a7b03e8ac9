"""A fake CJ (tests, demo, benchmarks): `/graphql` answers like CJ's tracking API documents.

`/query` is its Commission Detail API (`advertiserCommissions`): every `cancelOrders` it accepts
leaves the two records CJ's validation would (a reversal and a decline of the order), unless a
silent failure was planted for the order (`plant_silent_failure`): accepted, nothing recorded, as
when CJ's later validation refuses a cancellation without telling anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

TOKEN = "fake-cj-token-5e1"  # noqa: S105 - the fake's own, public by design
ADVERTISER_ID = "4567890"  # the fake advertiser's company id (CID), not its enterprise id
# cancelOrders' CorrectionReason (tracking API) -> the Commission Detail API's CorrectionReason.
COMMISSION_REASONS = {
    "InvalidCreditCard": "INVALID_CREDIT_CARD",
    "ReturnedMerchandise": "RETURNED_MERCHANDISE",
    "DuplicateOrder": "DUPLICATED_ORDER",
    "CannotShipSoldOut": "CANT_SHIP_OR_SOLD_OUT",
    "UnqualifiedLead": "UNQUALIFIED_LEAD",
    "BadDebt": "BAD_DEBT",
    "Bankruptcy": "BANKRUPTCY",
    "Compliance": "COMPLIANCE",
    "BookingCanceled": "BOOKING_CANCELED",
    "Other": "OTHER_REASON",
}


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
        # Commission Detail: the records, planted silent failures (order -> how many accepted
        # cancels record nothing), page size, scripted answers (first used first) and the
        # variables of every query received.
        self.commissions_url = ""
        self.records: list[dict[str, Any]] = []
        self.silent: Counter[str] = Counter()
        self.page_size = 100
        self.commission_script: list[Reply] = []
        self.queries: list[dict[str, Any]] = []
        self._last_commission_id = 7_000_000

    def plant_silent_failure(self, order_id: str, times: int = 1) -> None:
        """The next `times` accepted cancels of `order_id` leave no commission records."""
        self.silent[order_id] += times

    def add_sale(self, order_id: str, posted: datetime | None = None) -> dict[str, Any]:
        """Record the original sale of `order_id` (what CJ holds before any cancellation)."""
        return self._record(order_id, posted, original=True)

    def _record(
        self,
        order_id: str,
        posted: datetime | None,
        *,
        original: bool,
        reason: str | None = None,
        validation: str | None = None,
    ) -> dict[str, Any]:
        self._last_commission_id += 1
        record: dict[str, Any] = {
            "commissionId": str(self._last_commission_id),
            "orderId": order_id,
            "advertiserId": ADVERTISER_ID,
            "actionStatus": "new",
            "actionType": "sim_sale",
            "correctionReason": reason,
            "original": original,
            "originalActionId": f"action-{order_id}",
            "validationStatus": validation,
            "postingDate": (posted or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        }
        self.records.append(record)
        return record

    def _record_decline(self, order: dict[str, Any]) -> None:
        """What CJ's validation leaves for an accepted cancellation: a reversal and a decline."""
        order_id = str(order["orderId"])
        if self.silent[order_id] > 0:
            self.silent[order_id] -= 1
            return
        reason = COMMISSION_REASONS.get(str(order.get("correctionReason")), "OTHER_REASON")
        declined = "DECLINED" if order.get("status") == "Declined" else "AUTOMATED"
        self._record(order_id, None, original=False, reason=reason)
        self._record(order_id, None, original=False, reason=reason, validation=declined)

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
            if _accepts(reply):
                self._record_decline(order)
            self._changed.notify_all()
        if reply.delay:  # the scripted slowness itself, cut short when the fake stops
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(reply.delay):
                    await self._stopping.wait()
        body = reply.body if isinstance(reply.body, bytes) else orjson.dumps(reply.body)
        return web.Response(
            status=reply.status, body=body, headers=reply.headers, content_type="application/json"
        )

    async def _query(self, request: web.Request) -> web.StreamResponse:
        """`advertiserCommissions`: records posted in the window, paged by commission id."""
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"message": "Unauthorized"}, status=401)
        try:
            variables = (await request.json())["variables"]
            wanted = set(variables["advertisers"])
            since = datetime.fromisoformat(variables["since"])
            before = datetime.fromisoformat(variables["before"])
            after = int(variables.get("after") or 0)
        except (ValueError, KeyError, TypeError) as exc:
            problem = f"bad query variables: {type(exc).__name__}"
            return web.json_response({"errors": [{"message": problem}]}, status=400)
        self.queries.append(variables)
        if self.commission_script:
            reply = self.commission_script.pop(0)
            body = reply.body if isinstance(reply.body, bytes) else orjson.dumps(reply.body)
            return web.Response(
                status=reply.status,
                body=body,
                headers=reply.headers,
                content_type="application/json",
            )
        matching = sorted(
            (
                record
                for record in self.records
                if record["advertiserId"] in wanted
                and since <= datetime.fromisoformat(record["postingDate"]) < before
                and int(record["commissionId"]) > after
            ),
            key=lambda record: int(record["commissionId"]),
        )
        page = matching[: self.page_size]
        result = {
            "count": len(page),
            "limit": self.page_size,
            "maxCommissionId": page[-1]["commissionId"] if page else None,
            "payloadComplete": len(matching) <= self.page_size,
            "records": page,
        }
        return web.json_response({"data": {"advertiserCommissions": result}})

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
        app.router.add_post("/query", self._query)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/graphql"
        self.commissions_url = f"http://127.0.0.1:{port}/query"
        return self.url

    async def stop(self) -> None:
        """Stop serving (scripted delays end at once)."""
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()


def _accepts(reply: Reply) -> bool:
    """Whether `reply` is CJ's success answer (the cancellation accepted for validation)."""
    if reply.status != 200 or not isinstance(reply.body, dict):  # noqa: PLR2004 - HTTP OK
        return False
    result = (reply.body.get("data") or {}).get("cancelOrders") or {}
    return bool(result.get("orders")) and not result.get("errors")
