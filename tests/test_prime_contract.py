"""Every Buy with Prime request our code builds is valid for the API version it names.

Held to the published schemas in `contracts/schemas/prime-<version>.graphql` (2024-04-01 and
2024-11-01, transcribed from https://documents.buywithprime.amazon.com/bwp-api/docs/): GraphQL
refuses a whole document for one unknown field, so a field the docs do not list is an outage.
"""

from __future__ import annotations

from datetime import UTC, datetime

import aiohttp
import orjson
import pytest
from multidict import CIMultiDict
from pydantic import SecretStr

from bridge.graphql_schemas import Accepted, check_request, load_schema
from contracts.events import CancelReason, OrderCancelled, Source
from handlers.base import FollowUp, HttpCall, Lookup, Rejected, Unavailable
from handlers.prime import (
    PrimeSource,
    PrimeSourceSettings,
    PrimeTargetSettings,
    confirm_read,
    make_source,
    make_target,
    token_call,
)
from tests.fakes.prime import FakePrime, FakeRefusal, PrimeOrder

VERSIONS = ("2024-04-01", "2024-11-01")
NOW = datetime(2025, 4, 9, 12, 0, tzinfo=UTC)
SECRETS = {"client_id_env": SecretStr("cid"), "client_secret_env": SecretStr("csecret")}
API = {"client_id_env": "CID", "client_secret_env": "CSECRET"}
API_SECRETS = {"api.client_id_env": SecretStr("i"), "api.client_secret_env": SecretStr("s")}


def prime_source(username: str, **api: str) -> PrimeSource:
    """The source `[sources.prime]` makes with this user and these `api` keys."""
    section = {"secret_env": "PRIME_SECRET", "username": username, "api": {**API, **api}}
    return make_source(PrimeSourceSettings.model_validate(section), API_SECRETS)


EVENT = OrderCancelled.create(
    source=Source.SHOPLAZZA,
    shop="demo.myshoplaza.com",
    order_id="1001",
    order_number=None,
    reason=CancelReason.PAYMENT_DECLINED,
    source_reason=None,
    cancelled_at=NOW,
    received_at=NOW,
    delivery_id=None,
)
INELIGIBLE = orjson.dumps(
    {
        "errors": [
            {
                "message": "The order cannot be cancelled as fulfillment is in progress.",
                "extensions": {
                    "classification": {"type": "ValidationError", "code": "CancellationIneligible"}
                },
            }
        ],
        "data": {"cancelOrder": None},
    }
)
# The query string both Prime reads sent before 2026-12-04: `id` on CancellationDetails.
OLD_ORDER_QUERY = (
    "query Order($order: OrderIdentifierInput!) { order(orderIdentifier: $order) {"
    " id packageInformation { summary { state } }"
    " cancellations { details { id state } } } }"
)


def judged(call: HttpCall) -> Accepted:
    """The call as Prime's published schema for its `x-api-version` judges it."""
    schema = load_schema(f"prime-{call.headers['x-api-version']}")
    found = check_request(schema, orjson.loads(call.body))
    assert isinstance(found, Accepted), found
    return found


def target_calls(version: str, order_by: str) -> tuple[HttpCall, HttpCall]:
    """The cancelOrder call and the confirm-read it leads to."""
    settings = PrimeTargetSettings.model_validate(
        {"business_product_id": "bp-1", "api_version": version, "order_by": order_by}
    )
    adapter = make_target(settings, SECRETS).adapter
    cancel = adapter.build(EVENT, NOW, "322-KG36-AAAAA")
    assert isinstance(cancel, HttpCall), cancel
    follow = adapter.interpret(cancel, 200, {}, INELIGIBLE, NOW)
    assert isinstance(follow, FollowUp), follow
    return cancel, follow.call


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("order_by", ["order_id", "alias"])
def test_the_target_mutation_and_confirm_read_are_valid(version: str, order_by: str) -> None:
    cancel, confirm = target_calls(version, order_by)
    assert (cancel.headers["x-api-version"], confirm.headers["x-api-version"]) == (version,) * 2
    mutation = judged(cancel)
    assert mutation.field_name == "cancelOrder"
    # The coerced values: the reason as the enum, the event id as a cancellation alias.
    sent = mutation.variables["input"]
    assert sent["reason"] == "PAYMENT_ISSUE"
    assert sent["aliases"] == [
        {"aliasId": str(EVENT.event_id), "aliasType": "EXTERNAL_CANCELLATION_ID"}
    ]
    assert judged(confirm).field_name == "order"


