"""What we send CJ, and what the fake CJ accepts, judged by CJ's published GraphQL schemas.

The SDL is `contracts/schemas/cj-tracking.graphql` and `cj-commissions.graphql` (transcribed from
CJ's live schemas; see their headers). The fake refuses what CJ's graphql-java endpoint refuses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
import orjson
import pytest
from graphql import GraphQLEnumType, build_client_schema, get_introspection_query
from multidict import CIMultiDict
from pydantic import SecretStr

from bridge.demo.fake_cj import TOKEN, FakeCJ, error_in_200
from bridge.graphql_schemas import Accepted, check_document, check_request, load_schema
from contracts.cj import CommissionRecord
from contracts.events import CancelReason, OrderCancelled, Source
from handlers import cj as handler
from handlers.base import Delivered, HttpCall

NOW = datetime(2025, 4, 9, 15, 0, tzinfo=UTC)
SECRET = SecretStr(TOKEN)
CFG = handler.CJCancelConfig(
    url="https://tracking.api.cj.com/graphql",
    enterprise_id="1234567",
    action_tracker_id=987654,
    open_ended_locking=True,
    order_id_from="order_id",
)
COMMISSIONS = handler.CJCommissions("https://commissions.api.cj.com/query", ("4567890",))
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def event(**changes: object) -> OrderCancelled:
    fields: dict[str, object] = {
        "source": Source.SHOPLAZZA,
        "shop": "demo.myshoplaza.com",
        "order_id": "633130-00000004",
        "order_number": "1001",
        "reason": CancelReason.INVENTORY,
        "source_reason": "Out of stock",
        "cancelled_at": datetime(2025, 4, 9, 14, 30, tzinfo=UTC),
        "received_at": datetime(2025, 4, 9, 14, 30, 2, tzinfo=UTC),
        "delivery_id": "d-1",
        **changes,
    }
    return OrderCancelled.create(**fields)  # type: ignore[arg-type]


def document(call: HttpCall | object) -> dict[str, Any]:
    assert isinstance(call, HttpCall), call
    found: dict[str, Any] = orjson.loads(call.body)
    return found


def order(**changes: object) -> dict[str, object]:
    """One `OrderCancelRequest` as `cancel_request` builds it, with `changes` (None: left out)."""
    built = handler.cancel_request(event(), CFG, NOW)
    assert isinstance(built, dict)
    merged = {**built, **changes}
    return {key: value for key, value in merged.items() if value is not None}


def mutation(*orders: dict[str, object]) -> dict[str, object]:
    return {"query": handler.MUTATION, "variables": {"orders": list(orders)}}


# --- our documents against the published schemas -----------------------------------------------


@pytest.mark.parametrize(
    ("changes", "cfg"),
    [
        ({}, CFG),
        *(({"reason": reason}, CFG) for reason in CancelReason),
        ({}, dataclasses.replace(CFG, open_ended_locking=False)),
        ({}, dataclasses.replace(CFG, order_id_from="order_number")),
        ({"cancelled_at": NOW + timedelta(days=1)}, CFG),  # clamped into the past
        ({"cancelled_at": datetime(2025, 4, 9, 14, 30, 1, 250_000, tzinfo=UTC)}, CFG),
    ],
)
def test_every_cancel_we_build_follows_the_tracking_schema(
    changes: dict[str, object], cfg: handler.CJCancelConfig
) -> None:
    sent = document(handler.build_cancel(event(**changes), cfg, SECRET, NOW))
    assert isinstance(check_request(load_schema("cj-tracking"), sent), Accepted)


def test_our_default_reasons_are_values_of_the_published_enum() -> None:
    """The live schema's CorrectionReason (not the parameter table's RETURNED, FRAUD, ...)."""
    enum = load_schema("cj-tracking").type_map["CorrectionReason"]
    assert isinstance(enum, GraphQLEnumType)
    assert set(handler.DEFAULT_REASONS.values()) <= set(enum.values)


@pytest.mark.parametrize("after", [None, "7000123"])
def test_the_commission_query_follows_the_commissions_schema(after: str | None) -> None:
    since, before = NOW - timedelta(hours=24), NOW
    sent = document(handler.commissions_call(COMMISSIONS, SECRET, since, before, after))
    assert isinstance(check_request(load_schema("cj-commissions"), sent), Accepted)


def test_the_docs_example_mutation_follows_the_tracking_schema() -> None:
    """CJ's own example: literals, one object where the list is declared, an integer id."""
    assert check_document(load_schema("cj-tracking"), DOCS_EXAMPLE) is None


