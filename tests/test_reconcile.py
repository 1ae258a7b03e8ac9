"""Reconciliation's pure parts by plain calls: events from rows, the comparison, the report."""

from __future__ import annotations

import argparse
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from bridge.reconcile import reconciler
from bridge.reconcile import report as reconcile_report
from bridge.store.lifecycle import StepKind
from bridge.store.reopens import DeliveredRow
from contracts.events import CancelReason, OrderCancelled, Source, event_id_for
from handlers.cj import CJCancelConfig

NOW = datetime(2025, 4, 9, 15, 0, tzinfo=UTC)
CFG = CJCancelConfig(
    "https://tracking.api.cj.com/graphql",
    "1234567",
    987654,
    open_ended_locking=True,
    order_id_from="order_id",
)
GRACE = timedelta(hours=2)


def event(order_id: str, order_number: str | None = "1001") -> OrderCancelled:
    return OrderCancelled.create(
        source=Source.SHOPLAZZA,
        shop="demo.myshoplaza.com",
        order_id=order_id,
        order_number=order_number,
        reason=CancelReason.INVENTORY,
        source_reason="Out of stock",
        cancelled_at=NOW - timedelta(days=1),
        received_at=NOW - timedelta(days=1, seconds=-2),
        delivery_id="d-1",
    )


def row(
    order_id: str,
    delivered_ago: timedelta = timedelta(hours=5),
    *,
    stored: bool = True,
    linked: str | None = None,
) -> DeliveredRow:
    evt = event(order_id)
    return DeliveredRow(
        event_id=str(evt.event_id),
        source="shoplazza",
        shop=evt.shop,
        order_id=order_id,
        reason="inventory",
        first_seen=evt.received_at,
        event_json=evt.to_json().decode() if stored else None,
        delivered_at=NOW - delivered_ago,
        reference=f"sub-{order_id}",
        attempts=1,
        linked=linked,
    )


def test_the_stored_event_is_the_original() -> None:
    assert reconcile_report.original_event(row("1001")) == event("1001")


def test_rows_without_the_stored_event_are_rebuilt_from_the_columns() -> None:
    """Older rows (before migration 0003): same id, order and reason; first_seen as times."""
    rebuilt = reconcile_report.original_event(row("1001", stored=False))
    assert rebuilt.event_id == event_id_for(Source.SHOPLAZZA, "demo.myshoplaza.com", "1001")
    assert (rebuilt.order_id, rebuilt.reason) == ("1001", CancelReason.INVENTORY)
    assert rebuilt.cancelled_at == rebuilt.received_at == event("1001").received_at
    assert (rebuilt.order_number, rebuilt.source_reason, rebuilt.delivery_id) == (None, None, None)


def test_an_unreadable_stored_event_falls_back_to_the_columns() -> None:
    broken = dataclasses.replace(row("1001"), event_json='{"not": "an event"}')
    assert reconcile_report.original_event(broken).order_id == "1001"


def statuses(checked: tuple[reconcile_report.Checked, ...]) -> dict[str, str]:
    return {order.order_id: order.status for order in checked}


def test_each_delivery_is_declined_missing_waiting_or_unknown() -> None:
    rows = [
        row("declined"),
        row("missing"),
        row("recent", timedelta(minutes=30)),
        row("recent-declined", timedelta(minutes=30)),
    ]
    found = reconcile_report.compare(
        rows, frozenset({"declined", "recent-declined"}), CFG, now=NOW, grace=GRACE
    )
    assert statuses(found) == {
        "declined": "declined",
        "missing": "missing",
        "recent": "waiting",
        "recent-declined": "declined",
    }
    assert found[1].event == event("missing")
    assert found[1].cj_order_id == "missing"


def test_the_grace_period_ends_exactly_at_its_length() -> None:
    found = reconcile_report.compare([row("edge", GRACE)], frozenset(), CFG, now=NOW, grace=GRACE)
    assert statuses(found) == {"edge": "missing"}


def test_cj_order_ids_follow_order_id_from() -> None:
    by_number = dataclasses.replace(CFG, order_id_from="order_number")
    by_link = dataclasses.replace(CFG, order_id_from="link")
    declined = frozenset({"1001", "cj-2"})
    assert statuses(
        reconcile_report.compare([row("a")], declined, by_number, now=NOW, grace=GRACE)
    ) == {"a": "declined"}
    linked = [row("b", linked="cj-2"), row("c", linked=None)]
    assert statuses(reconcile_report.compare(linked, declined, by_link, now=NOW, grace=GRACE)) == {
        "b": "declined",
        "c": "unknown",
    }
    old = [row("d", stored=False)]  # no order number among the columns
    assert statuses(reconcile_report.compare(old, declined, by_number, now=NOW, grace=GRACE)) == {
        "d": "unknown"
    }


def test_an_order_linked_to_two_cj_ids_is_unknown_once() -> None:
    """Merged links can name two CJ ids (a row each): neither decides; one result, unknown."""
    by_link = dataclasses.replace(CFG, order_id_from="link")
    rows = [row("e", linked="cj-1"), row("e", linked="cj-2"), row("f", linked="cj-3")]
    found = reconcile_report.compare(rows, frozenset({"cj-1"}), by_link, now=NOW, grace=GRACE)
    assert [(order.order_id, order.status, order.cj_order_id) for order in found] == [
        ("e", "unknown", None),
        ("f", "missing", "cj-3"),
    ]


