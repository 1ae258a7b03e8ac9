"""What the store's hot-path tests share: a pinned time, events, arrival batches, an echo.

Both drivers' tests (`test_store_hot_sqlite.py`, `test_store_hot_postgres.py`) run these through
the driver and through SQLAlchemy's path and compare what each leaves.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.store.arrivals import Arrival
from bridge.store.deliveries import Store
from bridge.store.lifecycle import DeliveryState
from contracts.events import CancelReason, OrderCancelled, Source

NOW = datetime(2026, 12, 4, 21, 30, 5, 120000, tzinfo=UTC)
SINCE = NOW - timedelta(days=7)


def event(order_id: str) -> OrderCancelled:
    """A Shoplazza cancellation of `order_id` at NOW."""
    return OrderCancelled.create(
        source=Source.SHOPLAZZA,
        shop="demo.myshoplaza.com",
        order_id=order_id,
        order_number=None,
        reason=CancelReason.OTHER,
        source_reason=None,
        cancelled_at=NOW,
        received_at=NOW,
        delivery_id=None,
    )


def batches() -> list[list[Arrival]]:
    """Three batches: new events (one twice), counted again, an echo, no routes."""
    one, two, echoed = event("1001"), event("1002"), event("echoed")
    return [
        [
            Arrival(one, NOW, ("cj", "prime"), SINCE),
            Arrival(two, NOW, ("cj",), SINCE),
            Arrival(one, NOW + timedelta(seconds=1), ("cj", "prime"), SINCE),
        ],
        [
            Arrival(two, NOW + timedelta(minutes=1), ("cj",), SINCE),
            Arrival(echoed, NOW + timedelta(minutes=1), ("cj",), SINCE),
        ],
        [Arrival(event("1003"), NOW + timedelta(minutes=2), (), SINCE)],
    ]


async def with_an_echo(store: Store) -> None:
    """The bridge cancelled order `echoed` on Shoplazza itself."""
    cause = event("cause")
    await store.claim(cause, "shoplazza", "w", NOW, NOW + timedelta(seconds=30))
    await store.finish(
        str(cause.event_id),
        "shoplazza",
        "w",
        DeliveryState.DELIVERED,
        NOW,
        echo=("shoplazza", "echoed"),
    )