DOCS_EXAMPLE = (
    "mutation cancelOrder { cancelOrders(cancelledOrders: { enterpriseId: 1113122,"
    ' actionTrackerId: 1, orderId: "myorderId", updateTime: "2020-10-10T01:01:01.0-07:00",'
    " correctionReason: InvalidCreditCard, status: Declined })"
    " { orders { submissionId status } errors { message, fields } } }"
)


# --- the strict fake -----------------------------------------------------------------------------


@pytest.fixture
async def cj() -> AsyncIterator[FakeCJ]:
    """The fake CJ without conftest's teardown check: these tests send refused requests."""
    fake = FakeCJ()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def post(
    http: aiohttp.ClientSession,
    url: str,
    body: object,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    async with http.post(url, data=raw, headers=BEARER if headers is None else headers) as answer:
        return answer.status, orjson.loads(await answer.read())


async def test_what_our_code_sends_is_accepted_and_delivered(
    cj: FakeCJ, http: aiohttp.ClientSession
) -> None:
    call = cj_build(cj.url)
    status, body = await post(http, cj.url, document(call), dict(call.headers))
    outcome = cj_interpret(status, orjson.dumps(body))
    assert isinstance(outcome, Delivered)
    assert (cj.refused, [c.order["orderId"] for c in cj.calls]) == ([], ["633130-00000004"])


def cj_build(url: str) -> HttpCall:
    call = handler.build_cancel(event(), dataclasses.replace(CFG, url=url), SECRET, NOW)
    assert isinstance(call, HttpCall)
    return call


def cj_interpret(status: int, body: bytes) -> object:
    return handler.interpret(status, CIMultiDict(), body, CFG, NOW)


async def test_our_commission_query_reads_the_fakes_records(
    cj: FakeCJ, http: aiohttp.ClientSession
) -> None:
    cj.add_sale("1001", NOW - timedelta(hours=1))
    call = handler.commissions_call(
        handler.CJCommissions(cj.commissions_url, ("4567890",)),
        SECRET,
        NOW - timedelta(days=1),
        NOW,
    )
    status, body = await post(http, cj.commissions_url, document(call))
    page = handler.read_commissions(status, CIMultiDict(), orjson.dumps(body), NOW)
    assert isinstance(page, handler.CommissionsPage)
    assert [record.orderId for record in page.records] == ["1001"]
    assert cj.refused == []


async def read_all(cj: FakeCJ, http: aiohttp.ClientSession) -> list[CommissionRecord]:
    """Every record the fake holds for the last day, through our query and our reader."""
    call = handler.commissions_call(
        handler.CJCommissions(cj.commissions_url, ("4567890",)),
        SECRET,
        NOW - timedelta(days=1),
        datetime.now(UTC) + timedelta(minutes=1),
    )
    status, body = await post(http, cj.commissions_url, document(call))
    page = handler.read_commissions(status, CIMultiDict(), orjson.dumps(body), NOW)
    assert isinstance(page, handler.CommissionsPage)
    assert page.after is None
    return list(page.records)


@pytest.mark.parametrize(("open_ended", "validation"), [(True, "DECLINED"), (False, "AUTOMATED")])
async def test_the_fakes_cancellation_records_carry_cjs_amounts(
    cj: FakeCJ,
    http: aiohttp.ClientSession,
    open_ended: bool,  # noqa: FBT001 - a table column
    validation: str,
) -> None:
    """Sale, then a reversal of it and a zeroed cancellation: a decline on either tracker."""
    cfg = dataclasses.replace(CFG, url=cj.url, open_ended_locking=open_ended)
    cj.add_sale("633130-00000004", NOW - timedelta(hours=1), amount="80.00")
    call = handler.build_cancel(event(), cfg, SECRET, NOW)
    assert isinstance(call, HttpCall)
    assert ("status" in document(call)["variables"]["orders"][0]) is open_ended
    status, _ = await post(http, cj.url, document(call), dict(call.headers))
    assert status == 200
    sale, reversal, cancellation = await read_all(cj, http)
    assert [r.saleAmountAdvCurrency for r in (sale, reversal, cancellation)] == [
        Decimal("80.00"),
        Decimal("-80.00"),
        Decimal("0.00"),
    ]
    assert reversal.pubCommissionAmountPubCurrency == -sale.pubCommissionAmountPubCurrency  # type: ignore[operator]
    assert (reversal.original, cancellation.original) == (False, False)
    assert cancellation.validationStatus == validation
    assert reversal.validationStatus != "DECLINED"
    assert [handler.is_decline(r) for r in (sale, reversal, cancellation)] == [False, False, True]
    assert cj.refused == []


async def test_a_planted_restatement_is_no_decline(cj: FakeCJ, http: aiohttp.ClientSession) -> None:
    cj.add_sale("1002", NOW - timedelta(hours=2))
    cj.plant_restatement("1002", "60.00", NOW - timedelta(hours=1))
    sale, reversal, restated = await read_all(cj, http)
    assert [r.saleAmountAdvCurrency for r in (sale, reversal, restated)] == [
        Decimal("100.00"),
        Decimal("-100.00"),
        Decimal("60.00"),
    ]
    assert {r.correctionReason for r in (reversal, restated)} == {"RETURNED_MERCHANDISE"}
    assert handler.declined_orders([sale, reversal, restated]) == frozenset()


VALIDATION_ERRORS = [
    pytest.param(
        {"query": handler.MUTATION.replace("orderId status", "orderId status declined")},
        "Cannot query field 'declined' on type 'OrderCancellation'.",
        id="unknown-field",
    ),
    pytest.param(
        mutation(order(actionTrackerId="12")),
        "Int cannot represent non-integer value: '12'",
        id="tracker-id-as-string",
    ),
    pytest.param(
        mutation(order(correctionReason="RETURNED")),
        "Value 'RETURNED' does not exist in 'CorrectionReason' enum.",
        id="reason-from-the-parameter-table",
    ),
    pytest.param(
        mutation(order(updateTime=None)),
        "to include required field 'updateTime'",
        id="missing-update-time",
    ),
    pytest.param(
        mutation(order(amount="10.00")),
        "not to include unknown field 'amount'",
        id="unknown-input-field",
    ),
]


@pytest.mark.parametrize(("body", "message"), VALIDATION_ERRORS)
async def test_the_fake_refuses_what_the_schema_does_not_publish(
    cj: FakeCJ, http: aiohttp.ClientSession, body: dict[str, object], message: str
) -> None:
    """Refused as graphql-java does (errors with a classification, data null, HTTP 200)."""
    if "variables" not in body:
        body = {**body, "variables": {"orders": [order()]}}
    status, answer = await post(http, cj.url, body)
    assert status == 200
    assert answer["data"] is None
    [error] = answer["errors"]
    assert message in error["message"]
    assert error["extensions"] == {"classification": "ValidationError"}
    assert cj.calls == []
    [refused] = cj.refused
    assert (refused.path, refused.body, refused.refusal.kind) == (
        "/graphql",
        body,
        "ValidationError",
    )


async def test_a_refusal_is_read_as_a_final_graphql_error(
    cj: FakeCJ, http: aiohttp.ClientSession
) -> None:
    status, answer = await post(http, cj.url, mutation(order(correctionReason="RETURNED")))
    outcome = cj_interpret(status, orjson.dumps(answer))
    assert repr(outcome).startswith("Rejected(reason=\"cj graphql: Variable '$orders'")


async def test_the_validation_status_is_a_knob() -> None:
    """PLATFORMS.md: CJ answered a bad enum with HTTP 400 as well as 200."""
    fake = FakeCJ(invalid_status=400)
    await fake.start()
    try:
        async with aiohttp.ClientSession() as http:
            status, answer = await post(http, fake.url, mutation(order(correctionReason="FRAUD")))
    finally:
        await fake.stop()
    assert (status, answer["data"], len(fake.refused)) == (400, None, 1)


@pytest.mark.parametrize(
    ("body", "status", "kind"),
    [
        (b"not json", 400, "BadRequest"),
        ([{"query": "{ getBuildNumber }"}], 400, "BadRequest"),
        ({"variables": {}}, 400, "BadRequest"),
        ({"query": "{ getBuildNumber }", "variables": []}, 400, "BadRequest"),
        ({"query": "{ getBuildNumber }", "variables": ""}, 400, "BadRequest"),
        ({"query": "mutation { cancelOrders("}, 200, "InvalidSyntax"),
    ],
)
async def test_a_body_that_is_no_graphql_request_is_refused(
    cj: FakeCJ, http: aiohttp.ClientSession, body: object, status: int, kind: str
) -> None:
    answered, answer = await post(http, cj.url, body)
    assert answered == status
    assert [error["extensions"]["classification"] for error in answer["errors"]] == [kind]
    assert [refused.refusal.kind for refused in cj.refused] == [kind]


async def test_several_orders_in_one_call_are_each_answered(
    cj: FakeCJ, http: aiohttp.ClientSession
) -> None:
    cj.script["b"] = [error_in_200("Order b is locked")]
    status, answer = await post(
        http, cj.url, mutation(order(orderId="a"), order(orderId="b"), order(orderId="c"))
    )
    assert status == 200
    result = answer["data"]["cancelOrders"]
    assert [entry["orderId"] for entry in result["orders"]] == ["a", "c"]
    assert all(entry["submissionId"] for entry in result["orders"])
    assert result["errors"] == [{"message": "Order b is locked", "fields": ["orderId"]}]
    assert [call.order["orderId"] for call in cj.calls] == ["a", "b", "c"]
    assert set(cj.accepted) == {"a", "c"}
    assert sorted(record["orderId"] for record in cj.records) == ["a", "a", "c", "c"]


async def test_the_docs_example_is_answered_by_the_fake(
    cj: FakeCJ, http: aiohttp.ClientSession
) -> None:
    """Inline literals are judged and read like variables."""
    status, answer = await post(http, cj.url, {"query": DOCS_EXAMPLE})
    assert (status, answer["data"]["cancelOrders"]["orders"][0]["status"]) == (200, "Declined")
    assert cj.calls[0].order == {
        "enterpriseId": "1113122",
        "actionTrackerId": 1,
        "orderId": "myorderId",
        "updateTime": "2020-10-10T01:01:01.0-07:00",
        "correctionReason": "InvalidCreditCard",
        "status": "Declined",
    }


@pytest.mark.parametrize("path", ["url", "commissions_url"])
async def test_introspection_answers_without_credentials(
    cj: FakeCJ, http: aiohttp.ClientSession, path: str
) -> None:
    """As CJ's endpoints do; the schema served is the one the fake judges by."""
    url = getattr(cj, path)
    status, answer = await post(http, url, {"query": get_introspection_query()}, headers={})
    assert status == 200
    served = build_client_schema(answer["data"])
    root = served.mutation_type if path == "url" else served.query_type
    assert root is not None
    assert set(root.fields) == ({"cancelOrders"} if path == "url" else {"advertiserCommissions"})
    assert cj.refused == []


async def test_our_documents_validate_against_the_introspected_schema(
    cj: FakeCJ, http: aiohttp.ClientSession
) -> None:
    """What `check-config --online` does against CJ, against the fake."""
    _, tracking = await post(http, cj.url, {"query": get_introspection_query()}, headers={})
    _, commissions = await post(
        http, cj.commissions_url, {"query": get_introspection_query()}, headers={}
    )
    cancel = document(cj_build(cj.url))
    query = document(
        handler.commissions_call(COMMISSIONS, SECRET, NOW - timedelta(days=1), NOW, "7000123")
    )
    for answer, sent in ((tracking, cancel), (commissions, query)):
        served = build_client_schema(answer["data"])
        assert check_document(served, sent["query"], sent["variables"]) is None


async def test_anything_but_introspection_needs_the_token(
    cj: FakeCJ, http: aiohttp.ClientSession
) -> None:
    for body in (mutation(order()), {"query": "{ getBuildNumber }"}):
        status, _ = await post(http, cj.url, body, headers={})
        assert status == 401
    assert (cj.calls, cj.refused) == ([], [])


async def test_graphqltest_validates_and_changes_nothing(
    cj: FakeCJ, http: aiohttp.ClientSession
) -> None:
    """CJ's test endpoint: validated as production, answered as success, nothing posted."""
    status, answer = await post(http, cj.test_url, mutation(order(orderId="a"), order(orderId="b")))
    assert status == 200
    entries = answer["data"]["cancelOrders"]["orders"]
    assert [(entry["orderId"], entry["status"]) for entry in entries] == [
        ("a", "Declined"),
        ("b", "Declined"),
    ]
    assert (cj.calls, cj.records, cj.accepted, cj.refused) == ([], [], {}, [])

    status, answer = await post(http, cj.test_url, mutation(order(actionTrackerId=-1)))
    assert (status, answer["data"]) == (200, None)
    assert [refused.path for refused in cj.refused] == ["/graphqltest"]
    assert cj.calls == []


async def test_the_commission_query_is_judged_too(cj: FakeCJ, http: aiohttp.ClientSession) -> None:
    call = handler.commissions_call(COMMISSIONS, SECRET, NOW - timedelta(days=1), NOW)
    sent = document(call)
    wrong = {**sent, "variables": {**sent["variables"], "advertisers": [4567890]}}
    status, answer = await post(http, cj.commissions_url, wrong)
    assert (status, answer["data"]) == (200, None)
    assert "String cannot represent a non string value: 4567890" in answer["errors"][0]["message"]
    assert [refused.path for refused in cj.refused] == ["/query"]
    assert cj.queries == []
