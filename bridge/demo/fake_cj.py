"""A fake CJ (tests, demo, benchmarks) that judges every request by CJ's published schemas.

`/graphql` is the tracking API (`cancelOrders`), `/graphqltest` its validate-only twin, `/query`
the Commission Detail API (`advertiserCommissions`). Each decodes the body and checks it against
the SDL transcribed from CJ (`contracts/schemas/cj-tracking.graphql`, `cj-commissions.graphql`)
before anything else: a field, argument, variable type or enum value CJ does not publish is
refused as CJ's graphql-java endpoint refuses it (HTTP 400 for a body that is no GraphQL
request; otherwise `errors` with a classification and `data: null`, in HTTP `invalid_status`,
200 by default as CJ's docs show) and recorded in `refused`. Introspection answers without
credentials, as CJ's endpoints do.

Every `cancelOrders` the fake accepts leaves the two records CJ's validation would (a reversal
of the order's current amounts, negated, and the cancellation with zero amounts, `validationStatus`
DECLINED when the request sent `status: Declined`, AUTOMATED otherwise), unless a silent failure
was planted for the order (`plant_silent_failure`): accepted, nothing recorded, as when CJ's
later validation refuses a cancellation without telling anyone. `add_sale` records the original
sale (a positive amount) and `plant_restatement` what a processed `restateOrders` leaves (a
reversal and the new, non-zero state): a correction that is no decline.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
from aiohttp import web
from graphql import GraphQLError, GraphQLResolveInfo, GraphQLSchema, OperationType, graphql_sync

from bridge.demo.fake_platform import ScriptedPlatform
from bridge.graphql_schemas import (
    Accepted,
    Refusal,
    check_request,
    is_introspection,
    load_schema,
    refusal_body,
    root_arguments,
)
from contracts.timestamps import utc_z

TOKEN = "fake-cj-token-5e1"  # noqa: S105 - the fake's own, public by design
ADVERTISER_ID = "4567890"  # the fake advertiser's company id (CID), not its enterprise id
BUILD_NUMBER = "fake-cj"  # the tracking schema's one query, `getBuildNumber`
TRACKING_SCHEMA = "cj-tracking"
COMMISSIONS_SCHEMA = "cj-commissions"
HTTP_OK = 200
HTTP_BAD_REQUEST = 400
# The Commission Detail filters the fake applies; CJ publishes more (the fake refuses those).
COMMISSION_FILTERS = frozenset(
    {"forAdvertisers", "sincePostingDate", "beforePostingDate", "sinceCommissionId"}
)
# A sale's amount unless told (also for orders the fake never recorded a sale of), and how the
# fake derives a record's commission and CJ fee from its sale amount (any rates would do).
DEFAULT_SALE = Decimal("100.00")
COMMISSION_RATE = Decimal("0.10")
FEE_RATE = Decimal("0.03")
CENT = Decimal("0.01")
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


def accepted(order_id: str, status: str | None = "Declined") -> Reply:
    """CJ's success answer, with a fresh submissionId (`status`: the one the request sent)."""
    return Reply(
        body={"data": {"cancelOrders": {"orders": [_entry(order_id, status)], "errors": None}}}
    )


def _entry(order_id: str, status: str | None) -> dict[str, Any]:
    """One accepted order in `cancelOrders.orders` (`OrderCancellation`)."""
    return {"submissionId": str(uuid.uuid4()), "orderId": order_id, "status": status}


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
    """One order of a `cancelOrders` request the fake received (a request of n orders is n)."""

    order: dict[str, Any]
    authorization: str
    at: float


@dataclass(frozen=True)
class Refused:
    """One request refused for not following CJ's published schema: where, what, and why."""

    path: str
    body: object  # the decoded JSON body; None when it was not JSON
    refusal: Refusal


