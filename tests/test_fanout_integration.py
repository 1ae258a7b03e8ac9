"""One cancellation, every routed target once, and the echoes stopped.

OCC in -> CJ and Shoplazza out; Shoplazza in -> CJ and OCC out. Real receiver, workers (one per
target), RabbitMQ and store; fake CJ, fake Shoplazza and fake OCC.
"""

from __future__ import annotations

import asyncio
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
from handlers.occ import sign as occ_sign
from tests.fakes.occ import FakeOCC
from tests.fakes.shoplazza import FakeShoplazza
from tests.harness.pipeline import API_TOKEN, OCC_SECRET, SETTLE_TIMEOUT, Client, running_bridge
from tests.harness.receiver import ClientFactory, shoplazza_webhook
from tests.harness.stores import scratch_store

SHOP = "demo.myshoplaza.com"
SHOP_TOKEN = "fake-shoplazza-token-42"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
TARGETS = ("cj", "shoplazza", "occ")
OCC_APP_KEY = "fake-occ-app-key"
SITE = "siteUS"
SHOPLAZZA_SECRET = "fanout-shoplazza-secret"


def fanout_config(amqp_url: str, cj_url: str, shoplazza_url: str, occ_url: str) -> Config:
    settings = parse_settings(
        {
            "broker": {"confirm_timeout": 2.0, "reconnect_interval": 0.2},
            "receiver": {"api_token_env": "API_TOKEN"},
            "sources": {
                "shoplazza": {"secret_env": "SHOPLAZZA_SECRET"},
                "occ": {"secret_env": "OCC_SECRET"},
            },
            "targets": {
                "cj": {
                    "url": cj_url,
                    "enterprise_id": "1",
                    "action_tracker_id": 2,
                    "open_ended_locking": True,
                    "order_id_from": "order_id",
                    "timeout_s": 2,
                },
                "shoplazza": {
                    "shops": {
                        SHOP: {"token_env": "SL_TOKEN", "base_url": f"{shoplazza_url}/{SHOP}"}
                    },
                    "default_shop": SHOP,
                    "timeout_s": 2,
                },
                "occ": {
                    "base_url": occ_url,
                    "app_key_env": "OCC_APP_KEY",
                    "default_site": SITE,
                    "timeout_s": 2,
                },
            },
            "routes": {"occ": ["cj", "shoplazza"], "shoplazza": ["cj", "occ"]},
            "worker": {"retry_delays": [0.2, 0.4], "retry_total": 60},
            "store": {"path": scratch_store()},
        }
    )
    env = {
        "AMQP_URL": amqp_url,
        "SHOPLAZZA_SECRET": SHOPLAZZA_SECRET,
        "OCC_APP_KEY": OCC_APP_KEY,
        "OCC_SECRET": OCC_SECRET,
        "CJ_ACCESS_TOKEN": CJ_TOKEN,
        "SL_TOKEN": SHOP_TOKEN,
        "API_TOKEN": API_TOKEN,
    }
    return resolve(settings, env)


@dataclass
class Fanout:
    """The bridge with a worker per target, and the fakes behind them."""

    client: Client
    workers: dict[str, Worker]
    cj: FakeCJ
    shoplazza: FakeShoplazza
    occ: FakeOCC

    async def occ_cancel(self, order_id: str) -> dict[str, Any]:
        """Post OCC's signed Cancel Order webhook for `order_id`; its JSON answer."""
        body = orjson.dumps({"order": {"id": order_id, "cancelReason": "changeOfMind"}})
        response = await self.client.post(
            "/webhooks/occ",
            data=body,
            headers={
                "X-Oracle-CC-WebHook-Signature": occ_sign(body, OCC_SECRET),
                "x-ccsite": "siteUS",
            },
        )
        answer: dict[str, Any] = orjson.loads(await response.read())
        assert response.status == 200, answer
        return answer

    async def shoplazza_cancel(self, order_id: str) -> dict[str, Any]:
        """Post Shoplazza's signed orders/cancelled webhook for `order_id`; its JSON answer."""
        hook = shoplazza_webhook({"id": order_id}, shop=SHOP, secret=SHOPLAZZA_SECRET)
        response = await self.client.post(
            "/webhooks/shoplazza", data=hook.body, headers=hook.headers
        )
        answer: dict[str, Any] = orjson.loads(await response.read())
        assert response.status == 200, answer
        return answer

    async def link(self, occ_id: str, shoplazza_id: str) -> None:
        """Link the OCC order to the Shoplazza order through the API."""
        response = await self.client.put(
            "/api/links", headers=AUTH, json={"occ": occ_id, "shoplazza": shoplazza_id}
        )
        assert response.status == 200, await response.text()

    async def settled(self, target: str, kind: str, count: int = 1) -> None:
        """Await `target`'s worker settling `count` messages as `kind`."""
        async with asyncio.timeout(SETTLE_TIMEOUT):
            await self.workers[target].wait_outcomes(kind, count)


