"""The shop allowlists at the receiver: one signed body, many shop headers, one order.

Found by a probe: Shoplazza's signature does not cover `X-Shoplazza-Shop-Domain`, so one signed
body sent with 24 shop names gave 24 events and 24 CJ calls for one order. With
`[sources.shoplazza] shops` set, every other shop is answered 401 `unknown_shop` and counted.
OCC's `x-ccsite` is no more signed: `[sources.occ] sites` does the same for it.
"""

from __future__ import annotations

import orjson
from aio_pika.abc import AbstractQueue

from bridge.settings import parse_settings, resolve
from bridge.web.keys import METRICS
from handlers.occ import sign as occ_sign
from tests.harness.broker import assert_empty, receive
from tests.harness.receiver import SECRET, ClientFactory, signed, started
from tests.harness.stores import scratch_store

SHOP = "allowed.myshoplaza.com"
FORGED = [f"forged-{n}.myshoplaza.com" for n in range(23)]


async def test_only_the_allowlisted_shop_becomes_an_event(
    aiohttp_client: ClientFactory, amqp_url: str, subscriber: AbstractQueue
) -> None:
    settings = parse_settings(
        {
            "broker": {"confirm_timeout": 2.0, "reconnect_interval": 0.2},
            "store": {"path": scratch_store()},
            "sources": {"shoplazza": {"secret_env": "SHOPLAZZA_CLIENT_SECRET", "shops": [SHOP]}},
        }
    )
    config = resolve(settings, {"AMQP_URL": amqp_url, "SHOPLAZZA_CLIENT_SECRET": SECRET})
    client = await started(aiohttp_client, config)
    body = orjson.dumps({"id": "probe-1001", "status": "cancelled"})
    answers = []
    for shop in [SHOP, *FORGED]:
        hook = signed(body, topic="orders/cancelled", shop=shop)
        response = await client.post("/webhooks/shoplazza", data=hook.body, headers=hook.headers)
        answers.append((response.status, orjson.loads(await response.read())))
    assert answers[0][0] == 200
    assert answers[0][1]["status"] == "accepted"
    assert {(status, answer["error"]) for status, answer in answers[1:]} == {(401, "unknown_shop")}
    assert (await receive(subscriber)).message_id == answers[0][1]["event_id"]
    await assert_empty(subscriber)  # one order, one event
    assert client.app is not None
    refused = {"source": "shoplazza", "status": "401", "outcome": "unknown_shop"}
    counted = client.app[METRICS].registry.get_sample_value("cancel_bridge_webhooks_total", refused)
    assert counted == len(FORGED)


async def test_only_an_allowlisted_occ_site_becomes_an_event(
    aiohttp_client: ClientFactory, amqp_url: str, subscriber: AbstractQueue
) -> None:
    secret = "b2NjLWFsbG93bGlzdC1zZWNyZXQ="  # base64, as OCC shows webhook secrets
    settings = parse_settings(
        {
            "broker": {"confirm_timeout": 2.0, "reconnect_interval": 0.2},
            "store": {"path": scratch_store()},
            "sources": {"occ": {"secret_env": "OCC_WEBHOOK_SECRET", "sites": ["siteUS"]}},
        }
    )
    config = resolve(settings, {"AMQP_URL": amqp_url, "OCC_WEBHOOK_SECRET": secret})
    client = await started(aiohttp_client, config)
    body = orjson.dumps({"order": {"id": "probe-occ-1", "siteId": "siteUS", "state": "REMOVED"}})
    answers = []
    for site in ["siteUS", "siteForged", "siteOther"]:
        headers = {"X-Oracle-CC-WebHook-Signature": occ_sign(body, secret), "x-ccsite": site}
        response = await client.post("/webhooks/occ", data=body, headers=headers)
        answers.append((response.status, orjson.loads(await response.read())))
    assert answers[0][0] == 200
    assert answers[0][1]["status"] == "accepted"
    assert [(status, answer["error"]) for status, answer in answers[1:]] == [
        (401, "unknown_shop")
    ] * 2
    assert "siteForged" in answers[1][1]["detail"]
    assert (await receive(subscriber)).message_id == answers[0][1]["event_id"]
    await assert_empty(subscriber)
    assert client.app is not None
    refused = {"source": "occ", "status": "401", "outcome": "unknown_shop"}
    counted = client.app[METRICS].registry.get_sample_value("cancel_bridge_webhooks_total", refused)
    assert counted == 2
