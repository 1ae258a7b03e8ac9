"""Buy with Prime both ways, through the real receiver, workers, broker and store.

In: a thin webhook (HTTP Basic, or a bearer token from our `/oauth/token`) completed from the fake
Prime order API, its OMS alias becoming an order link the Shoplazza target uses. Out: cancelOrder
with the event id as alias, one token for a burst, `CancellationIneligible` confirmed by a read,
and Prime's own webhook for that order suppressed as an echo.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from aio_pika.abc import AbstractRobustConnection

from bridge.demo.fake_cj import TOKEN as CJ_TOKEN
from bridge.demo.fake_cj import FakeCJ
from bridge.settings import Config, parse_settings, resolve
from bridge.worker.consumer import Worker
from tests.fakes.prime import FakePrime, PrimeOrder
from tests.fakes.shoplazza import FakeShoplazza
from tests.harness.pipeline import API_TOKEN, SETTLE_TIMEOUT, Client, running_bridge
from tests.harness.receiver import ClientFactory, shoplazza_webhook
from tests.harness.stores import scratch_store

BP = "bp-amzn1-123"
SHOP = "demo.myshoplaza.com"
WEBHOOK_USER = "prime-webhooks"
WEBHOOK_SECRET = "prime-webhook-password-1"
SHOPLAZZA_SECRET = "prime-test-shoplazza-secret"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
TARGETS = ("cj", "shoplazza", "prime")


@dataclass(frozen=True)
class PrimeApi:
    """How the bridge talks to the (fake) Prime API: version and token client authentication."""

    version: str = "2024-11-01"
    token_client_auth: str = "basic"


def prime_config(  # noqa: PLR0913 - the fakes' URLs, then how to talk to them
    amqp_url: str,
    cj_url: str,
    shoplazza_url: str,
    prime_url: str,
    auth: str = "basic",
    *,
    prime_api: PrimeApi = PrimeApi(),
) -> Config:
    api = {
        "client_id_env": "PRIME_CLIENT_ID",
        "client_secret_env": "PRIME_CLIENT_SECRET",
        "api_url": f"{prime_url}/graphql",
        "token_url": f"{prime_url}/token",
        "api_version": prime_api.version,
        "token_client_auth": prime_api.token_client_auth,
    }
    settings = parse_settings(
        {
            "broker": {"confirm_timeout": 2.0, "reconnect_interval": 0.2},
            "receiver": {"api_token_env": "API_TOKEN"},
            "sources": {
                "shoplazza": {"secret_env": "SHOPLAZZA_SECRET"},
                "prime": {
                    "secret_env": "PRIME_WEBHOOK_SECRET",
                    "auth": auth,
                    "username": WEBHOOK_USER,
                    "aliases": {"OMS_ORDER_ID": "shoplazza"},
                    "api": api,
                },
            },
            "targets": {
                "cj": {
                    "url": cj_url,
                    "enterprise_id": "1",
                    "action_tracker_id": 2,
                    "timeout_s": 2,
                    "open_ended_locking": True,
                    "order_id_from": "order_id",
                },
                "shoplazza": {
                    "shops": {
                        SHOP: {"token_env": "SL_TOKEN", "base_url": f"{shoplazza_url}/{SHOP}"}
                    },
                    "default_shop": SHOP,
                    "timeout_s": 2,
                },
                "prime": {
                    "api_url": f"{prime_url}/graphql",
                    "token_url": f"{prime_url}/token",
                    "business_product_id": BP,
                    "timeout_s": 2,
                    "api_version": prime_api.version,
                    "token_client_auth": prime_api.token_client_auth,
                },
            },
            "routes": {"prime": ["cj", "shoplazza"], "shoplazza": ["cj", "prime"]},
            "worker": {"retry_delays": [0.2, 0.4], "retry_total": 60},
            "store": {"path": scratch_store()},
        }
    )
    env = {
        "AMQP_URL": amqp_url,
        "SHOPLAZZA_SECRET": SHOPLAZZA_SECRET,
        "PRIME_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PRIME_CLIENT_ID": "prime-client",
        "PRIME_CLIENT_SECRET": "prime-client-secret",
        "CJ_ACCESS_TOKEN": CJ_TOKEN,
        "SL_TOKEN": "shop-token",
        "API_TOKEN": API_TOKEN,
    }
    return resolve(settings, env)


def prime_event(order_id: str, kind: str = "PACKAGE_DELIVERY_CANCELLED") -> dict[str, Any]:
    return {
        "eventId": str(uuid.uuid4()),
        "idempotencyKey": str(uuid.uuid4()),
        "eventType": kind,
        "resources": [f"businessProduct/{BP}/order/{order_id}/delivery/d-1"],
        "eventTime": "2025-04-09T12:00:00Z",
        "apiVersion": "2024-11-01",
        "data": {},
    }


BASIC = "Basic " + base64.b64encode(f"{WEBHOOK_USER}:{WEBHOOK_SECRET}".encode()).decode()


@dataclass
class Bridge:
    """The bridge with a worker per target, and the fakes."""

    client: Client
    workers: dict[str, Worker]
    cj: FakeCJ
    shoplazza: FakeShoplazza
    prime: FakePrime

    async def prime_webhook(
        self, body: object, authorization: str = BASIC
    ) -> tuple[int, dict[str, Any]]:
        """Post a Prime webhook; status and JSON answer."""
        response = await self.client.post(
            "/webhooks/prime",
            data=orjson.dumps(body),
            headers={"Authorization": authorization, "Content-Type": "application/json"},
        )
        return response.status, orjson.loads(await response.read())

    async def shoplazza_cancel(self, order_id: str) -> dict[str, Any]:
        """Shoplazza's signed webhook for `order_id`; the JSON answer."""
        hook = shoplazza_webhook({"id": order_id}, shop=SHOP, secret=SHOPLAZZA_SECRET)
        response = await self.client.post(
            "/webhooks/shoplazza", data=hook.body, headers=hook.headers
        )
        answer: dict[str, Any] = orjson.loads(await response.read())
        assert response.status == 200, answer
        return answer

    async def settled(self, target: str, kind: str, count: int = 1) -> None:
        """Await `target`'s worker settling `count` messages as `kind`."""
        async with asyncio.timeout(SETTLE_TIMEOUT):
            await self.workers[target].wait_outcomes(kind, count)


