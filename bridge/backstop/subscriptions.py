"""`cancel-bridge subscriptions check|ensure --source shoplazza`: each store still subscribed.

For each Shoplazza store the backstop can reach (`poller.shoplazza_stores`), the
`orders/cancelled` subscriptions are listed through Shoplazza's webhooks API and judged against
`[sources.shoplazza] webhook_url` (`shoplazza_webhooks.health`); `ensure` creates a missing one.
`cancel_bridge_subscription_ok{source, shop}` is 1 for a store subscribed once, 0 otherwise;
`run` checks on the backstop's schedule. Prints one JSON object per store. Exit status: 0 every
store subscribed once (or now, after `ensure`), 3 one is missing or duplicated, 1 an error, 2 bad
arguments or no `webhook_url`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
import orjson

from bridge.backstop.poller import HTTP_OK, NO_STORES, PACE, call_store, shoplazza_stores
from bridge.backstop.shoplazza_webhooks import (
    Subscription,
    create_body,
    health,
    list_query,
    more_pages,
    read_webhooks,
)
from bridge.metrics import Metrics
from bridge.settings import Config
from contracts.events import Source
from handlers.shoplazza import ShopAccess, ShoplazzaSourceSettings

EXIT_UNHEALTHY, EXIT_ERROR, EXIT_USAGE = 3, 1, 2
MAX_PAGES = 40
HTTP_CREATED = 201


@dataclass(slots=True)
class StoreHealth:
    """One store's verdict: ok, missing, duplicated, created (by `ensure`), or error."""

    shop: str
    state: str = "error"
    ours: list[str] = field(default_factory=list)  # subscription ids at our address
    elsewhere: list[str] = field(default_factory=list)  # other addresses of the topic
    error: str | None = None

    def as_json(self) -> dict[str, object]:
        """As the command prints it."""
        return {
            "source": "shoplazza",
            "shop": self.shop,
            "state": self.state,
            "ours": self.ours,
            "elsewhere": self.elsewhere,
            "error": self.error,
        }


def webhook_url(config: Config) -> str | None:
    """The address Shoplazza must post `orders/cancelled` to (`[sources.shoplazza] webhook_url`)."""
    section = config.source_settings.get(Source.SHOPLAZZA)
    return section.webhook_url if isinstance(section, ShoplazzaSourceSettings) else None


async def check_stores(
    stores: Mapping[str, ShopAccess],
    address: str,
    metrics: Metrics,
    session: aiohttp.ClientSession,
    *,
    ensure: bool,
) -> list[StoreHealth]:
    """Every store's verdict (and `ensure`'s creations); the gauge set for each."""
    verdicts = []
    for shop, access in stores.items():
        verdict = await _check(session, shop, access, address, ensure=ensure)
        healthy = verdict.state in ("ok", "created")
        metrics.subscription_ok.labels("shoplazza", shop).set(1 if healthy else 0)
        verdicts.append(verdict)
    return verdicts


async def _check(
    session: aiohttp.ClientSession, shop: str, access: ShopAccess, address: str, *, ensure: bool
) -> StoreHealth:
    verdict = StoreHealth(shop)
    listed: list[Subscription] = []
    cursor: str | None = None
    for number in range(1, MAX_PAGES + 1):
        query = list_query(access.api_version, number, cursor)
        answer = await call_store(session, access, "GET", _path(access), query=query)
        if answer.status != HTTP_OK:
            verdict.error = f"webhook list answered {answer.status or 'nothing'}"
            return verdict
        try:
            page = read_webhooks(answer.body)
        except ValueError as exc:
            verdict.error = str(exc)
            return verdict
        listed.extend(page.subscriptions)
        if not more_pages(access.api_version, page):
            break
        cursor = page.cursor
        await asyncio.sleep(PACE)  # the platform's rate
    judged = health(listed, address)
    verdict.state = judged.state
    verdict.ours = [s.id for s in judged.ours]
    verdict.elsewhere = [s.address for s in judged.elsewhere]
    if judged.state == "missing" and ensure:
        body = create_body(access.api_version, address)
        created = await call_store(session, access, "POST", _path(access), body=body)
        if created.status in (HTTP_OK, HTTP_CREATED):
            verdict.state = "created"
        else:
            verdict.error = f"webhook create answered {created.status or 'nothing'}"
    return verdict


def _path(access: ShopAccess) -> str:
    """The store's webhooks endpoint (after its base URL)."""
    return f"/openapi/{access.api_version}/webhooks"


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]  # argparse's own generic
    """`cancel-bridge subscriptions check|ensure --source shoplazza`."""
    text = "check (or create) each store's orders/cancelled webhook subscription"
    parser = commands.add_parser(
        "subscriptions",
        help=text,
        description=text,
        epilog="exit status: 0 all subscribed once, 3 missing or duplicated, 1 error, 2 usage",
    )
    parser.add_argument("action", choices=("check", "ensure"))
    parser.add_argument("--source", choices=("shoplazza",), required=True)
    parser.add_argument("--config", metavar="FILE", help="TOML file (default: $BRIDGE_CONFIG)")


def command(args: argparse.Namespace, config: Config, env: Mapping[str, str]) -> int:
    """Run `cancel-bridge subscriptions`; the exit status (see the module docstring)."""
    address = webhook_url(config)
    if address is None:
        print(  # noqa: T201 - CLI output
            "cancel-bridge: subscriptions: set [sources.shoplazza] webhook_url (the address"
            " Shoplazza posts to)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    stores = shoplazza_stores(config, env)
    if not stores:
        print(f"cancel-bridge: subscriptions: {NO_STORES}", file=sys.stderr)  # noqa: T201 - CLI output
        return EXIT_ERROR

    async def run() -> list[StoreHealth]:
        async with aiohttp.ClientSession() as session:
            return await check_stores(
                stores, address, Metrics(), session, ensure=args.action == "ensure"
            )

    verdicts = asyncio.run(run())
    for verdict in verdicts:
        sys.stdout.write(orjson.dumps(verdict.as_json()).decode() + "\n")
    if any(v.error for v in verdicts):
        return EXIT_ERROR
    return 0 if all(v.state in ("ok", "created") for v in verdicts) else EXIT_UNHEALTHY
