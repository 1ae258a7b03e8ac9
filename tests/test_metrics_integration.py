"""Every metric moves on a real flow: receiver, broker, worker, store and the fake CJ."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import replace

import aiohttp
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from bridge.demo.fake_cj import Reply, error_in_200
from bridge.metrics import Metrics
from bridge.settings import ConfigError, parse_settings, resolve
from bridge.web.metrics_page import serve_metrics
from tests.harness.pipeline import Client, Pipeline
from tests.harness.receiver import ClientFactory, make_config, shoplazza_webhook, started

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    """Every sample of an exposition, by name and labels."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, frozenset(sample.labels.items())] = sample.value
    return found


def value(found: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when the series does not exist yet)."""
    return found.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: Client) -> Samples:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return samples(await response.text())


async def test_an_accepted_webhook_moves_every_metric_on_its_way(pipeline: Pipeline) -> None:
    """Webhook counted, publish confirmed and timed, store batches timed, CJ call and delivery."""
    before = await scrape(pipeline.client)
    order = await pipeline.post()
    await pipeline.settled("delivered")
    assert len(pipeline.cj.calls_for(order)) == 1
    after = await scrape(pipeline.client)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    webhook = {"source": "shoplazza", "status": "200", "outcome": "accepted"}
    assert grew("cancel_bridge_webhooks_total", **webhook) == 1
    confirmed = {"destination": "orders", "result": "confirmed"}
    assert grew("cancel_bridge_publish_confirm_seconds_count", **confirmed) == 1
    assert grew("cancel_bridge_publish_confirm_seconds_sum", **confirmed) > 0
    assert grew("cancel_bridge_deliveries_total", target="cj", outcome="delivered") == 1
    assert grew("cancel_bridge_target_call_seconds_count", target="cj", result="2xx") == 1
    for operation in ("arrive", "claim", "finish"):
        labels = {"operation": operation, "result": "ok"}
        assert grew("cancel_bridge_store_seconds_count", **labels) >= 1, operation
        assert grew("cancel_bridge_store_batch_size_sum", operation=operation) >= 1, operation


async def test_refusals_count_by_source_status_and_error_code(pipeline: Pipeline) -> None:
    """A bad signature and an unknown source are counted with their answer's code."""
    before = await scrape(pipeline.client)
    hook = shoplazza_webhook()
    forged = {**hook.headers, "X-Shoplazza-Hmac-Sha256": "bm90IGl0"}
    response = await pipeline.client.post("/webhooks/shoplazza", data=hook.body, headers=forged)
    assert response.status == 401
    nowhere = f"/webhooks/nosuch-{uuid.uuid4().hex[:6]}"  # a client's word: never a label
    response = await pipeline.client.post(nowhere, data=hook.body, headers=hook.headers)
    assert response.status == 404
    after = await scrape(pipeline.client)
    bad = {"source": "shoplazza", "status": "401", "outcome": "bad_signature"}
    unknown = {"source": "unknown", "status": "404", "outcome": "unknown_source"}
    for labels in (bad, unknown):
        grew = value(after, "cancel_bridge_webhooks_total", **labels) - value(
            before, "cancel_bridge_webhooks_total", **labels
        )
        assert grew == 1, labels
    assert not any("nosuch" in str(key) for key in after)