@contextlib.asynccontextmanager
async def running(  # noqa: PLR0913 - the fixtures, then how to talk to Prime
    aiohttp_client: ClientFactory,
    amqp_url: str,
    amqp: AbstractRobustConnection,
    cj: FakeCJ,
    auth: str = "basic",
    *,
    prime_api: PrimeApi = PrimeApi(),
) -> AsyncIterator[Bridge]:
    shoplazza = FakeShoplazza(tokens={SHOP: "shop-token"})
    prime = FakePrime(
        "prime-client",
        "prime-client-secret",
        token_client_auth="form" if prime_api.token_client_auth == "form" else "basic",
    )
    await shoplazza.start()
    await prime.start()
    config = prime_config(amqp_url, cj.url, shoplazza.url, prime.url, auth, prime_api=prime_api)
    try:
        async with running_bridge(aiohttp_client, amqp_url, amqp, config, TARGETS) as started:
            yield Bridge(started.client, started.workers, cj, shoplazza, prime)
        # Every request the bridge sent was valid for the published schema of its version.
        assert prime.refused == []
        assert prime.token_refusals == 0
    finally:
        await shoplazza.stop()
        await prime.stop()


@pytest.fixture
async def bridge(
    aiohttp_client: ClientFactory, amqp_url: str, amqp: AbstractRobustConnection, cj: FakeCJ
) -> AsyncIterator[Bridge]:
    async with running(aiohttp_client, amqp_url, amqp, cj) as started:
        yield started


async def test_a_prime_cancellation_is_completed_published_and_fanned_out(bridge: Bridge) -> None:
    order_id, shop_id = f"322-{uuid.uuid4().hex[:6]}", f"S{uuid.uuid4().hex[:8]}"
    bridge.prime.orders[order_id] = PrimeOrder(
        state="CANCELLED",
        reason="UNFULFILLABLE",
        aliases={"OMS_ORDER_ID": shop_id},
        cancellations=[
            {
                "id": "c1",
                "state": "SUCCESS",
                "reason": "UNFULFILLABLE",
                "createdAt": "2025-04-09T11:59:00Z",
            }
        ],
    )
    bridge.shoplazza.orders[(SHOP, shop_id)] = "opened"
    status, answer = await bridge.prime_webhook(prime_event(order_id))
    assert (status, answer["status"]) == (200, "accepted"), answer
    # The same event in an EventBridge envelope is the same cancellation.
    envelope = {
        "detail-type": "PACKAGE_DELIVERY_CANCELLED",
        "source": "aws.partner",
        "detail": prime_event(order_id),
    }
    status, again = await bridge.prime_webhook(envelope)
    assert (status, again["event_id"]) == (200, answer["event_id"])

    await bridge.settled("cj", "delivered")
    await bridge.settled("shoplazza", "delivered")
    assert [call.order["orderId"] for call in bridge.cj.calls] == [order_id]
    assert bridge.shoplazza.cancels == [(SHOP, shop_id)]  # the alias became the link
    response = await bridge.client.get(f"/api/orders/prime/{order_id}", headers=AUTH)
    [event] = orjson.loads(await response.read())["events"]
    assert (event["shop"], event["reason"]) == (BP, "inventory")
    assert event["links"] == {"prime": order_id, "shoplazza": shop_id}
    assert bridge.prime.token_requests == 1  # the receiver's lookups share one token


