"""The OCC backstop: a cancellation no webhook announced is found on OCC and declined at CJ once.

The bridge (receiver and CJ worker, in this process, on each store engine) with `[sources.occ]`
and `[targets.occ]` (the admin host and application key the backstop logs in with) pointing at
a fake OCC admin API that lists orders as Oracle documents it (`tests/fakes/occ.py`): one order
is `REMOVED` with no webhook, one came by webhook, one is open, one was cancelled long ago.
The backstop publishes the first only; CJ declines it once; a second poll finds nothing. When
the tenant refuses `lastModifiedDate` in a query, the sliding window by `submittedDate` finds
it all the same. Pages are followed, rows the overlap re-reads counted once.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import orjson
import pytest
from aio_pika.abc import AbstractRobustConnection

from bridge.amqp.messages import BACKSTOP_HEADER
from bridge.backstop.occ_pages import PAGE_SIZE
from bridge.backstop.poller import Backstop, OCCAccess, ShopPoll, occ_tenant
from bridge.backstop.schedule import poll_occ_once, scheduled, watermark_name
from bridge.demo.fake_cj import TOKEN, FakeCJ
from bridge.settings import Config, parse_settings, resolve
from contracts.events import Source, event_id_for
from handlers.occ import sign
from tests.fakes.occ import FakeOCC
from tests.harness.broker import listening, receive
from tests.harness.pipeline import OCC_SECRET, SETTLE_TIMEOUT, RunningBridge, running_bridge
from tests.harness.receiver import ClientFactory, publisher_of
from tests.harness.stores import store_section

SITE = "siteUS"
APP_KEY = "occ-backstop-application-key"
NOW = datetime.now(UTC).replace(microsecond=0)
DAY = timedelta(days=1)


def backstop_config(amqp_url: str, cj_url: str, occ_url: str, database_url: str) -> Config:
    """OCC routed to CJ; `[targets.occ]` gives the backstop the admin host and its login."""
    store, store_env = store_section(database_url)
    settings = parse_settings(
        {
            "broker": {"confirm_timeout": 2.0, "reconnect_interval": 0.2},
            "sources": {"occ": {"secret_env": "OCC_WEBHOOK_SECRET"}},
            "targets": {
                "cj": {
                    "url": cj_url,
                    "enterprise_id": "1",
                    "action_tracker_id": 2,
                    "open_ended_locking": True,
                    "order_id_from": "order_id",
                    "timeout": "2s",
                },
                "occ": {"base_url": occ_url, "app_key_env": "OCC_APP_KEY", "timeout": "2s"},
            },
            "routes": {"occ": ["cj"]},
            "worker": {"retry_delays": [0.2, 0.4], "retry_total": 60},
            "store": store,
        }
    )
    return resolve(settings, ENV | {"AMQP_URL": amqp_url} | store_env)


ENV = {"OCC_WEBHOOK_SECRET": OCC_SECRET, "CJ_ACCESS_TOKEN": TOKEN, "OCC_APP_KEY": APP_KEY}


@dataclass
class Setup:
    """The bridge, its configuration, the OCC tenant it can list, and the two fakes."""

    bridge: RunningBridge
    config: Config
    tenant: OCCAccess
    occ: FakeOCC
    cj: FakeCJ

    def backstop(self, *, dry_run: bool = False) -> Backstop:
        """The backstop with the receiver's publisher (none in a dry run)."""
        publisher = None if dry_run else publisher_of(self.bridge.client)
        return Backstop(self.config, self.bridge.store, publisher, self.bridge.metrics)

    async def poll(self, *, dry_run: bool = False, since: timedelta = DAY) -> ShopPoll:
        """One poll of the last `since`; its list must not fail."""
        async with aiohttp.ClientSession() as session:
            poll = await self.backstop(dry_run=dry_run).poll_occ(
                self.tenant, NOW - since, datetime.now(UTC), session
            )
        assert poll.error is None
        return poll

    async def webhook(self, order_id: str) -> None:
        """OCC's Cancel Order webhook for `order_id`, signed, answered 200 `accepted`."""
        body = orjson.dumps({"order": {"id": order_id, "state": "REMOVED"}})
        headers = {"X-Oracle-CC-WebHook-Signature": sign(body, OCC_SECRET), "x-ccsite": SITE}
        answer = await self.bridge.client.post("/webhooks/occ", data=body, headers=headers)
        assert (answer.status, (await answer.json())["status"]) == (200, "accepted")

    async def delivered(self, count: int) -> None:
        """Await the CJ worker's `count`th delivery."""
        async with asyncio.timeout(SETTLE_TIMEOUT):
            await self.bridge.workers["cj"].wait_outcomes("delivered", count)


@pytest.fixture
async def setup(
    aiohttp_client: ClientFactory,
    amqp_url: str,
    amqp: AbstractRobustConnection,
    cj: FakeCJ,
    database_url: str,
) -> AsyncIterator[Setup]:
    occ = FakeOCC(app_key=APP_KEY)
    await occ.start()
    config = backstop_config(amqp_url, cj.url, occ.url, database_url)
    tenant = occ_tenant(config, ENV)
    assert tenant is not None
    try:
        async with running_bridge(aiohttp_client, amqp_url, amqp, config, ["cj"]) as bridge:
            yield Setup(bridge, config, tenant, occ, cj)
    finally:
        await occ.stop()


