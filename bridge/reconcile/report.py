"""What a CJ reconciliation found, and how it is told: pure functions, no I/O.

`compare` decides each delivered order's status against the orders CJ declined; `table`,
`summary` and `as_json` render a `Report`; `exit_status` is the command's exit status.
`bridge.reconcile.reconciler` does the reading, asking and requeueing around them.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from pydantic import ValidationError

from bridge.amqp.parked import format_age
from bridge.store.lifecycle import StepKind
from bridge.store.reopens import DeliveredRow
from contracts.events import CancelReason, OrderCancelled, Source
from contracts.timestamps import utc_z
from handlers.base import format_duration
from handlers.cj import CJCancelConfig, order_id_for

TARGET = "cj"
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_MISSING = 0, 1, 2, 3

Status = Literal["declined", "missing", "waiting", "unknown"]


@dataclass(frozen=True, slots=True)
class Checked:
    """One delivered order, as reconciliation found it; `action` says what requeueing did."""

    event_id: str
    source: str
    shop: str
    order_id: str
    cj_order_id: str | None
    delivered_at: datetime
    reference: str | None
    status: Status
    event: OrderCancelled = field(compare=False, repr=False)
    action: str | None = None
    attempts: int = 1  # the delivery's attempts when seen: a requeue reopens only that one


@dataclass(frozen=True, slots=True)
class Report:
    """A reconciliation run over the deliveries recorded in [since, until]."""

    since: datetime
    until: datetime
    grace: timedelta
    orders: tuple[Checked, ...]
    records_seen: int  # commission records CJ returned for the window
    resent: tuple[str, ...] = ()  # event ids of earlier reopens no worker took, sent again

    def having(self, status: Status) -> tuple[Checked, ...]:
        """The orders with `status`."""
        return tuple(order for order in self.orders if order.status == status)

    @property
    def missing(self) -> tuple[Checked, ...]:
        """Delivered, past the grace period, and no decline at CJ."""
        return self.having("missing")

    @property
    def requeued(self) -> tuple[Checked, ...]:
        """The missing ones sent to the worker again."""
        return tuple(order for order in self.orders if order.action == "requeued")

    @property
    def failed(self) -> tuple[Checked, ...]:
        """The missing ones whose requeue failed (the broker did not take them)."""
        return tuple(o for o in self.orders if (o.action or "").startswith("requeue failed"))


def original_event(row: DeliveredRow) -> OrderCancelled:
    """The event as first published; rebuilt from the event columns for rows without it."""
    if row.event_json is not None:
        with contextlib.suppress(ValidationError):
            return OrderCancelled.from_json(row.event_json.encode())
    return OrderCancelled(
        event_id=uuid.UUID(row.event_id),
        source=Source(row.source),
        shop=row.shop,
        order_id=row.order_id,
        order_number=None,
        reason=CancelReason(row.reason),
        source_reason=None,
        cancelled_at=row.first_seen,
        received_at=row.first_seen,
        delivery_id=None,
    )


def compare(
    rows: Sequence[DeliveredRow],
    declined: frozenset[str],
    cfg: CJCancelConfig,
    *,
    now: datetime,
    grace: timedelta,
) -> tuple[Checked, ...]:
    """Each delivered pair against the orders CJ declined (see the module docstring).

    One result per pair: a pair whose order links name several CJ order ids (a row each) is
    `unknown`, for a person to look at, never requeued on one id's word.
    """
    ids_of: dict[str, set[str | None]] = {}
    for row in rows:
        ids_of.setdefault(row.event_id, set()).add(row.linked)
    found = []
    seen: set[str] = set()
    for row in rows:
        if row.event_id in seen:
            continue
        seen.add(row.event_id)
        event = original_event(row)
        ambiguous = len(ids_of[row.event_id]) > 1
        cj_order_id = None if ambiguous else order_id_for(event, cfg, row.linked)
        status: Status
        if not cj_order_id:
            status = "unknown"
        elif cj_order_id in declined:
            status = "declined"
        elif row.delivered_at > now - grace:
            status = "waiting"
        else:
            status = "missing"
        found.append(
            Checked(
                row.event_id,
                row.source,
                row.shop,
                row.order_id,
                cj_order_id,
                row.delivered_at,
                row.reference,
                status,
                event,
                attempts=row.attempts,
            )
        )
    return tuple(found)


def reopen_detail(order: Checked, now: datetime) -> str:
    """What the reopened delivery's history says."""
    return (
        f"{StepKind.REOPENED.marker}: no decline at CJ for order {order.cj_order_id}"
        f" (accepted {order.reference or 'without a submission id'}) as of {iso(now)}"
    )


