"""The backstop: a cancellation no webhook announced is found on Shoplazza and declined at CJ once.

The bridge (receiver and CJ worker, in this process) with `[targets.shoplazza]` access to a fake
store that lists its orders as Shoplazza's Open API documents them (`tests/fakes/shoplazza.py`):
one order is cancelled there with no webhook, one came by webhook, one is not cancelled. The
backstop publishes the first only, marked `x-cancel-bridge-backstop`; CJ declines it once; a
second poll finds nothing; a dry run lists without publishing; pages are followed in both API
versions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from aio_pika.abc import AbstractRobustConnection

from bridge.amqp.messages import BACKSTOP_HEADER
from bridge.backstop import shoplazza_pages
from bridge.backstop.poller import Backstop, Found, shoplazza_stores
from bridge.backstop.schedule import poll_once, scheduled, watermark_name
from bridge.backstop.shoplazza_pages import PAGE_SIZE
from bridge.backstop.subscriptions import StoreHealth, check_stores
from bridge.demo.fake_cj import TOKEN, FakeCJ
from bridge.settings import Config, parse_settings, resolve
from contracts.events import Source, event_id_for
from contracts.timestamps import utc_z
from tests.fakes.shoplazza import FakeShoplazza
from tests.harness.broker import listening, receive
from tests.harness.pipeline import SETTLE_TIMEOUT, RunningBridge, running_bridge
from tests.harness.receiver import SECRET, ClientFactory, publisher_of, shoplazza_webhook
from tests.harness.stores import scratch_store

SHOP = "backstop.myshoplaza.com"
SHOP_TOKEN = "shoplazza-backstop-token"
ADDRESS = "https://bridge.example.com/webhooks/shoplazza"
NOW = datetime.now(UTC).replace(microsecond=0)  # Shoplazza's times are whole seconds


def backstop_config(
    amqp_url: str, cj_url: str, shoplazza_url: str, version: str
) -> tuple[Config, dict[str, str]]:
    """Shoplazza routed to CJ; `[targets.shoplazza]` gives the backstop the store's token."""
    settings = parse_settings(
        {
            "broker": {"confirm_timeout": 2.0, "reconnect_interval": 0.2},
            "sources": {
                "shoplazza": {
                    "secret_env": "SHOPLAZZA_SECRET",
                    "shops": [SHOP],
                    "webhook_url": ADDRESS,
                }
            },
            "targets": {
                "cj": {
                    "url": cj_url,
                    "enterprise_id": "1",
                    "action_tracker_id": 2,
                    "open_ended_locking": True,
                    "order_id_from": "order_id",
                    "timeout": "2s",
                },
                "shoplazza": {
                    "shops": {
                        SHOP: {
                            "token_env": "SL_TOKEN",
                            "base_url": f"{shoplazza_url}/{SHOP}",
                            "api_version": version,
                        }
                    },
                },
            },
            "routes": {"shoplazza": ["cj"]},
            "worker": {"retry_delays": [0.2, 0.4], "retry_total": 60},
            "store": {"path": scratch_store()},
        }
    )
    env = {
        "AMQP_URL": amqp_url,
        "SHOPLAZZA_SECRET": SECRET,
        "CJ_ACCESS_TOKEN": TOKEN,
        "SL_TOKEN": SHOP_TOKEN,
    }
    return resolve(settings, env), env


@dataclass
class Setup:
    """The bridge, its configuration and environment, and the two fakes."""

    bridge: RunningBridge
    config: Config
    env: dict[str, str]
    shoplazza: FakeShoplazza
    cj: FakeCJ

    def backstop(self, *, dry_run: bool = False) -> Backstop:
        """The backstop with the receiver's publisher (none in a dry run)."""
        publisher = None if dry_run else publisher_of(self.bridge.client)
        return Backstop(self.config, self.bridge.store, publisher, self.bridge.metrics)

    async def poll(self, *, dry_run: bool = False) -> list[Found]:
        """One poll of the last 24 hours; what it found (no store's list may fail)."""
        stores = shoplazza_stores(self.config, self.env)
        async with aiohttp.ClientSession() as session:
            polls = await self.backstop(dry_run=dry_run).poll_shoplazza(
                stores, NOW - timedelta(hours=24), datetime.now(UTC), session
            )
        assert [poll.error for poll in polls] == [None]
        return list(polls[0].found)


@pytest.fixture(params=["2022-01", "2026-01"])
async def setup(
    request: pytest.FixtureRequest,
    aiohttp_client: ClientFactory,
    amqp_url: str,
    amqp: AbstractRobustConnection,
    cj: FakeCJ,
) -> AsyncIterator[Setup]:
    shoplazza = FakeShoplazza(tokens={SHOP: SHOP_TOKEN})
    await shoplazza.start()
    config, env = backstop_config(amqp_url, cj.url, shoplazza.url, request.param)
    try:
        async with running_bridge(aiohttp_client, amqp_url, amqp, config, ["cj"]) as bridge:
            yield Setup(bridge, config, env, shoplazza, cj)
    finally:
        await shoplazza.stop()