class FakeCJ(ScriptedPlatform[Reply]):
    """Records every cancel request; answers from `script[order_id]`, else accepts.

    A request outside CJ's published schema is refused before any of that (`refused`). `url` is
    the tracking API's `/graphql` once started.
    """

    def __init__(
        self,
        *,
        remember: bool = False,
        on_call: Callable[[Call], None] | None = None,
        invalid_status: int = HTTP_OK,
    ) -> None:
        super().__init__()
        self.calls: list[Call] = []
        # With `remember`, an order accepted once is answered "already declined" afterwards,
        # as a real tracker would refuse a second cancellation.
        self.remember = remember
        # `on_call` sees each call as it is recorded, before it is answered (benchmarks
        # timestamp arrivals with it).
        self.on_call = on_call
        self.accepted: Counter[str] = Counter()
        self.test_url = ""  # `/graphqltest`: validates, changes nothing
        # Requests outside CJ's published schemas, and the HTTP status of a validation error
        # (CJ's docs show GraphQL errors in HTTP 200; PLATFORMS.md saw a bad enum get 400 too).
        self.refused: list[Refused] = []
        self.invalid_status = invalid_status
        self._tracking = load_schema(TRACKING_SCHEMA)
        self._commissions = load_schema(COMMISSIONS_SCHEMA)
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
        # Each order's sale amount at CJ now (what a reversal negates; zero once cancelled).
        self.amounts: dict[str, Decimal] = {}

    def plant_silent_failure(self, order_id: str, times: int = 1) -> None:
        """The next `times` accepted cancels of `order_id` leave no commission records."""
        self.silent[order_id] += times

    def add_sale(
        self,
        order_id: str,
        posted: datetime | None = None,
        amount: Decimal | str = DEFAULT_SALE,
        validation: str | None = None,
    ) -> dict[str, Any]:
        """Record the original sale of `order_id` (what CJ holds before any cancellation)."""
        sale = Decimal(amount)
        self.amounts[order_id] = sale
        return self._record(order_id, posted, sale, original=True, validation=validation)

    def plant_restatement(
        self,
        order_id: str,
        amount: Decimal | str,
        posted: datetime | None = None,
        *,
        reason: str = "RETURNED_MERCHANDISE",
        validation: str | None = "AUTOMATED",
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """What a processed `restateOrders` of `order_id` to `amount` leaves: two records.

        A full reversal of the prior state (its amounts negated) and the new state, both
        non-original with `reason` (docs.cj.com/docs/restatements). `validation`: AUTOMATED on
        trackers without open-ended locking; ACCEPTED or PENDING on open-ended ones.
        """
        restated = Decimal(amount)
        prior = self.amounts.get(order_id, DEFAULT_SALE)
        self.amounts[order_id] = restated
        return (
            self._record(order_id, posted, -prior, reason=reason, validation=validation),
            self._record(order_id, posted, restated, reason=reason, validation=validation),
        )

    def _record(  # noqa: PLR0913 - one record's fields
        self,
        order_id: str,
        posted: datetime | None,
        sale: Decimal,
        *,
        original: bool = False,
        reason: str | None = None,
        validation: str | None = None,
    ) -> dict[str, Any]:
        self._last_commission_id += 1
        commission = (sale * COMMISSION_RATE).quantize(CENT)
        fee = (sale * FEE_RATE).quantize(CENT)
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
            "postingDate": utc_z(posted or datetime.now(UTC)),
            # DecimalNumber: strings, as CJ renders them.
            "saleAmountAdvCurrency": str(sale.quantize(CENT)),
            "advCommissionAmountAdvCurrency": str(commission + fee),
            "pubCommissionAmountPubCurrency": str(commission),
            "cjFeeAdvCurrency": str(fee),
        }
        self.records.append(record)
        return record

    def _record_decline(self, order: dict[str, Any]) -> None:
        """What CJ's validation leaves for an accepted cancellation: a reversal, a cancellation.

        The reversal negates the order's amounts, the cancellation zeroes them
        (docs.cj.com/docs/cancellations). `status: Declined` (open-ended locking) makes the
        cancellation DECLINED; without it every record is AUTOMATED ("not open ended locking").
        """
        order_id = str(order["orderId"])
        if self.silent[order_id] > 0:
            self.silent[order_id] -= 1
            return
        reason = COMMISSION_REASONS.get(str(order.get("correctionReason")), "OTHER_REASON")
        open_ended = order.get("status") == "Declined"
        prior = self.amounts.get(order_id, DEFAULT_SALE)
        self.amounts[order_id] = Decimal("0.00")
        reversal = None if open_ended else "AUTOMATED"  # an open-ended reversal's: not published
        self._record(order_id, None, -prior, reason=reason, validation=reversal)
        self._record(
            order_id,
            None,
            Decimal("0.00"),
            reason=reason,
            validation="DECLINED" if open_ended else "AUTOMATED",
        )

    async def _judge(
        self, request: web.Request, schema: GraphQLSchema
    ) -> tuple[Accepted, dict[str, Any]] | web.Response:
        """The body judged by `schema` first: accepted with the body, or the refusal answered."""
        try:
            body: object = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            body = None
        verdict = check_request(schema, body)
        if isinstance(verdict, Refusal):
            self.refused.append(Refused(request.path, body, verdict))
            status = HTTP_BAD_REQUEST if verdict.kind == "BadRequest" else self.invalid_status
            return _json(status, refusal_body(verdict))
        return verdict, body if isinstance(body, dict) else {}  # accepted: always an object

    @staticmethod
    def _authorized(request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {TOKEN}"

    @staticmethod
    def _execute(
        schema: GraphQLSchema, body: dict[str, Any], root: dict[str, Any] | None = None
    ) -> web.Response:
        """Run a valid document with graphql-core (introspection, queries): its answer, HTTP 200."""
        result = graphql_sync(
            schema,
            body["query"],
            root_value=root,
            variable_values=body.get("variables"),
            operation_name=body.get("operationName"),
        )
        return _json(HTTP_OK, dict(result.formatted))

    async def _tracking_request(
        self, request: web.Request
    ) -> tuple[Accepted, dict[str, Any]] | web.Response:
        """Judge, answer introspection (no token needed), check the token, answer queries.

        What is left is a valid `cancelOrders` mutation from an authorized caller.
        """
        judged = await self._judge(request, self._tracking)
        if isinstance(judged, web.Response):
            return judged
        verdict, body = judged
        if is_introspection(verdict):
            return self._execute(self._tracking, body)
        if not self._authorized(request):
            return web.json_response({"message": "Unauthorized"}, status=401)
        if verdict.operation.operation is not OperationType.MUTATION:
            return self._execute(self._tracking, body, {"getBuildNumber": BUILD_NUMBER})
        return judged

    def _orders(self, accepted: Accepted) -> list[dict[str, Any]]:
        """The `cancelledOrders` of the request, coerced (literals or variables alike)."""
        return [
            dict(order)
            for name, arguments in root_arguments(self._tracking, accepted)
            if name == "cancelOrders"
            for order in arguments["cancelledOrders"]
        ]

    async def _graphql(self, request: web.Request) -> web.StreamResponse:
        """`cancelOrders`: each order answered from its script, else accepted (or remembered)."""
        judged = await self._tracking_request(request)
        if isinstance(judged, web.Response):
            return judged
        orders = self._orders(judged[0])
        authorization = request.headers["Authorization"]
        at = asyncio.get_running_loop().time()
        async with self._changed:
            replies = [self._answer(Call(order, authorization, at)) for order in orders]
            self._changed.notify_all()
        reply = _combine(replies)
        await self.delay(reply.delay)  # the scripted slowness itself, cut short when it stops
        body = reply.body if isinstance(reply.body, bytes) else orjson.dumps(reply.body)
        return web.Response(
            status=reply.status, body=body, headers=reply.headers, content_type="application/json"
        )

    def _answer(self, call: Call) -> Reply:
        """Record one order's call and choose its reply; an accepted one leaves its records."""
        order_id = str(call.order["orderId"])
        self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)
        scripted = self.scripted(order_id)
        if scripted is not None:
            reply = scripted
        elif self.remember and self.accepted[order_id]:
            reply = error_in_200(f"Order {order_id} is already declined")
        else:
            reply = accepted(order_id, call.order.get("status"))
            self.accepted[order_id] += 1  # the decline happens on receipt
        if _accepts(reply):
            self._record_decline(call.order)
        return reply

    async def _graphqltest(self, request: web.Request) -> web.StreamResponse:
        """CJ's validate-only endpoint: judged as `/graphql`, answered as success, nothing kept."""
        judged = await self._tracking_request(request)
        if isinstance(judged, web.Response):
            return judged
        entries = [
            _entry(str(order["orderId"]), order.get("status")) for order in self._orders(judged[0])
        ]
        return _json(HTTP_OK, {"data": {"cancelOrders": {"orders": entries, "errors": None}}})

    async def _query(self, request: web.Request) -> web.StreamResponse:
        """`advertiserCommissions`: records posted in the window, paged by commission id."""
        judged = await self._judge(request, self._commissions)
        if isinstance(judged, web.Response):
            return judged
        verdict, body = judged
        if is_introspection(verdict):
            return self._execute(self._commissions, body)
        if not self._authorized(request):
            return web.json_response({"message": "Unauthorized"}, status=401)
        self.queries.append(dict(body.get("variables") or {}))
        if self.commission_script:
            reply = self.commission_script.pop(0)
            raw = reply.body if isinstance(reply.body, bytes) else orjson.dumps(reply.body)
            return web.Response(
                status=reply.status,
                body=raw,
                headers=reply.headers,
                content_type="application/json",
            )
        return self._execute(
            self._commissions, body, {"advertiserCommissions": self._advertiser_commissions}
        )

    def _advertiser_commissions(
        self,
        _info: GraphQLResolveInfo[None],
        **filters: Any,  # noqa: ANN401 - graphql-core passes the coerced arguments by name
    ) -> dict[str, Any]:
        """The page of records matching the filters, ordered by commission id."""
        if unsupported := sorted(
            name for name, value in filters.items() if value and name not in COMMISSION_FILTERS
        ):
            raise GraphQLError(f"FakeCJ does not filter by {', '.join(unsupported)}")
        wanted = set(filters["forAdvertisers"])
        since = _posting_date(filters.get("sincePostingDate"), datetime.min.replace(tzinfo=UTC))
        before = _posting_date(filters.get("beforePostingDate"), datetime.max.replace(tzinfo=UTC))
        try:
            after = int(filters.get("sinceCommissionId") or 0)
        except ValueError as exc:
            raise GraphQLError("sinceCommissionId is not a commission id") from exc
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
        return {
            "count": len(page),
            "limit": self.page_size,
            "maxCommissionId": page[-1]["commissionId"] if page else None,
            "payloadComplete": len(matching) <= self.page_size,
            "records": page,
        }

    def calls_for(self, order_id: str) -> list[Call]:
        """The calls that named `order_id`."""
        return [call for call in self.calls if call.order["orderId"] == order_id]

    async def wait_calls(self, count: int) -> None:
        """Return once `count` calls have arrived."""
        await self.wait_until(lambda: len(self.calls) >= count)

    async def wait_accepted(self, orders: int) -> None:
        """Return once `orders` distinct orders have been accepted."""
        await self.wait_until(lambda: len(self.accepted) >= orders)

    def routes(self, app: web.Application) -> None:
        """The tracking API, its validate-only twin, the Commission Detail API."""
        app.router.add_post("/graphql", self._graphql)
        app.router.add_post("/graphqltest", self._graphqltest)
        app.router.add_post("/query", self._query)

    def served(self) -> None:
        """`url` is the tracking API's endpoint; the other two beside it."""
        self.url = f"{self.base_url}/graphql"
        self.test_url = f"{self.base_url}/graphqltest"
        self.commissions_url = f"{self.base_url}/query"