@pytest.mark.parametrize("version", VERSIONS)
def test_the_source_order_read_is_valid(version: str) -> None:
    handler = prime_source("prime-webhooks", api_version=version)
    body = {
        "eventId": "e",
        "eventType": "PACKAGE_DELIVERY_CANCELLED",
        "resources": ["businessProduct/bp-1/order/322-AAA/delivery/d-1"],
    }
    lookup = handler.parse({}, orjson.dumps(body), NOW)
    assert isinstance(lookup, Lookup), lookup
    assert lookup.call.headers["x-api-version"] == version
    assert judged(lookup.call).variables == {"order": {"orderId": "322-AAA"}}


@pytest.mark.parametrize("version", VERSIONS)
def test_the_old_reads_were_refused_by_both_versions(version: str) -> None:
    """The breaker this file exists for: `id` is not a CancellationDetails field."""
    found = check_request(
        load_schema(f"prime-{version}"),
        {"query": OLD_ORDER_QUERY, "variables": {"order": {"orderId": "1"}}},
    )
    assert not isinstance(found, Accepted)
    assert "Cannot query field 'id' on type 'CancellationDetails'." in found.messages


def test_the_cancellation_request_is_the_only_cancellation_with_an_id() -> None:
    for version in VERSIONS:
        schema = load_schema(f"prime-{version}")
        request = schema.get_type("CancellationRequestDetails")
        details = schema.get_type("CancellationDetails")
        assert "id" in request.fields  # type: ignore[union-attr]
        assert "id" not in details.fields  # type: ignore[union-attr]


async def post(fake: FakePrime, call: HttpCall, token: str | None = None) -> tuple[int, bytes]:
    """Make `call` against the fake (its URL swapped for the fake's), with a bearer token."""
    headers = dict(call.headers)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    path = call.url.rpartition("/")[2]
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fake.url}/{path}", data=call.body, headers=headers) as answer,
    ):
        return answer.status, await answer.read()


@pytest.mark.parametrize("invalid_status", [200, 400])
@pytest.mark.parametrize("classification", ["object", "string"])
async def test_the_fake_refuses_what_prime_would_and_we_cope(
    invalid_status: int, classification: str
) -> None:
    """The old confirm-read against the strict fake: refused, recorded, and read as refused."""
    fake = FakePrime(
        "cid",
        "csecret",
        orders={"322-KG36-AAAAA": PrimeOrder(state="CANCELLED")},
        invalid_status=invalid_status,
        classification_as_string=classification == "string",
    )
    await fake.start()
    try:
        old = HttpCall(
            "POST",
            "https://prime.example/graphql",
            {"x-api-version": "2024-11-01", "x-api-target-id": "bp-1"},
            orjson.dumps({"query": OLD_ORDER_QUERY, "variables": {"order": {"orderId": "1"}}}),
        )
        status, body = await post(fake, old)
        assert status == invalid_status
        assert orjson.loads(body)["data"] is None
        assert confirm_read(status, CIMultiDict(), body, NOW) == Rejected(
            "prime order read failed: ValidationError"
            " Cannot query field 'id' on type 'CancellationDetails'."
        )
        lookup = prime_source("u").parse(
            {},
            orjson.dumps(
                {
                    "eventType": "PACKAGE_DELIVERY_CANCELLED",
                    "resources": ["businessProduct/bp-1/order/322-AAA"],
                }
            ),
            NOW,
        )
        assert isinstance(lookup, Lookup)
        assert isinstance(lookup.then(status, CIMultiDict(), body), Unavailable)
        [refusal] = fake.refused
        assert refusal == FakeRefusal(
            "2024-11-01",
            "ValidationError",
            ("Cannot query field 'id' on type 'CancellationDetails'.",),
        )
        # An API version without a published schema is refused too.
        unknown = HttpCall(
            "POST", old.url, {**old.headers, "x-api-version": "2099-01-01"}, old.body
        )
        assert (await post(fake, unknown))[0] == invalid_status
        assert [r.version for r in fake.refused] == ["2024-11-01", "2099-01-01"]
    finally:
        await fake.stop()


@pytest.mark.parametrize(("expects", "sends"), [("basic", "form"), ("form", "basic")])
async def test_the_fake_token_endpoint_takes_one_client_authentication(
    expects: str, sends: str
) -> None:
    """The other way of sending the client secret gets OAuth's 401 invalid_client."""
    fake = FakePrime("cid", "csecret", token_client_auth="form" if expects == "form" else "basic")
    await fake.start()
    try:
        client = (SecretStr("cid"), SecretStr("csecret"))
        wrong = token_call(f"{fake.url}/token", *client, "form" if sends == "form" else "basic")
        status, body = await post(fake, wrong)
        assert (status, orjson.loads(body)) == (401, {"error": "invalid_client"})
        right = token_call(f"{fake.url}/token", *client, "form" if expects == "form" else "basic")
        status, body = await post(fake, right)
        assert (status, orjson.loads(body)["expires_in"]) == (200, 900)
        assert (fake.token_requests, fake.token_refusals) == (1, 1)
    finally:
        await fake.stop()