async def test_a_cancellation_no_webhook_announced_is_declined_at_cj_once(setup: Setup) -> None:
    recent = NOW - timedelta(minutes=30)
    setup.shoplazza.plant(SHOP, "missed-1", "cancelled", recent)  # its webhook never came
    setup.shoplazza.plant(SHOP, "webhooked-1", "cancelled", recent)
    setup.shoplazza.plant(SHOP, "open-1", "placed", recent)
    setup.shoplazza.plant(SHOP, "old-1", "cancelled", NOW - timedelta(days=3))  # before `since`
    hook = shoplazza_webhook({"id": "webhooked-1"}, shop=SHOP)
    answer = await setup.bridge.client.post(
        "/webhooks/shoplazza", data=hook.body, headers=hook.headers
    )
    assert answer.status == 200
    worker = setup.bridge.workers["cj"]
    async with asyncio.timeout(SETTLE_TIMEOUT):
        await worker.wait_outcomes("delivered", 1)

    assert [f.order_id for f in await setup.poll(dry_run=True)] == ["missed-1"]
    assert len(setup.cj.calls) == 1  # a dry run publishes nothing

    found = await setup.poll()
    assert [(f.order_id, f.published) for f in found] == [("missed-1", True)]
    async with asyncio.timeout(SETTLE_TIMEOUT):
        await worker.wait_outcomes("delivered", 2)
    assert len(setup.cj.calls_for("missed-1")) == 1
    assert len(setup.cj.calls_for("webhooked-1")) == 1
    assert setup.cj.calls_for("open-1") == []
    registry = setup.bridge.metrics.registry
    assert (
        registry.get_sample_value("cancel_bridge_backstop_found_total", {"source": "shoplazza"})
        == 1
    )

    assert await setup.poll() == []  # seen now: nothing twice
    history = await setup.bridge.store.known_events(
        [str(event_id_for(Source.SHOPLAZZA, SHOP, "missed-1"))]
    )
    assert history == {str(event_id_for(Source.SHOPLAZZA, SHOP, "missed-1"))}
    lists = [query for shop, query in setup.shoplazza.lists if shop == SHOP]
    assert all(query["status"] == "cancelled" and "updated_at_min" in query for query in lists)


async def test_pages_are_followed_to_the_end(setup: Setup) -> None:
    recent = NOW - timedelta(minutes=5)
    for n in range(PAGE_SIZE + 3):
        setup.shoplazza.plant(SHOP, f"bulk-{n}", "cancelled", recent)
    found = await setup.poll(dry_run=True)
    assert len(found) == PAGE_SIZE + 3
    assert len([1 for shop, _ in setup.shoplazza.lists if shop == SHOP]) == 2