def _json(status: int, body: object) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def _result(reply: Reply) -> dict[str, Any] | None:
    """`data.cancelOrders` of `reply`, when it is an HTTP 200 answer carrying one."""
    if reply.status != HTTP_OK or not isinstance(reply.body, dict) or reply.body.get("errors"):
        return None
    result = (reply.body.get("data") or {}).get("cancelOrders")
    return result if isinstance(result, dict) else None


def _accepts(reply: Reply) -> bool:
    """Whether `reply` is CJ's success answer (the cancellation accepted for validation)."""
    result = _result(reply) or {}
    return bool(result.get("orders")) and not result.get("errors")


def _combine(replies: list[Reply]) -> Reply:
    """One answer for a request's orders: their entries in one `cancelOrders` result.

    One order is answered by its own reply, whatever it is. Of several, a reply that is not a
    `cancelOrders` result (an HTTP error, raw bytes, top-level errors) answers the whole
    request; the orders whose own reply accepted them stay accepted, as when an answer is lost.
    """
    if len(replies) == 1:
        return replies[0]
    if not replies:  # an empty list is valid by the schema; CJ's answer to it is unpublished
        return Reply(body={"data": {"cancelOrders": {"orders": None, "errors": None}}})
    results = [_result(reply) for reply in replies]
    for reply, result in zip(replies, results, strict=True):
        if result is None:
            return reply
    orders = [entry for result in results if result for entry in result.get("orders") or ()]
    errors = [entry for result in results if result for entry in result.get("errors") or ()]
    headers = {key: value for reply in replies for key, value in reply.headers.items()}
    body = {"data": {"cancelOrders": {"orders": orders or None, "errors": errors or None}}}
    return Reply(body=body, headers=headers, delay=max(reply.delay for reply in replies))


def _posting_date(text: str | None, default: datetime) -> datetime:
    """A posting-date argument ("Datetime in UTC ISO 8601 format"), or `default` when absent."""
    if text is None:
        return default
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise GraphQLError(f"{text!r} is not a datetime in UTC ISO 8601 format") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
