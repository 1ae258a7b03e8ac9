# A script run by its path, not a module of a package:
# ruff: noqa: INP001
"""The console's screenshots for the README, from a run of the real bridge.

    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/<dev vhost> .venv/bin/python docs/screenshots.py

Starts a fake CJ, the receiver and the CJ worker on the broker in `AMQP_URL` with a scratch
SQLite store, and sends signed Shoplazza webhooks through them: most are delivered, one is
retried and delivered, one is retried and then parked. The hour before is seeded into the store
through its own API (arrivals and outcomes at past times), so the overview's chart has an hour
to show. Debian's Chromium (Playwright) then signs in and saves `docs/images/console-*.png`.
It runs the demo's scratch bridge (`bridge.demo.scenario.scratch_bridge`): like `cancel-bridge
demo`, it refuses a broker that already has the CJ queue, and deletes the queues it created.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from playwright.async_api import Page, ViewportSize, async_playwright

from bridge.demo.fake_cj import Reply, error_in_200
from bridge.demo.scenario import Scratch, refuse_live_broker, scratch_bridge, send_webhook
from bridge.runtime import StartupError
from bridge.store.arrivals import Arrival
from bridge.store.claims import Result
from bridge.store.deliveries import Store
from bridge.store.lifecycle import DeliveryState
from contracts.events import CancelReason, OrderCancelled, Source

IMAGES = Path(__file__).parent / "images"
CHROMIUM = os.environ.get("CB_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}
WAIT_SECONDS = 60.0
SHOPS = {
    Source.SHOPLAZZA: ("maison-lune.myshoplaza.com", "kettle-and-pine.myshoplaza.com"),
    Source.OCC: ("northwind-outfitters", "harbor-home"),
    Source.PRIME: ("A1B2C3D4E5F6G7",),
}
RATES = {Source.SHOPLAZZA: (1, 9), Source.OCC: (0, 4), Source.PRIME: (0, 2)}  # per minute
REASONS = (
    CancelReason.CUSTOMER_REQUEST,
    CancelReason.INVENTORY,
    CancelReason.PAYMENT_DECLINED,
    CancelReason.FRAUD,
)
LIVE_SHOP = "maison-lune.myshoplaza.com"


def _event(source: Source, shop: str, order_id: str, at: datetime, rand: random.Random) -> Arrival:
    cancelled = OrderCancelled.create(
        source=source,
        shop=shop,
        order_id=order_id,
        order_number=None,
        reason=rand.choice(REASONS),
        source_reason=None,
        cancelled_at=at,
        received_at=at,
        delivery_id=None,
    )
    return Arrival(cancelled, at, ("cj",), at - timedelta(days=30))


async def seed_history(store: Store, now: datetime) -> int:
    """The hour before now: arrivals per minute per source, each delivered to CJ (a few retried)."""
    rand = random.Random(8)  # noqa: S311 - a reproducible picture, not cryptography
    arrivals: list[Arrival] = []
    for minutes_ago in range(59, 0, -1):
        for source, (low, high) in RATES.items():
            for _ in range(rand.randint(low, high)):
                at = now - timedelta(minutes=minutes_ago, seconds=rand.uniform(0, 59))
                order = str(rand.randint(10_000_000, 99_999_999))
                arrivals.append(_event(source, rand.choice(SHOPS[source]), order, at, rand))
    await store.arrive_many(arrivals)
    events = [arrival.event for arrival in arrivals]
    await store.claim_many(events, "cj", "history", timedelta(minutes=5))
    results: list[Result] = []
    for arrival in arrivals:
        key, at = str(arrival.event.event_id), arrival.at
        if rand.random() < 0.06:  # noqa: PLR2004 - a few needed a second try
            results.append(
                Result(
                    key,
                    "cj",
                    "history",
                    DeliveryState.RETRYING,
                    at + timedelta(seconds=1),
                    "HTTP 503",
                )
            )
        reference = str(uuid.UUID(int=rand.getrandbits(128)))
        results.append(
            Result(
                key,
                "cj",
                "history",
                DeliveryState.DELIVERED,
                at + timedelta(seconds=2),
                None,
                reference,
            )
        )
    for start in range(0, len(results), 200):
        await store.finish_many(results[start : start + 200])
    return len(arrivals)


async def post(bridge: Scratch, order_id: str, reason: str) -> None:
    """One signed Shoplazza cancellation webhook; it must be accepted."""
    order = {
        "id": order_id,
        "number": order_id[-4:],
        "status": "cancelled",
        "cancel_reason": reason,
        "cancelled_at": datetime.now(UTC).isoformat(),
    }
    status, answer = await send_webhook(bridge, LIVE_SHOP, order)
    if status != 200:  # noqa: PLR2004 - HTTP OK
        raise RuntimeError(f"webhook refused: {status} {answer}")


async def live_traffic(bridge: Scratch) -> str:
    """Webhooks through the bridge; the order id that ends parked."""
    parked = "48213377"
    retried = "48213342"
    bridge.cj.script[retried] = [Reply(status=503, body=b"Service Unavailable")]
    bridge.cj.script[parked] = [
        Reply(status=503, body=b"Service Unavailable"),
        error_in_200("Invalid actionTrackerId"),
    ]
    for order in ("48213301", "48213318", retried, "48213356", parked, "48213390"):
        await post(bridge, order, "Customer changed their mind")
    async with asyncio.timeout(WAIT_SECONDS):
        await bridge.worker.wait_outcomes("delivered", 5)
        await bridge.worker.wait_outcomes("parked", 1)
    return parked


async def shoot(base: str, token: str, parked_order: str) -> None:
    """Sign in and save the three pictures."""
    IMAGES.mkdir(exist_ok=True)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = await browser.new_context(base_url=base, viewport=VIEWPORT)
            page = await context.new_page()
            await page.goto("/console")
            await page.get_by_label("API token").fill(token)
            await page.get_by_role("button", name="Sign in").click()
            await page.get_by_role("heading", name="Overview", exact=True).wait_for()
            await save(page, "console-overview.png")
            await page.goto("/console/events")
            await save(page, "console-events.png", full_page=False)
            await page.goto(f"/console/events?q={parked_order}")
            await page.get_by_role("link", name=parked_order).click()
            await page.locator("ol.timeline").wait_for()
            await save(page, "console-event.png")
        finally:
            await browser.close()


async def save(page: Page, name: str, *, full_page: bool = True) -> None:
    """One PNG in docs/images."""
    await page.screenshot(path=str(IMAGES / name), full_page=full_page)
    print(f"wrote {IMAGES / name}")  # noqa: T201 - the script reports its files


async def main() -> None:
    """Run the bridge, fill it, take the pictures, clean up."""
    url = os.environ.get("AMQP_URL", "").strip()
    if not url:
        sys.exit("set AMQP_URL to a development broker or vhost")
    try:
        await refuse_live_broker(url)
    except StartupError as exc:
        sys.exit(str(exc))
    token = secrets.token_urlsafe(24)
    async with scratch_bridge(
        url, retry_delays=(0.5, 1), api_token=token, wait=WAIT_SECONDS
    ) as bridge:
        # Store-only (past times, no messages): the same whether before or after the start.
        seeded = await seed_history(bridge.store, datetime.now(UTC))
        print(f"seeded {seeded} cancellations of the last hour")  # noqa: T201
        parked = await live_traffic(bridge)
        await shoot(f"http://127.0.0.1:{bridge.port}", token, parked)


if __name__ == "__main__":
    asyncio.run(main())