async def test_prime_unavailable_is_503_and_the_resend_is_accepted(bridge: Bridge) -> None:
    order_id = f"322-{uuid.uuid4().hex[:6]}"
    bridge.prime.orders[order_id] = PrimeOrder(state="CANCELLED")
    bridge.prime.unavailable = 1
    status, answer = await bridge.prime_webhook(prime_event(order_id))
    assert (status, answer["error"]) == (503, "platform_unavailable"), answer
    assert bridge.cj.calls == []
    status, answer = await bridge.prime_webhook(prime_event(order_id))
    assert (status, answer["status"]) == (200, "accepted"), answer
    await bridge.settled("cj", "delivered")
    assert len(bridge.cj.calls) == 1


async def test_partial_cancellations_and_other_events_are_ignored(bridge: Bridge) -> None:
    order_id = f"322-{uuid.uuid4().hex[:6]}"
    bridge.prime.orders[order_id] = PrimeOrder(state="PENDING")
    status, answer = await bridge.prime_webhook(prime_event(order_id))
    assert (status, answer["status"]) == (200, "ignored")
    assert "partial" in answer["reason"]
    status, answer = await bridge.prime_webhook(prime_event(order_id, "REFUND_REQUESTED"))
    assert (status, answer["status"]) == (200, "ignored")
    status, answer = await bridge.prime_webhook(prime_event("unknown-order"))
    assert (status, answer["status"]) == (200, "quarantined"), answer


@pytest.mark.parametrize(
    "authorization",
    [
        "",
        "Basic " + base64.b64encode(f"{WEBHOOK_USER}:wrong".encode()).decode(),
        "Basic " + base64.b64encode(f"someone:{WEBHOOK_SECRET}".encode()).decode(),
        "Basic not-base64!",
        "Bearer whatever",
    ],
)
async def test_wrong_credentials_are_401(bridge: Bridge, authorization: str) -> None:
    status, answer = await bridge.prime_webhook(prime_event("322-x"), authorization)
    assert (status, answer["error"]) == (401, "bad_signature")
    assert WEBHOOK_SECRET not in str(answer)


async def test_cancelling_on_prime_one_token_per_burst_and_the_echo(bridge: Bridge) -> None:
    pairs = [(f"S{uuid.uuid4().hex[:8]}", f"322-{uuid.uuid4().hex[:6]}") for _ in range(4)]
    for shop_id, order_id in pairs:
        bridge.prime.orders[order_id] = PrimeOrder(state="PENDING")
        response = await bridge.client.put(
            "/api/links", headers=AUTH, json={"shoplazza": shop_id, "prime": order_id}
        )
        assert response.status == 200
    answers = await asyncio.gather(*(bridge.shoplazza_cancel(s) for s, _ in pairs))
    await bridge.settled("prime", "delivered", len(pairs))
    tokens = bridge.workers["prime"].tokens
    assert tokens is not None
    assert tokens.fetches == 1, f"{tokens.fetches} token requests for one burst"
    by_order = {c["order_id"]: c for c in bridge.prime.cancels}
    assert sorted(by_order) == sorted(o for _, o in pairs)
    for (_, order_id), answer in zip(pairs, answers, strict=True):
        assert by_order[order_id]["input"]["aliases"] == [
            {"aliasId": answer["event_id"], "aliasType": "EXTERNAL_CANCELLATION_ID"}
        ]
        assert by_order[order_id]["input"]["reason"] == "OUT_OF_STOCK"

    bridge.prime.expire_all()
    shop_id, order_id = f"S{uuid.uuid4().hex[:8]}", f"322-{uuid.uuid4().hex[:6]}"
    bridge.prime.orders[order_id] = PrimeOrder(state="PENDING")
    await bridge.client.put(
        "/api/links", headers=AUTH, json={"shoplazza": shop_id, "prime": order_id}
    )
    await bridge.shoplazza_cancel(shop_id)
    await bridge.settled("prime", "delivered", len(pairs) + 1)
    assert tokens.fetches == 2

    # Prime now tells us about the cancellation the bridge made: an echo, not fanned out.
    status, answer = await bridge.prime_webhook(prime_event(order_id))
    assert (status, answer["status"]) == (200, "echo"), answer