@pytest.fixture
async def fanout(
    aiohttp_client: ClientFactory, amqp_url: str, amqp: AbstractRobustConnection, cj: FakeCJ
) -> AsyncIterator[Fanout]:
    shoplazza = FakeShoplazza(tokens={SHOP: SHOP_TOKEN})
    await shoplazza.start()
    occ = FakeOCC(app_key=OCC_APP_KEY)
    await occ.start()
    config = fanout_config(amqp_url, cj.url, shoplazza.url, occ.url)
    try:
        async with running_bridge(aiohttp_client, amqp_url, amqp, config, TARGETS) as started:
            yield Fanout(started.client, started.workers, cj, shoplazza, occ)
    finally:
        await shoplazza.stop()
        await occ.stop()


async def test_an_occ_cancellation_reaches_cj_and_shoplazza_once_and_the_echo_stops(
    fanout: Fanout,
) -> None:
    occ_id, shop_id = f"o{uuid.uuid4().hex[:8]}", f"S{uuid.uuid4().hex[:8]}"
    fanout.shoplazza.orders[(SHOP, shop_id)] = "opened"
    await fanout.link(occ_id, shop_id)
    first = await fanout.occ_cancel(occ_id)
    for _ in range(2):  # OCC re-sends
        assert (await fanout.occ_cancel(occ_id))["event_id"] == first["event_id"]
    await fanout.settled("cj", "delivered")
    await fanout.settled("shoplazza", "delivered")
    await fanout.settled("shoplazza", "duplicate", 2)
    await fanout.settled("cj", "duplicate", 2)
    assert fanout.shoplazza.cancels == [(SHOP, shop_id)]
    assert [call.order["orderId"] for call in fanout.cj.calls] == [occ_id]

    # Shoplazza now sends its own webhook for the order the bridge cancelled: an echo.
    answer = await fanout.shoplazza_cancel(shop_id)
    assert (answer["status"], answer["echo_of"]) == ("echo", first["event_id"])
    status = await fanout.client.get(f"/api/orders/occ/{occ_id}", headers=AUTH)
    [event] = orjson.loads(await status.read())["events"]
    states = {d["target"]: (d["state"], d["attempts"]) for d in event["deliveries"]}
    assert states == {"cj": ("delivered", 1), "shoplazza": ("delivered", 1)}
    assert event["links"] == {"occ": occ_id, "shoplazza": shop_id}
    assert [call.order["orderId"] for call in fanout.cj.calls] == [occ_id]  # no fan-out of echo


async def test_shoplazza_calls_are_paced_per_store(fanout: Fanout) -> None:
    """Six cancellations for one store at once: spread out, never a 429."""
    pairs = [(f"o{uuid.uuid4().hex[:8]}", f"S{uuid.uuid4().hex[:8]}") for _ in range(6)]
    for occ_id, shop_id in pairs:
        fanout.shoplazza.orders[(SHOP, shop_id)] = "opened"
        await fanout.link(occ_id, shop_id)
    await asyncio.gather(*(fanout.occ_cancel(occ_id) for occ_id, _ in pairs))
    await fanout.settled("shoplazza", "delivered", len(pairs))
    assert sorted(fanout.shoplazza.cancels) == sorted((SHOP, s) for _, s in pairs)
    assert fanout.shoplazza.too_fast == 0, f"{fanout.shoplazza.too_fast} requests got 429"