async def test_a_poll_cut_short_at_the_page_limit_keeps_its_place(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past `MAX_PAGES` the poll stops; its watermark is the newest update listed, not its start."""
    monkeypatch.setattr(shoplazza_pages, "MAX_PAGES", 1)
    for n in range(PAGE_SIZE + 3):
        minutes = PAGE_SIZE + 3 - n  # bulk-0 oldest
        setup.shoplazza.plant(SHOP, f"bulk-{n}", "cancelled", NOW - timedelta(minutes=minutes))
    stores = shoplazza_stores(setup.config, setup.env)
    async with aiohttp.ClientSession() as session:
        (poll,) = await poll_once(setup.backstop(dry_run=True), stores, session, NOW)
    assert poll.truncated
    assert poll.pages == 1
    assert poll.error is None
    mark = await setup.bridge.store.watermark(watermark_name(SHOP))
    assert mark is not None
    assert mark < NOW  # where the list got to: the next poll goes on from there


async def test_the_backstop_header_marks_what_it_published(
    setup: Setup, amqp: AbstractRobustConnection
) -> None:
    queue = await listening(amqp, "order.cancelled.shoplazza")
    setup.shoplazza.plant(SHOP, "marked-1", "cancelled", NOW - timedelta(minutes=1))
    await setup.poll()
    message = await receive(queue)
    assert message.headers[BACKSTOP_HEADER] is True
    assert message.message_id == str(event_id_for(Source.SHOPLAZZA, SHOP, "marked-1"))


async def test_each_poll_starts_at_the_watermark_less_the_overlap(setup: Setup) -> None:
    """The watermark: the newest update listed, or the poll's start when that is later."""
    first_update = NOW - timedelta(minutes=30)
    then = NOW - timedelta(hours=1)  # the first poll: before the order's update (clocks differ)
    setup.shoplazza.plant(SHOP, "early-1", "cancelled", first_update)
    stores = shoplazza_stores(setup.config, setup.env)
    backstop = setup.backstop(dry_run=True)
    async with aiohttp.ClientSession() as session:
        (first,) = await poll_once(backstop, stores, session, then)
        assert [f.order_id for f in first.found] == ["early-1"]
        assert await setup.bridge.store.watermark(watermark_name(SHOP)) == first_update
        setup.shoplazza.tokens[SHOP] = "revoked"  # the list fails: the watermark stays
        (failed,) = await poll_once(backstop, stores, session, NOW)
        assert failed.error == "order list answered 401"
        assert await setup.bridge.store.watermark(watermark_name(SHOP)) == first_update
        setup.shoplazza.tokens[SHOP] = SHOP_TOKEN
        (again,) = await poll_once(backstop, stores, session, NOW)
        # nothing newer than the poll's start: the watermark is the start, so a quiet store's
        # next window is `overlap` long, not everything since its first poll
        assert await setup.bridge.store.watermark(watermark_name(SHOP)) == NOW
        await poll_once(backstop, stores, session, NOW + timedelta(minutes=15))
    overlap = timedelta(seconds=setup.config.settings.backstop.overlap)
    first_window = timedelta(seconds=setup.config.settings.backstop.first_window)
    asked = [query["updated_at_min"] for shop, query in setup.shoplazza.lists if shop == SHOP]
    assert asked[0] == utc_z(then - first_window, "seconds")
    assert asked[-2] == utc_z(first_update - overlap, "seconds")
    assert asked[-1] == utc_z(NOW - overlap, "seconds")
    assert [f.order_id for f in again.found] == ["early-1"]  # a dry run published nothing


async def test_run_polls_on_its_schedule(setup: Setup) -> None:
    setup.shoplazza.plant(SHOP, "scheduled-1", "cancelled", NOW - timedelta(minutes=2))
    publisher = publisher_of(setup.bridge.client)
    async with scheduled(
        setup.config, setup.env, setup.bridge.store, publisher, setup.bridge.metrics
    ):
        async with asyncio.timeout(SETTLE_TIMEOUT):
            await setup.bridge.workers["cj"].wait_outcomes("delivered", 1)
    assert len(setup.cj.calls_for("scheduled-1")) == 1


async def subscription_health(setup: Setup, *, ensure: bool) -> StoreHealth:
    """The store's verdict from `subscriptions check` (or `ensure`)."""
    stores = shoplazza_stores(setup.config, setup.env)
    async with aiohttp.ClientSession() as session:
        (verdict,) = await check_stores(
            stores, ADDRESS, setup.bridge.metrics, session, ensure=ensure
        )
    return verdict


def subscribed(setup: Setup) -> float | None:
    """The `cancel_bridge_subscription_ok` gauge of the store."""
    labels = {"source": "shoplazza", "shop": SHOP}
    value: float | None = setup.bridge.metrics.registry.get_sample_value(
        "cancel_bridge_subscription_ok", labels
    )
    return value


async def test_a_missing_subscription_is_reported_then_created(setup: Setup) -> None:
    """Shoplazza deletes a subscription after 19 failed deliveries: check says so, ensure fixes."""
    setup.shoplazza.subscribe(SHOP, "https://someone-else.example/hook")  # not ours: left alone
    setup.shoplazza.subscribe(SHOP, ADDRESS, topic="orders/create")
    missing = await subscription_health(setup, ensure=False)
    assert (missing.state, missing.ours, missing.error) == ("missing", [], None)
    assert missing.elsewhere == ["https://someone-else.example/hook"]
    assert subscribed(setup) == 0
    assert len(setup.shoplazza.webhooks[SHOP]) == 2  # a check changes nothing

    created = await subscription_health(setup, ensure=True)
    assert created.state == "created"
    assert subscribed(setup) == 1
    new = setup.shoplazza.webhooks[SHOP][-1]
    assert (new["address"], new["topic"]) == (ADDRESS, "orders/cancelled")

    again = await subscription_health(setup, ensure=True)  # nothing created twice
    assert (again.state, again.ours) == ("ok", [new["id"]])
    assert len(setup.shoplazza.webhooks[SHOP]) == 3


async def test_a_duplicated_subscription_is_reported_and_left(setup: Setup) -> None:
    setup.shoplazza.subscribe(SHOP, ADDRESS)
    setup.shoplazza.subscribe(SHOP, ADDRESS + "/")  # the same address, written otherwise
    verdict = await subscription_health(setup, ensure=True)
    assert verdict.state == "duplicated"
    assert len(verdict.ours) == 2
    assert subscribed(setup) == 0
    assert len(setup.shoplazza.webhooks[SHOP]) == 2  # ensure deletes nothing


async def test_a_refused_token_is_an_error_not_a_verdict(setup: Setup) -> None:
    setup.shoplazza.tokens[SHOP] = "revoked"
    verdict = await subscription_health(setup, ensure=True)
    assert (verdict.state, verdict.error) == ("error", "webhook list answered 401")
    assert subscribed(setup) == 0