async def test_an_order_prime_already_cancelled_is_confirmed_by_reading_it(bridge: Bridge) -> None:
    shop_id, order_id = f"S{uuid.uuid4().hex[:8]}", f"322-{uuid.uuid4().hex[:6]}"
    bridge.prime.orders[order_id] = PrimeOrder(
        state="CANCELLED", cancellations=[{"id": "c0", "state": "SUCCESS"}]
    )
    await bridge.client.put(
        "/api/links", headers=AUTH, json={"shoplazza": shop_id, "prime": order_id}
    )
    await bridge.shoplazza_cancel(shop_id)
    await bridge.settled("prime", "already_done")
    assert bridge.prime.cancels == []


async def test_oauth_token_endpoint_and_bearer_webhooks(
    aiohttp_client: ClientFactory, amqp_url: str, amqp: AbstractRobustConnection, cj: FakeCJ
) -> None:
    async with running(aiohttp_client, amqp_url, amqp, cj, auth="oauth") as bridge:
        client = bridge.client
        refused = await client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": "Basic " + base64.b64encode(b"prime-webhooks:nope").decode()},
        )
        assert refused.status == 401
        assert orjson.loads(await refused.read())["error"] == "invalid_client"
        wrong_grant = await client.post("/oauth/token", data={"grant_type": "password"})
        assert wrong_grant.status == 400
        unknown_charset = await client.post(
            "/oauth/token",
            data=b"grant_type=client_credentials",
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=bogus-charset"},
        )
        assert unknown_charset.status == 400  # not a 500: an unreadable form is no grant
        issued = await client.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "client_id": WEBHOOK_USER,
                "client_secret": WEBHOOK_SECRET,
            },
        )
        token = orjson.loads(await issued.read())
        assert (issued.status, token["token_type"], token["expires_in"]) == (200, "Bearer", 900)
        assert issued.headers["Cache-Control"] == "no-store"

        order_id = f"322-{uuid.uuid4().hex[:6]}"
        bridge.prime.orders[order_id] = PrimeOrder(state="CANCELLED")
        status, answer = await bridge.prime_webhook(
            prime_event(order_id), f"Bearer {token['access_token']}"
        )
        assert (status, answer["status"]) == (200, "accepted"), answer
        status, answer = await bridge.prime_webhook(prime_event(order_id), BASIC)
        assert status == 401
        status, answer = await bridge.prime_webhook(
            prime_event(order_id), f"Bearer {token['access_token']}x"
        )
        assert status == 401


async def test_api_2024_04_01_form_tokens_and_orders_without_a_package_summary(
    aiohttp_client: ClientFactory, amqp_url: str, amqp: AbstractRobustConnection, cj: FakeCJ
) -> None:
    """The older API version both ways, tokens by form fields, schema refusals as HTTP 400."""
    api = PrimeApi(version="2024-04-01", token_client_auth="form")
    async with running(aiohttp_client, amqp_url, amqp, cj, prime_api=api) as bridge:
        bridge.prime.invalid_status = 400
        # In: every package cancelled but no summary is a full cancellation, published.
        order_id = f"322-{uuid.uuid4().hex[:6]}"
        bridge.prime.orders[order_id] = PrimeOrder(
            state="CANCELLED", reason="UNFULFILLABLE", summary=False
        )
        status, answer = await bridge.prime_webhook(prime_event(order_id))
        assert (status, answer["status"]) == (200, "accepted"), answer
        await bridge.settled("cj", "delivered")
        # A package still on its way without a summary is partial: ignored, and it says why.
        partial = f"322-{uuid.uuid4().hex[:6]}"
        bridge.prime.orders[partial] = PrimeOrder(state="IN_TRANSIT", summary=False)
        status, answer = await bridge.prime_webhook(prime_event(partial))
        assert (status, answer["status"]) == (200, "ignored"), answer
        assert "IN_TRANSIT" in answer["reason"]
        assert "partial" in answer["reason"]

        # Out: cancelOrder(input: {orderIdentifier ...}) and the confirm-read.
        pending, shipped = (f"322-{uuid.uuid4().hex[:6]}" for _ in range(2))
        bridge.prime.orders[pending] = PrimeOrder(state="PENDING")
        bridge.prime.orders[shipped] = PrimeOrder(
            state="CANCELLED", cancellations=[{"state": "SUCCESS"}]
        )
        for order in (pending, shipped):
            shop_id = f"S{uuid.uuid4().hex[:8]}"
            await bridge.client.put(
                "/api/links", headers=AUTH, json={"shoplazza": shop_id, "prime": order}
            )
            await bridge.shoplazza_cancel(shop_id)
        await bridge.settled("prime", "delivered")
        await bridge.settled("prime", "already_done")
        [sent] = bridge.prime.cancels
        assert sent["order_id"] == pending
        assert sent["input"]["orderIdentifier"] == {"orderId": pending}
        assert sent["input"]["reason"] == "OUT_OF_STOCK"
        assert bridge.prime.token_requests >= 1