async def test_an_order_already_cancelled_on_shoplazza_is_confirmed_by_reading_it(
    fanout: Fanout,
) -> None:
    occ_id, shop_id = f"o{uuid.uuid4().hex[:8]}", f"S{uuid.uuid4().hex[:8]}"
    fanout.shoplazza.orders[(SHOP, shop_id)] = "cancelled"
    await fanout.link(occ_id, shop_id)
    await fanout.occ_cancel(occ_id)
    await fanout.settled("shoplazza", "already_done")
    assert fanout.shoplazza.reads == [(SHOP, shop_id)]
    assert fanout.shoplazza.cancels == []


async def test_a_finished_order_is_parked_not_retried(fanout: Fanout) -> None:
    occ_id, shop_id = f"o{uuid.uuid4().hex[:8]}", f"S{uuid.uuid4().hex[:8]}"
    fanout.shoplazza.orders[(SHOP, shop_id)] = "finished"
    await fanout.link(occ_id, shop_id)
    await fanout.occ_cancel(occ_id)
    await fanout.settled("shoplazza", "parked")
    status = await fanout.client.get(f"/api/orders/occ/{occ_id}", headers=AUTH)
    [event] = orjson.loads(await status.read())["events"]
    shoplazza = next(d for d in event["deliveries"] if d["target"] == "shoplazza")
    assert shoplazza["state"] == "parked"
    assert "'finished', not cancellable" in shoplazza["last_error"]


async def test_a_shoplazza_cancellation_reaches_occ_with_one_login_for_a_burst(
    fanout: Fanout,
) -> None:
    """Five cancellations at once: one OCC login; after the token expires, one more."""
    pairs = [(f"S{uuid.uuid4().hex[:8]}", f"o{uuid.uuid4().hex[:8]}") for _ in range(6)]
    for shop_id, occ_id in pairs:
        fanout.occ.orders[(SITE, occ_id)] = "SUBMITTED"
        await fanout.link(occ_id, shop_id)
    await asyncio.gather(*(fanout.shoplazza_cancel(shop_id) for shop_id, _ in pairs[:5]))
    await fanout.settled("occ", "delivered", 5)
    assert fanout.occ.logins == 1, f"{fanout.occ.logins} logins for one burst"
    assert sorted(c[1] for c in fanout.occ.cancels) == sorted(o for _, o in pairs[:5])
    assert {c[2] for c in fanout.occ.cancels} == {"cannotProcessOrder"}  # reason `inventory`

    fanout.occ.expire_all()  # the token ends early: the next call gets 401, then a new token
    await fanout.shoplazza_cancel(pairs[5][0])
    await fanout.settled("occ", "delivered", 6)
    assert fanout.occ.logins == 2
    worker_tokens = fanout.workers["occ"].tokens
    assert worker_tokens is not None
    assert worker_tokens.fetches == 2

    # OCC's own Cancel Order webhook for an order the bridge cancelled there: an echo.
    answer = await fanout.occ_cancel(pairs[0][1])
    assert answer["status"] == "echo", answer
    await fanout.settled("cj", "delivered", 6)
    assert sorted(call.order["orderId"] for call in fanout.cj.calls) == sorted(s for s, _ in pairs)


async def test_an_order_already_removed_on_occ_is_confirmed_by_reading_it(fanout: Fanout) -> None:
    shop_id, occ_id = f"S{uuid.uuid4().hex[:8]}", f"o{uuid.uuid4().hex[:8]}"
    fanout.occ.orders[(SITE, occ_id)] = "REMOVED"
    await fanout.link(occ_id, shop_id)
    await fanout.shoplazza_cancel(shop_id)
    await fanout.settled("occ", "already_done")
    assert fanout.occ.cancels == []