def report(*orders: reconcile_report.Checked, records: int = 4) -> reconcile_report.Report:
    return reconcile_report.Report(NOW - timedelta(hours=24), NOW, GRACE, orders, records)


def checked(
    order_id: str, status: reconcile_report.Status, action: str | None = None
) -> reconcile_report.Checked:
    found = reconcile_report.compare([row(order_id)], frozenset(), CFG, now=NOW, grace=GRACE)[0]
    return dataclasses.replace(found, status=status, action=action)


def test_the_table_lists_what_is_not_declined_and_sums_up() -> None:
    text = reconcile_report.table(
        report(checked("ok", "declined"), checked("lost", "missing")), ["4567890"], NOW
    )
    lines = text.splitlines()
    assert lines[0].split() == ["EVENT", "ID", "ORDER", "CJ", "ORDER", "DELIVERED", "STATUS"]
    assert len(lines) == 3
    assert "shoplazza/demo.myshoplaza.com/lost" in lines[1]
    assert "5h ago" in lines[1]
    assert "missing: no decline at CJ" in lines[1]
    assert lines[2] == (
        "cj: 2 delivered in the last 1d: 1 declined at CJ, 1 missing, 0 waiting (younger than"
        " 2h), 0 without a CJ order id"
    )


def test_requeue_actions_are_shown_and_counted() -> None:
    text = reconcile_report.table(
        report(
            checked("a", "missing", "requeued"),
            checked("b", "missing", "requeue failed: broker connection is down"),
        ),
        ["4567890"],
        NOW,
    )
    assert "missing: no decline at CJ; requeued" in text
    assert text.endswith("; 1 requeued, 1 failed")


def test_nothing_delivered_is_one_line() -> None:
    assert reconcile_report.table(report(records=0), ["4567890"], NOW) == (
        "cj: 0 delivered in the last 1d: 0 declined at CJ, 0 missing, 0 waiting (younger than"
        " 2h), 0 without a CJ order id"
    )


def test_no_records_at_all_warns_about_the_advertiser_ids() -> None:
    text = reconcile_report.summary(report(checked("lost", "missing"), records=0), ["4567890"])
    assert text.splitlines()[1] == (
        "warning: CJ returned no commission records at all for advertiser ids 4567890: check"
        " targets.cj.advertiser_ids"
    )


def test_json_counts_and_lists_what_is_not_declined() -> None:
    found = reconcile_report.as_json(
        report(checked("ok", "declined"), checked("lost", "missing", "requeued"))
    )
    assert {key: found[key] for key in ("checked", "declined", "missing", "requeued")} == {
        "checked": 2,
        "declined": 1,
        "missing": 1,
        "requeued": 1,
    }
    assert found["since"] == "2025-04-08T15:00:00Z"
    assert found["orders"] == [
        {
            "event_id": str(event("lost").event_id),
            "source": "shoplazza",
            "shop": "demo.myshoplaza.com",
            "order_id": "lost",
            "cj_order_id": "lost",
            "delivered_at": "2025-04-09T10:00:00Z",
            "reference": "sub-lost",
            "status": "missing",
            "action": "requeued",
        }
    ]


@pytest.mark.parametrize(
    ("orders", "status"),
    [
        ((), 0),
        ((("a", "declined", None), ("b", "waiting", None), ("c", "unknown", None)), 0),
        ((("a", "missing", None),), 3),
        ((("a", "missing", "requeued"),), 3),
        ((("a", "missing", "requeued"), ("b", "missing", "requeue failed: nack")), 1),
    ],
)
def test_exit_status(
    orders: tuple[tuple[str, reconcile_report.Status, str | None], ...], status: int
) -> None:
    assert reconcile_report.exit_status(report(*(checked(*order) for order in orders))) == status


def test_the_reopen_detail_names_the_order_and_the_accepted_call() -> None:
    detail = reconcile_report.reopen_detail(checked("lost", "missing"), NOW)
    assert detail == (
        f"{StepKind.REOPENED.marker}: no decline at CJ for order lost (accepted sub-lost) as of"
        " 2025-04-09T15:00:00Z"
    )


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cancel-bridge")
    reconciler.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_the_command_line() -> None:
    args = parse("reconcile", "cj", "--since", "90m", "--grace", "0s", "--requeue", "--json")
    assert (args.command, args.target, args.requeue, args.json) == ("reconcile", "cj", True, True)
    assert (args.since, args.grace) == (timedelta(minutes=90), timedelta(0))
    defaults = parse("reconcile", "cj")
    assert (defaults.since, defaults.grace, defaults.requeue) == (None, None, False)


@pytest.mark.parametrize(
    "argv", [("reconcile", "cj", "--since", "yesterday"), ("reconcile", "shoplazza")]
)
def test_bad_arguments_exit_2(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(*argv)
    assert exited.value.code == 2
    assert "cancel-bridge reconcile" in capsys.readouterr().err