def iso(moment: datetime) -> str:
    """RFC 3339 UTC, to the second (`2026-11-24T01:00:00Z`)."""
    return utc_z(moment, "seconds")


def _describe(order: Checked, grace: timedelta) -> str:
    words = {
        "missing": "missing: no decline at CJ",
        "waiting": f"waiting: younger than {format_duration(grace)}",
        "unknown": "unknown: no CJ order id",
        "declined": "declined",
    }[order.status]
    return f"{words}; {order.action}" if order.action else words


def summary(report: Report, advertisers: Sequence[str]) -> str:
    """One line (two when CJ returned nothing at all): what was checked and found."""
    window = format_duration(report.until - report.since)
    line = (
        f"cj: {len(report.orders)} delivered in the last {window}:"
        f" {len(report.having('declined'))} declined at CJ, {len(report.missing)} missing,"
        f" {len(report.having('waiting'))} waiting (younger than {format_duration(report.grace)}),"
        f" {len(report.having('unknown'))} without a CJ order id"
    )
    if any(order.action for order in report.orders):
        line += f"; {len(report.requeued)} requeued, {len(report.failed)} failed"
    if report.resent:
        line += f"; {len(report.resent)} reopened earlier and never taken by a worker: sent again"
    if report.orders and not report.records_seen:
        line += (
            f"\nwarning: CJ returned no commission records at all for advertiser ids"
            f" {', '.join(advertisers)}: check targets.cj.advertiser_ids"
        )
    return line


def table(report: Report, advertisers: Sequence[str], now: datetime) -> str:
    """Every order not declined, as an aligned table, then the summary."""
    header = ("EVENT ID", "ORDER", "CJ ORDER", "DELIVERED", "STATUS")
    cells = [header] + [
        (
            order.event_id,
            f"{order.source}/{order.shop}/{order.order_id}"[:80],
            order.cj_order_id or "?",
            f"{format_age((now - order.delivered_at).total_seconds())} ago",
            _describe(order, report.grace),
        )
        for order in report.orders
        if order.status != "declined"
    ]
    lines = []
    if len(cells) > 1:
        widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
        lines = [
            "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
            for row in cells
        ]
    lines.append(summary(report, advertisers))
    return "\n".join(lines)


def as_json(report: Report) -> dict[str, object]:
    """The report for `--json`: counts, and every order not declined."""
    return {
        "target": TARGET,
        "since": iso(report.since),
        "until": iso(report.until),
        "grace_seconds": int(report.grace.total_seconds()),
        "checked": len(report.orders),
        "declined": len(report.having("declined")),
        "missing": len(report.missing),
        "waiting": len(report.having("waiting")),
        "unknown": len(report.having("unknown")),
        "requeued": len(report.requeued),
        "requeue_failed": len(report.failed),
        "records_seen": report.records_seen,
        "resent": list(report.resent),
        "orders": [
            {
                "event_id": order.event_id,
                "source": order.source,
                "shop": order.shop,
                "order_id": order.order_id,
                "cj_order_id": order.cj_order_id,
                "delivered_at": iso(order.delivered_at),
                "reference": order.reference,
                "status": order.status,
                "action": order.action,
            }
            for order in report.orders
            if order.status != "declined"
        ],
    }


def exit_status(report: Report) -> int:
    """0: nothing missing; 3: missing found; 1: a requeue failed."""
    if report.failed:
        return EXIT_ERROR
    return EXIT_MISSING if report.missing else EXIT_OK
