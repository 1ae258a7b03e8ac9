"""The console in Debian's Chromium (Playwright) against the real pipeline.

A real receiver and CJ worker on the real broker and store, with the fake CJ: the pages load,
search finds an order, and replay from the console delivers a parked cancellation.
Without Chromium these fail under CI=true and skip loudly elsewhere.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, ConsoleMessage, Page, async_playwright, expect

from bridge.amqp import parked, topology
from bridge.demo.fake_cj import error_in_200
from tests.harness.console_browser import CHROMIUM_ARGS, chromium_or_skip
from tests.harness.pipeline import API_TOKEN, SETTLE_TIMEOUT, Pipeline


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless."""
    path = chromium_or_skip()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
def errors() -> list[str]:
    """What the page logged as errors (a test takes out the ones it caused on purpose)."""
    return []


@pytest.fixture
async def page(browser: Browser, pipeline: Pipeline, errors: list[str]) -> AsyncIterator[Page]:
    """A fresh browser context on the pipeline's receiver; no script or CSP error allowed."""
    context = await browser.new_context(base_url=str(pipeline.client.make_url("/")))
    opened = await context.new_page()

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            errors.append(message.text)

    opened.on("console", on_console)
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    await context.close()
    assert errors == []


async def sign_in(page: Page, path: str = "/console") -> None:
    await page.goto(path)
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await page.get_by_label("API token").fill(API_TOKEN)
    await page.get_by_role("button", name="Sign in").click()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def test_pages_load_and_search_finds_an_order(pipeline: Pipeline, page: Page) -> None:
    orders = [await pipeline.post(id=unique("browse")) for _ in range(3)]
    await pipeline.settled("delivered", 3)
    await sign_in(page)
    await expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
    await expect(page.locator('[data-count="totals.events"]')).to_have_text("3")
    await expect(page.locator('[data-count="deliveries_by_state.cj.delivered"]')).to_have_text("3")
    await expect(page.locator('svg[data-chart="shoplazza"] rect')).to_have_count(60)

    await page.get_by_role("link", name="Events", exact=True).click()
    rows = page.locator("table.events tbody tr")
    await expect(rows).to_have_count(3)
    await page.get_by_label("Order id, event id or shop").fill(orders[1])
    await page.get_by_role("button", name="Search").click()
    await expect(rows).to_have_count(1)
    await expect(rows).to_contain_text("cj: delivered")

    await page.get_by_role("link", name=orders[1]).click()
    await expect(page.get_by_role("heading", name=f"Order {orders[1]}")).to_be_visible()
    timeline = page.locator("ol.timeline")
    await expect(timeline).to_contain_text("received from shoplazza")
    await expect(timeline).to_contain_text("cj: accepted, queued for cj")
    await expect(timeline).to_contain_text("cj: attempt 1: delivered")
    assert API_TOKEN not in page.url


async def test_the_overview_refreshes_itself(pipeline: Pipeline, page: Page) -> None:
    await pipeline.post(id=unique("first"))
    await pipeline.settled("delivered")
    await page.clock.install()
    await sign_in(page)
    total = page.locator('[data-count="totals.events"]')
    await expect(total).to_have_text("1")
    await pipeline.post(id=unique("second"))
    await pipeline.settled("delivered", 2)
    await page.clock.run_for(11_000)  # past the page's 10 s refresh: it fetches the JSON
    await expect(total).to_have_text("2")
    await expect(page.locator('[data-count="deliveries_by_state.cj.delivered"]')).to_have_text("2")


async def test_replay_from_the_console_delivers_a_parked_cancellation(
    pipeline: Pipeline, page: Page
) -> None:
    order = unique("replay")
    pipeline.cj.script[order] = [error_in_200("Invalid actionTrackerId")]  # then it accepts
    await pipeline.post(id=order)
    await pipeline.settled("parked")
    await sign_in(page)
    await expect(page.locator('[data-count="totals.parked"]')).to_have_text("1")

    await page.get_by_role("link", name="Parked", exact=True).click()
    await page.get_by_role("link", name=order).click()
    cj = page.locator('.delivery[data-target="cj"]')
    await expect(cj).to_contain_text("cj: Invalid actionTrackerId")
    await page.get_by_role("link", name="Replay…").click()
    await expect(
        page.get_by_role("heading", name="Replay this cancellation for cj?")
    ).to_be_visible()
    assert len(pipeline.cj.calls_for(order)) == 1  # the confirmation step moved nothing
    await page.get_by_role("button", name="Replay now").click()
    await expect(page.locator(".flash")).to_contain_text("Replayed to cancel-bridge.cj")

    async with asyncio.timeout(SETTLE_TIMEOUT):
        await pipeline.cj.wait_calls(2)  # the fake CJ is asked again, for that order
    assert [call.order["orderId"] for call in pipeline.cj.calls] == [order, order]
    await pipeline.settled("delivered")
    await page.reload()
    await expect(cj.locator(".badge")).to_have_text("delivered")
    timeline = page.locator("ol.timeline")
    await expect(timeline).to_contain_text("replayed from the parked queue")  # who did what
    await expect(timeline).to_contain_text("cj: attempt 2: delivered")
    await expect(page.locator(".flash")).to_have_count(0)  # said once


async def test_drop_asks_first_then_deletes_the_parked_message(
    pipeline: Pipeline, page: Page, amqp_url: str
) -> None:
    order = unique("drop")
    pipeline.cj.script[order] = [error_in_200("Order not found")]
    await pipeline.post(id=order)
    await pipeline.settled("parked")
    queue = topology.parked_queue("cj")
    await sign_in(page, f"/console/events?q={order}")
    await page.get_by_role("link", name=order).click()
    event_page = page.url

    await page.get_by_role("link", name="Drop…").click()
    await expect(page.get_by_text("This cannot be undone.")).to_be_visible()
    await page.get_by_role("link", name="Cancel", exact=True).click()
    assert page.url == event_page
    assert len(await parked.list_rows(amqp_url, queue, time.time())) == 1  # still parked

    await page.get_by_role("link", name="Drop…").click()
    await page.get_by_role("button", name="Drop for good").click()
    await expect(page.locator(".flash")).to_contain_text("Dropped from cancel-bridge.cj.parked")
    await expect(page.locator("ol.timeline")).to_contain_text("dropped from the parked queue")
    assert await parked.list_rows(amqp_url, queue, time.time()) == []
    assert len(pipeline.cj.calls_for(order)) == 1


async def test_sign_in_cookie_and_sign_out(page: Page, errors: list[str]) -> None:
    await page.goto("/console")
    await page.get_by_label("API token").fill("not-the-token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_have_text("That is not the API token.")
    assert errors, "Chromium reports the form's 401"
    assert all("401" in error for error in errors)
    errors.clear()
    await page.get_by_label("API token").fill(API_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()
    [session] = [c for c in await page.context.cookies() if c["name"] == "cb_console"]
    assert (session["httpOnly"], session["sameSite"], session["path"]) == (
        True,
        "Strict",
        "/console",
    )
    assert API_TOKEN not in session["value"]

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.locator(".flash")).to_have_text("Signed out.")
    await page.goto("/console/events")
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
