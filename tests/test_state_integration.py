"""Exactly one effect per (order, target), whatever is duplicated; status; the API's token.

Real receiver, worker(s) and RabbitMQ, a fake CJ, and the store on both engines (the `pipeline`
fixture runs once on a SQLite file and once on PostgreSQL).
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aio_pika.abc import AbstractQueue

from bridge.amqp.messages import REDELIVERY_HEADER, SEEN_HEADER
from bridge.cli.main import main
from bridge.demo.fake_cj import Reply, accepted
from bridge.targets import plan
from bridge.worker.consumer import Worker
from tests.harness.broker import receive
from tests.harness.pipeline import API_TOKEN, SETTLE_TIMEOUT, Pipeline, worker_for
from tests.harness.receiver import ClientFactory, make_config, started
from tests.harness.stores import store_section

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
DUPLICATES = 5


async def status_of(pipeline: Pipeline, order_id: str) -> dict[str, Any]:
    response = await pipeline.client.get(f"/api/orders/shoplazza/{order_id}", headers=AUTH)
    assert response.status == 200, await response.text()
    answer: dict[str, Any] = orjson.loads(await response.read())
    return answer


async def settled_together(workers: list[Worker], kind: str, total: int) -> None:
    """Await `total` messages settled as `kind` by the workers together."""
    async with asyncio.timeout(SETTLE_TIMEOUT):
        while sum(worker.outcomes[kind] for worker in workers) < total:
            waits = [
                asyncio.ensure_future(worker.wait_outcomes(kind, worker.outcomes[kind] + 1))
                for worker in workers
            ]
            _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for wait in pending:
                wait.cancel()


async def test_the_same_webhook_five_times_is_one_cj_call(
    pipeline: Pipeline, subscriber: AbstractQueue
) -> None:
    """Five deliveries of one cancellation (new delivery ids): five published, one call."""
    order = f"dup-{uuid.uuid4().hex[:8]}"
    for n in range(DUPLICATES):
        await pipeline.post(id=order, delivery_id=f"delivery-{n}")
    await pipeline.settled("delivered")
    await pipeline.settled("duplicate", DUPLICATES - 1)
    assert len(pipeline.cj.calls_for(order)) == 1

    published = [await receive(subscriber) for _ in range(DUPLICATES)]
    marks = [
        ((m.headers or {}).get(REDELIVERY_HEADER), (m.headers or {}).get(SEEN_HEADER))
        for m in published
    ]
    assert marks == [(None, None), (True, 2), (True, 3), (True, 4), (True, 5)]
    assert len({m.message_id for m in published}) == 1

    [event] = (await status_of(pipeline, order))["events"]
    assert event["times_received"] == DUPLICATES
    [cj] = event["deliveries"]
    assert (cj["target"], cj["state"], cj["attempts"]) == ("cj", "delivered", 1)


async def test_two_workers_and_a_burst_of_duplicates_make_one_call_per_order(
    pipeline: Pipeline, amqp_url: str
) -> None:
    """Twenty orders, each posted five times at once, consumed by two workers: 20 calls."""
    orders = [f"burst-{n}-{uuid.uuid4().hex[:6]}" for n in range(20)]
    worker_plan = plan(pipeline.config, "cj")
    async with worker_for(pipeline.config, worker_plan, amqp_url) as second:
        await asyncio.gather(
            *(
                pipeline.post(id=order, delivery_id=f"{order}-{n}")
                for order in orders
                for n in range(DUPLICATES)
            )
        )
        workers = [pipeline.worker, second]
        await settled_together(workers, "delivered", len(orders))
        await settled_together(workers, "duplicate", len(orders) * (DUPLICATES - 1))
    calls = {order: len(pipeline.cj.calls_for(order)) for order in orders}
    assert calls == dict.fromkeys(orders, 1), calls
    assert second.outcomes["delivered"] + second.outcomes["duplicate"] > 0, "one worker idled"


async def test_status_shows_each_state_transition(
    pipeline: Pipeline,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    order = f"status-{uuid.uuid4().hex[:8]}"
    answer = accepted(order)
    pipeline.cj.script[order] = [Reply(status=503), answer]
    await pipeline.post(id=order)
    await pipeline.settled("delivered")

    [event] = (await status_of(pipeline, order))["events"]
    [cj] = event["deliveries"]
    states = [step["state"] for step in cj["history"]]
    assert states == ["pending", "retrying", "delivered"]
    assert cj["history"][1]["detail"] == "cj answered HTTP 503"
    assert cj["history"][2]["detail"] == cj["reference"]
    submission = answer.body["data"]["cancelOrders"]["orders"][0]["submissionId"]  # type: ignore[index]
    assert (cj["state"], cj["attempts"], cj["reference"], cj["last_error"]) == (
        "delivered",
        2,
        submission,
        None,
    )

    # The command line reads the same store.
    store, store_env = store_section(pipeline.config.store_url.get_secret_value())
    config = tmp_path / "c.toml"
    lines = "".join(f'{key} = "{value}"\n' for key, value in store.items())
    config.write_text(f'[sources.shoplazza]\nsecret_env = "S"\n[store]\n{lines}')
    monkeypatch.setenv("S", "x")
    for name, value in store_env.items():
        monkeypatch.setenv(name, value)
    cli = ["--config", str(config)]
    assert await asyncio.to_thread(main, ["status", order, "--source", "shoplazza", *cli]) == 0
    text = capsys.readouterr().out
    assert f"cj: delivered after 2 attempt(s), reference {submission}" in text
    assert text.count("  pending") == 1, text
    assert "retrying  cj answered HTTP 503" in text
    assert await asyncio.to_thread(main, ["status", order, "--json", *cli]) == 0
    assert orjson.loads(capsys.readouterr().out)[0]["event_id"] == event["event_id"]
    assert await asyncio.to_thread(main, ["status", "no-such-order", *cli]) == 1
    assert "no cancellation recorded" in capsys.readouterr().out


async def test_api_without_the_right_token_is_401(pipeline: Pipeline) -> None:
    client = pipeline.client
    attempts: list[tuple[str, str, dict[str, str]]] = [
        ("GET", "/api/orders/shoplazza/1001", {}),
        ("GET", "/api/orders/shoplazza/1001", {"Authorization": "Bearer wrong-token-123456789"}),
        ("GET", "/api/orders/shoplazza/1001", {"Authorization": f"Basic {API_TOKEN}"}),
        ("GET", "/api/orders/shoplazza/1001", {"Authorization": f"Bearer {API_TOKEN}x"}),
        ("PUT", "/api/links", {}),
        ("GET", "/api/links", {}),
        ("GET", "/api/anything/else", {}),
        ("DELETE", "/api", {}),
    ]
    for method, path, headers in attempts:
        response = await client.request(method, path, headers=headers, data=b'{"cj": "1"}')
        body = orjson.loads(await response.read())
        assert response.status == 401, (method, path, headers, body)
        assert body["error"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert API_TOKEN not in orjson.dumps(body).decode()
    unknown = await client.get("/api/orders/shoplazza/never-seen", headers=AUTH)
    assert unknown.status == 404
    assert (await client.get("/api/elsewhere", headers=AUTH)).status == 404


async def test_api_is_off_without_a_configured_token(
    aiohttp_client: ClientFactory, amqp_url: str
) -> None:
    client = await started(aiohttp_client, make_config(amqp_url))
    response = await client.get("/api/orders/shoplazza/1", headers=AUTH)
    assert response.status == 401
    assert orjson.loads(await response.read())["error"] == "api_disabled"


async def test_links_by_api(pipeline: Pipeline) -> None:
    client = pipeline.client
    put = await client.put(
        "/api/links",
        headers=AUTH,
        json=[{"shoplazza": "L-1", "prime": "amzn-1", "cj": "CJ-L-1"}, {"occ": "o9", "cj": "9"}],
    )
    assert put.status == 200, await put.text()
    assert orjson.loads(await put.read()) == {"status": "linked", "links": 2}
    assert await pipeline.store.linked_order("prime", "amzn-1", "cj") == "CJ-L-1"
    assert await pipeline.store.linked_order("cj", "9", "occ") == "o9"
    for bad, detail in [
        (b'{"shoplazza": "1"}', "two platforms"),
        (b'{"shoplaza": "1", "cj": "2"}', "unknown platform"),
        (b'{"shoplazza": "", "cj": "2"}', "shoplazza"),
        (b"not json", "body"),
        (b'[{"cj": "1", "occ": "2"}, {"cj": 3, "occ": "4"}]', "1.cj"),
    ]:
        refused = await client.put("/api/links", headers=AUTH, data=bad)
        answer = orjson.loads(await refused.read())
        assert refused.status == 400, (bad, answer)
        assert answer["error"] == "invalid_links"
        assert detail in answer["detail"], (bad, answer)