def plant_the_four(occ: FakeOCC) -> None:
    """Missed (no webhook), webhooked, open, and cancelled three days ago."""
    submitted, recent = NOW - 3 * DAY, NOW - timedelta(minutes=30)
    occ.plant(SITE, "missed-1", "REMOVED", submitted, modified=recent, reason="changeOfMind")
    occ.plant(SITE, "webhooked-1", "REMOVED", submitted, modified=recent)
    occ.plant(SITE, "open-1", "SUBMITTED", submitted, modified=recent)
    occ.plant(SITE, "old-1", "REMOVED", NOW - 5 * DAY, modified=submitted)


async def test_a_removed_order_no_webhook_announced_is_declined_at_cj_once(setup: Setup) -> None:
    plant_the_four(setup.occ)
    await setup.webhook("webhooked-1")
    await setup.delivered(1)

    dry = await setup.poll(dry_run=True)
    assert [(f.order_id, f.published) for f in dry.found] == [("missed-1", False)]
    assert (dry.listed, dry.query) == (2, "lastModifiedDate")
    assert len(setup.cj.calls) == 1  # a dry run publishes nothing

    found = (await setup.poll()).found
    assert [(f.shop, f.order_id, f.published) for f in found] == [(SITE, "missed-1", True)]
    await setup.delivered(2)
    assert len(setup.cj.calls_for("missed-1")) == 1
    assert len(setup.cj.calls_for("webhooked-1")) == 1
    assert setup.cj.calls_for("open-1") == setup.cj.calls_for("old-1") == []
    registry = setup.bridge.metrics.registry
    assert registry.get_sample_value("cancel_bridge_backstop_found_total", {"source": "occ"}) == 1

    assert (await setup.poll()).found == []  # seen now: nothing twice
    event_id = str(event_id_for(Source.OCC, SITE, "missed-1"))
    assert await setup.bridge.store.known_events([event_id]) == {event_id}
    assert setup.occ.logins == 3  # one a poll: a token lasts 5 minutes, polls come every 15
    for query in setup.occ.lists:
        assert query["queryFormat"] == "SCIM"
        assert query["q"].startswith('state eq "REMOVED" and lastModifiedDate gt "')


async def test_when_occ_refuses_last_modified_date_a_window_finds_it(setup: Setup) -> None:
    """The fallback: `submittedDate ge now - occ_lookback`; the store says what is new."""
    setup.occ.last_modified_queryable = False
    plant_the_four(setup.occ)
    # Submitted long ago, cancelled now: outside the 14-day window, a documented blind spot.
    setup.occ.plant(SITE, "ancient-1", "REMOVED", NOW - 30 * DAY, modified=NOW - timedelta(hours=1))
    await setup.webhook("webhooked-1")
    await setup.delivered(1)

    poll = await setup.poll()
    assert poll.query == "submittedDate"
    assert [f.order_id for f in poll.found] == ["missed-1"]  # old-1: modified before `since`
    await setup.delivered(2)
    assert len(setup.cj.calls_for("missed-1")) == 1
    refused, window = setup.occ.lists[:2]
    assert "lastModifiedDate" in refused["q"]
    assert window["q"].startswith('state eq "REMOVED" and submittedDate ge "')
    lookback = timedelta(seconds=setup.config.settings.backstop.occ_lookback)
    start = datetime.fromisoformat(window["q"].split('"')[3])
    assert abs(start - (NOW - lookback)) < timedelta(minutes=1)

    again = await setup.poll()  # every poll falls back, and finds nothing new
    assert (again.query, again.found, again.listed) == ("submittedDate", [], 2)
    assert len(setup.cj.calls_for("missed-1")) == 1


async def test_pages_are_followed_and_overlapping_rows_counted_once(setup: Setup) -> None:
    count = 2 * PAGE_SIZE - 5  # three pages: 0-249, 240-489, 480-494
    for n in range(count):
        setup.occ.plant(SITE, f"bulk-{n}", "REMOVED", NOW - DAY, modified=NOW - timedelta(hours=1))
    poll = await setup.poll(dry_run=True)
    assert len(poll.found) == poll.listed == count
    assert len({f.order_id for f in poll.found}) == count
    assert poll.pages == 3
    assert [query["offset"] for query in setup.occ.lists] == ["0", "240", "480"]


async def test_the_backstop_header_marks_what_it_published(
    setup: Setup, amqp: AbstractRobustConnection
) -> None:
    queue = await listening(amqp, "order.cancelled.occ")
    setup.occ.plant(SITE, "marked-1", "REMOVED", NOW - DAY, modified=NOW - timedelta(minutes=1))
    await setup.poll()
    message = await receive(queue)
    assert message.headers[BACKSTOP_HEADER] is True
    assert message.message_id == str(event_id_for(Source.OCC, SITE, "marked-1"))