async def test_retries_and_parks_show_in_deliveries_and_queue_depths(pipeline: Pipeline) -> None:
    """A 503 from CJ is a retry (5xx call, retry queue), a refusal parks (parked depth)."""
    retried = f"metrics-retry-{uuid.uuid4().hex[:6]}"
    parked = f"metrics-park-{uuid.uuid4().hex[:6]}"
    pipeline.cj.script[retried] = [Reply(status=503, body={"message": "busy"})]
    pipeline.cj.script[parked] = [error_in_200("Order not found for tracker")]
    await pipeline.post(id=retried)
    await pipeline.settled("retried")
    await pipeline.settled("delivered")  # the retry, after the first delay
    await pipeline.post(id=parked)
    await pipeline.settled("parked")
    async with asyncio.timeout(10):
        await pipeline.worker.wait_depths()
    found = await scrape(pipeline.client)
    assert value(found, "cancel_bridge_deliveries_total", target="cj", outcome="retried") == 1
    assert value(found, "cancel_bridge_deliveries_total", target="cj", outcome="parked") == 1
    assert value(found, "cancel_bridge_target_call_seconds_count", target="cj", result="5xx") == 1
    to_retry = {"destination": "retry", "result": "confirmed"}
    assert value(found, "cancel_bridge_publish_confirm_seconds_count", **to_retry) == 1
    to_park = {"destination": "parked", "result": "confirmed"}
    assert value(found, "cancel_bridge_publish_confirm_seconds_count", **to_park) == 1
    assert value(found, "cancel_bridge_queue_messages", target="cj", queue="parked") == 1
    read_at = value(found, "cancel_bridge_queue_messages_read_timestamp_seconds", target="cj")
    assert time.time() - 60 < read_at <= time.time()  # fresh: alerts can tell stale depths
    for empty in ("retry", "work"):  # read and reported, not just absent
        labels = frozenset({"target": "cj", "queue": empty}.items())
        assert found[("cancel_bridge_queue_messages", labels)] == 0, empty


async def test_readyz_reports_broker_and_store(pipeline: Pipeline) -> None:
    """Both up: 200 with each named (the store's outage: tests/test_store_outage_integration)."""
    response = await pipeline.client.get("/readyz")
    assert response.status == 200
    assert orjson.loads(await response.read()) == {
        "status": "ready",
        "broker": "up",
        "store": "up",
        "spooled": 0,
    }


METRICS_TOKEN = "metrics-token-0123456789abcdef"


async def test_a_metrics_token_is_required_once_configured(
    aiohttp_client: ClientFactory, amqp_url: str
) -> None:
    """With `[metrics] token_env`, `/metrics` answers 401 JSON without the bearer token."""
    config = replace(make_config(amqp_url), metrics_token=SecretStr(METRICS_TOKEN))
    client = await started(aiohttp_client, config)
    response = await client.get("/metrics")
    assert response.status == 401
    answer = orjson.loads(await response.read())
    assert answer["error"] == "unauthorized"
    assert METRICS_TOKEN not in str(answer)
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status == 401
    right = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    response = await client.get("/metrics", headers=right)
    assert response.status == 200
    assert "cancel_bridge_webhooks_total" in await response.text()


def test_the_metrics_token_comes_from_its_variable_and_must_be_long() -> None:
    """`[metrics] token_env` names the variable; a short token is a configuration error."""
    settings = parse_settings(
        {"sources": {"shoplazza": {"secret_env": "S"}}, "metrics": {"token_env": "CB_METRICS"}}
    )
    config = resolve(settings, {"S": "secret", "CB_METRICS": METRICS_TOKEN})
    assert config.metrics_token is not None
    assert config.metrics_token.get_secret_value() == METRICS_TOKEN
    with pytest.raises(ConfigError, match=r"metrics\.token_env"):
        resolve(settings, {"S": "secret", "CB_METRICS": "short"})


async def test_metrics_on_a_listener_of_their_own(pipeline: Pipeline) -> None:
    """`[metrics] port`: a registry served on a port of its own (worker processes use it)."""
    metrics = Metrics()
    metrics.deliveries.labels("cj", "delivered").inc(3)
    async with contextlib.AsyncExitStack() as stack:
        port = await serve_metrics(pipeline.config, metrics, 0, stack)
        url = f"http://127.0.0.1:{port}/metrics"
        async with aiohttp.ClientSession() as http, http.get(url) as response:
            assert response.status == 200
            found = samples(await response.text())
    assert value(found, "cancel_bridge_deliveries_total", target="cj", outcome="delivered") == 3
