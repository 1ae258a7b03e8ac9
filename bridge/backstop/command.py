"""`cancel-bridge backstop --source shoplazza|occ --since 24h [--dry-run]`: the backstop by hand.

Lists each Shoplazza store's orders cancelled since then, or the OCC tenant's (`poller`), and
publishes the ones no webhook brought, as `run` would; `--dry-run` lists them and publishes
nothing. Prints one JSON object per store or tenant (what it listed and found, its new
watermark, an error if its list failed; for OCC the date the list was asked by: `query`).
Exit status: 0 nothing found, 3 something found (webhooks are being missed), 1 an error (a
store's list failed, the broker or the store did not answer), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import aiohttp
import orjson

from bridge.amqp.publisher import BrokerUnavailable, Publisher
from bridge.backstop.poller import (
    NO_OCC,
    NO_STORES,
    Backstop,
    OCCAccess,
    ShopPoll,
    occ_tenant,
    shoplazza_stores,
)
from bridge.cli_types import duration_arg
from bridge.metrics import Metrics
from bridge.settings import Config
from bridge.store.deliveries import Store
from bridge.store.engine import StoreUnavailable
from contracts.timestamps import utc_z
from handlers.shoplazza import ShopAccess

EXIT_FOUND, EXIT_ERROR, EXIT_USAGE = 3, 1, 2
MAX_SINCE = timedelta(days=60)
READY_TIMEOUT = 30.0  # seconds for the broker to take publishes


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]  # argparse's own generic
    """`cancel-bridge backstop --source shoplazza|occ [--since 24h] [--dry-run]`."""
    text = "list the cancellations a platform has that no webhook brought, and publish them"
    parser = commands.add_parser(
        "backstop",
        help=text,
        description=text,
        epilog="exit status: 0 none found, 3 found, 1 error, 2 bad arguments",
    )
    parser.add_argument("--source", choices=("shoplazza", "occ"), required=True)
    parser.add_argument(
        "--since",
        type=duration_arg,
        default=timedelta(hours=24),
        metavar="DURATION",
        help="orders updated this far back: 24h, 90m, 7d (default 24h)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list and look up; publish nothing")
    parser.add_argument("--config", metavar="FILE", help="TOML file (default: $BRIDGE_CONFIG)")


def command(args: argparse.Namespace, config: Config, env: Mapping[str, str]) -> int:
    """Run `cancel-bridge backstop`; the exit status (see the module docstring)."""
    since: timedelta = args.since
    if not timedelta(0) < since <= MAX_SINCE:
        print(  # noqa: T201 - CLI output
            f"cancel-bridge: backstop: --since must be more than 0 and at most {MAX_SINCE.days}d",
            file=sys.stderr,
        )
        return EXIT_USAGE
    stores = shoplazza_stores(config, env) if args.source == "shoplazza" else {}
    tenant = occ_tenant(config, env) if args.source == "occ" else None
    if not stores and tenant is None:
        missing = NO_STORES if args.source == "shoplazza" else NO_OCC
        print(f"cancel-bridge: backstop: {missing}", file=sys.stderr)  # noqa: T201 - CLI output
        return EXIT_ERROR
    try:
        polls = asyncio.run(_poll(config, stores, tenant, since, dry_run=args.dry_run))
    except (StoreUnavailable, BrokerUnavailable, TimeoutError) as exc:
        problem = str(exc) or "the broker was not ready"
        print(f"cancel-bridge: backstop: {problem}", file=sys.stderr)  # noqa: T201 - CLI output
        return EXIT_ERROR
    for poll in polls:
        sys.stdout.write(orjson.dumps(as_json(poll)).decode() + "\n")
    if any(poll.error for poll in polls):
        return EXIT_ERROR
    return EXIT_FOUND if any(poll.found for poll in polls) else 0


def as_json(poll: ShopPoll) -> dict[str, object]:
    """One store's (or OCC tenant's) poll as the command prints it."""
    shown: dict[str, object] = {
        "source": poll.source,
        "shop": poll.shop,
        "listed": poll.listed,
        "found": [
            {"order_id": f.order_id, "event_id": f.event_id, "published": f.published}
            for f in poll.found
        ],
        "pages": poll.pages,
        "skipped": poll.skipped,
        "watermark": utc_z(poll.watermark) if poll.watermark else None,
        "error": poll.error,
    }
    if poll.query is not None:
        shown["query"] = poll.query
    return shown


async def _poll(
    config: Config,
    stores: Mapping[str, ShopAccess],
    tenant: OCCAccess | None,
    since: timedelta,
    *,
    dry_run: bool,
) -> list[ShopPoll]:
    now = datetime.now(UTC)
    metrics = Metrics()
    async with (
        Store.open(config.store_url.get_secret_value()) as store,
        contextlib.AsyncExitStack() as stack,
    ):
        publisher = None  # a dry run publishes nothing
        if not dry_run:
            publisher = await stack.enter_async_context(
                Publisher.running(
                    config.amqp_url.get_secret_value(),
                    config.settings.broker,
                    connection_name="backstop",
                    metrics=metrics,
                )
            )
            async with asyncio.timeout(READY_TIMEOUT):
                await publisher.wait_ready()
        backstop = Backstop(config, store, publisher, metrics)
        async with aiohttp.ClientSession() as session:
            polls = await backstop.poll_shoplazza(stores, now - since, now, session)
            if tenant is not None:
                polls.append(await backstop.poll_occ(tenant, now - since, now, session))
            return polls