async def test_the_schedule_polls_occ_from_its_watermark(setup: Setup) -> None:
    modified = NOW - timedelta(minutes=20)
    then = NOW - timedelta(hours=1)  # the first poll: before the order's update (clocks differ)
    setup.occ.plant(SITE, "early-1", "REMOVED", NOW - DAY, modified=modified)
    name = watermark_name(setup.tenant.name, "occ")
    async with aiohttp.ClientSession() as session:
        first = await poll_occ_once(setup.backstop(dry_run=True), setup.tenant, session, then)
        assert [f.order_id for f in first.found] == ["early-1"]
        assert await setup.bridge.store.watermark(name) == modified
        setup.occ.app_key = "revoked"  # no login: the list fails, the watermark stays
        setup.occ.expire_all()
        failed = await poll_occ_once(setup.backstop(dry_run=True), setup.tenant, session, NOW)
        assert failed.error == "login: occ login refused the credentials (HTTP 401)"
        assert await setup.bridge.store.watermark(name) == modified
        setup.occ.app_key = APP_KEY
        again = await poll_occ_once(setup.backstop(dry_run=True), setup.tenant, session, NOW)
        assert [f.order_id for f in again.found] == ["early-1"]  # a dry run published nothing
        assert await setup.bridge.store.watermark(name) == NOW  # nothing newer: the start
    overlap = timedelta(seconds=setup.config.settings.backstop.overlap)
    asked = setup.occ.lists[-1]["q"]
    assert f'lastModifiedDate gt "{(modified - overlap).isoformat()[:19]}' in asked

    # removed after the last poll's start: the schedule's poll (from NOW less the overlap)
    setup.occ.plant(SITE, "later-1", "REMOVED", NOW - DAY, modified=NOW + timedelta(seconds=1))
    publisher = publisher_of(setup.bridge.client)
    async with scheduled(
        setup.config, ENV, setup.bridge.store, publisher, setup.bridge.metrics
    ):  # OCC alone: no Shoplazza store is configured
        await setup.delivered(1)
    assert len(setup.cj.calls_for("later-1")) == 1
    assert not setup.cj.calls_for("early-1")  # before the watermark less the overlap


def test_without_the_application_key_or_the_source_there_is_nothing_to_poll() -> None:
    config = backstop_config("amqp://x", "http://cj", "http://occ", "unused.db")
    assert occ_tenant(config, ENV) is not None
    assert occ_tenant(config, {**ENV, "OCC_APP_KEY": " "}) is None
    no_source = parse_settings(
        {
            "sources": {"shoplazza": {"secret_env": "OCC_WEBHOOK_SECRET"}},
            "targets": {"occ": {"base_url": "https://occ.example"}},
        }
    )
    assert occ_tenant(resolve(no_source, ENV | {"AMQP_URL": "amqp://x"}), ENV) is None
    sites = parse_settings(
        {
            "sources": {"occ": {"secret_env": "OCC_WEBHOOK_SECRET", "sites": ["siteUS", "siteCA"]}},
            "targets": {"occ": {"base_url": "https://occ.example", "app_key_env": "OCC_APP_KEY"}},
        }
    )
    listed = occ_tenant(resolve(sites, ENV | {"AMQP_URL": "amqp://x"}), ENV)
    assert listed is not None
    assert listed.sites == ("siteUS", "siteCA")  # the allowlist: the only sites listed


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_command_lists_occ_in_a_dry_run(database_url: str, tmp_path: Path) -> None:
    """`cancel-bridge backstop --source occ --dry-run`, a real process: exit 3 when found."""
    occ = FakeOCC(app_key=APP_KEY)
    await occ.start()
    occ.plant(SITE, "cli-1", "REMOVED", NOW - DAY, modified=NOW - timedelta(hours=2))
    config = tmp_path / "bridge.toml"
    config.write_text(
        f'[sources.occ]\nsecret_env = "OCC_WEBHOOK_SECRET"\n'
        f'[targets.occ]\nbase_url = "{occ.url}"\n'
        f'[store]\npath = "{database_url}"\n',
        encoding="utf-8",
    )
    args = ["backstop", "--source", "occ", "--since", "6h", "--dry-run", "--config", str(config)]
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge",
            *args,
            env={**ENV, "AMQP_URL": "amqp://guest:guest@127.0.0.1:1/"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(SETTLE_TIMEOUT):
            out, err = await process.communicate()
    finally:
        await occ.stop()
    assert process.returncode == 3, err.decode()
    lines = [orjson.loads(line) for line in out.splitlines() if line.startswith(b"{")]
    (printed,) = [line for line in lines if "listed" in line]
    assert (printed["source"], printed["query"], printed["error"]) == (
        "occ",
        "lastModifiedDate",
        None,
    )
    assert printed["found"] == [
        {
            "order_id": "cli-1",
            "event_id": str(event_id_for(Source.OCC, SITE, "cli-1")),
            "published": False,
        }
    ]
