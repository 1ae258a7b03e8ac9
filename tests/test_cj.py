"""CJ adapter by plain calls: the exact request, and what each answer class means."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from multidict import CIMultiDict
from pydantic import SecretStr

from contracts.events import CancelReason, OrderCancelled, Source
from handlers import cj
from handlers.base import AlreadyDone, Delivered, HttpCall, Rejected, RetryLater

NOW = datetime(2025, 4, 9, 15, 0, tzinfo=UTC)
TOKEN = SecretStr("cj-personal-access-token-9x")
CFG = cj.CJCancelConfig(
    url="https://tracking.api.cj.com/graphql",
    enterprise_id="1234567",
    action_tracker_id=987654,
    open_ended_locking=True,
    order_id_from="order_id",
)


def event(**changes: object) -> OrderCancelled:
    fields: dict[str, object] = {
        "source": Source.SHOPLAZZA,
        "shop": "demo.myshoplaza.com",
        "order_id": "633130-00000004",
        "order_number": "1001",
        "reason": CancelReason.INVENTORY,
        "source_reason": "Out of stock",
        "cancelled_at": datetime(2025, 4, 9, 14, 30, tzinfo=UTC),
        "received_at": datetime(2025, 4, 9, 14, 30, 2, tzinfo=UTC),
        "delivery_id": "d-1",
        **changes,
    }
    return OrderCancelled.create(**fields)  # type: ignore[arg-type]


def built(evt: OrderCancelled, cfg: cj.CJCancelConfig = CFG) -> tuple[HttpCall, dict[str, object]]:
    call = cj.build_cancel(evt, cfg, TOKEN, NOW)
    assert isinstance(call, HttpCall), call
    document = orjson.loads(call.body)
    return call, document


def test_request_is_the_mutation_with_variables() -> None:
    call, document = built(event())
    assert (call.method, call.url) == ("POST", "https://tracking.api.cj.com/graphql")
    assert call.headers["Authorization"] == "Bearer cj-personal-access-token-9x"
    assert call.headers["Content-Type"] == "application/json"
    assert "cancelOrders(cancelledOrders: $orders)" in str(document["query"])
    assert "633130" not in str(document["query"])  # values travel as variables only
    assert document["variables"] == {
        "orders": [
            {
                "enterpriseId": "1234567",
                "actionTrackerId": 987654,
                "orderId": "633130-00000004",
                "updateTime": "2025-04-09T14:30:00Z",
                "correctionReason": "CannotShipSoldOut",
                "status": "Declined",
            }
        ]
    }


def test_order_number_can_name_the_order() -> None:
    cfg = dataclasses.replace(CFG, order_id_from="order_number")
    _, document = built(event(), cfg)
    assert document["variables"]["orders"][0]["orderId"] == "1001"  # type: ignore[index]


def test_missing_order_number_is_rejected_not_guessed() -> None:
    cfg = dataclasses.replace(CFG, order_id_from="order_number")
    outcome = cj.build_cancel(event(order_number=None), cfg, TOKEN, NOW)
    assert isinstance(outcome, Rejected)
    assert "order_number" in outcome.reason


def test_without_open_ended_locking_no_status_is_sent() -> None:
    cfg = dataclasses.replace(CFG, open_ended_locking=False)
    _, document = built(event(), cfg)
    assert "status" not in document["variables"]["orders"][0]  # type: ignore[index]


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (CancelReason.CUSTOMER_REQUEST, "Other"),
        (CancelReason.FRAUD, "InvalidCreditCard"),
        (CancelReason.INVENTORY, "CannotShipSoldOut"),
        (CancelReason.PAYMENT_DECLINED, "InvalidCreditCard"),
        (CancelReason.DUPLICATE, "DuplicateOrder"),
        (CancelReason.OTHER, "Other"),
    ],
)
def test_default_reason_table(reason: CancelReason, expected: str) -> None:
    _, document = built(event(reason=reason))
    assert document["variables"]["orders"][0]["correctionReason"] == expected  # type: ignore[index]


def test_reason_table_is_configurable_and_empty_omits() -> None:
    reasons = {**cj.DEFAULT_REASONS, CancelReason.INVENTORY: ""}
    cfg = dataclasses.replace(CFG, reasons=reasons)
    _, document = built(event(), cfg)
    assert "correctionReason" not in document["variables"]["orders"][0]  # type: ignore[index]


@pytest.mark.parametrize(
    ("cancelled_at", "expected"),
    [
        (NOW - timedelta(hours=1), "2025-04-09T14:00:00Z"),
        (NOW - timedelta(seconds=30), "2025-04-09T14:59:00Z"),  # clamped a minute back
        (NOW + timedelta(days=1), "2025-04-09T14:59:00Z"),  # never in the future
    ],
)
def test_update_time_is_never_in_the_future(cancelled_at: datetime, expected: str) -> None:
    assert cj.update_time(event(cancelled_at=cancelled_at), NOW) == expected


def answer(document: object) -> bytes:
    return orjson.dumps(document)


ACCEPTED = answer(
    {
        "data": {
            "cancelOrders": {
                "orders": [{"submissionId": "bcae41b7-0ace", "status": "Declined"}],
                "errors": None,
            }
        }
    }
)


def in_200(*messages: str) -> bytes:
    errors = [{"message": m, "fields": ["orderId"]} for m in messages]
    return answer({"data": {"cancelOrders": {"orders": None, "errors": errors}}})


def interpret(status: int, body: bytes, headers: dict[str, str] | None = None) -> object:
    return cj.interpret(status, CIMultiDict(headers or {}), body, CFG, NOW)


def test_accepted_records_the_submission_id() -> None:
    assert interpret(200, ACCEPTED) == Delivered(reference="bcae41b7-0ace")


@pytest.mark.parametrize(
    "message", ["Order has already been cancelled", "Order is locked", "ALREADY DECLINED"]
)
def test_already_cancelled_or_locked_is_done(message: str) -> None:
    outcome = interpret(200, in_200(message))
    assert isinstance(outcome, AlreadyDone)
    assert message in outcome.detail


@pytest.mark.parametrize(
    "message",
    [
        "Order not found",
        "Invalid actionTrackerId",
        "updateTime cannot be in the future",
        "Status Declined is required for open-ended locking",  # "locking" is not "locked"
    ],
)
def test_other_errors_in_a_200_are_rejected(message: str) -> None:
    outcome = interpret(200, in_200(message))
    assert outcome == Rejected(f"cj: {message}")


def test_one_real_error_among_already_done_ones_is_rejected() -> None:
    outcome = interpret(200, in_200("already cancelled", "Order not found"))
    assert outcome == Rejected("cj: Order not found")


@pytest.mark.parametrize("status", [200, 400])
def test_top_level_graphql_errors_are_a_config_bug(status: int) -> None:
    body = answer({"errors": [{"message": "Value 'RETURNED' does not exist in CorrectionReason"}]})
    outcome = interpret(status, body)
    assert isinstance(outcome, Rejected)
    assert "RETURNED" in outcome.reason


@pytest.mark.parametrize("status", [401, 403])
def test_credentials_are_rejected(status: int) -> None:
    outcome = interpret(status, b'{"message":"Unauthorized"}')
    assert outcome == Rejected(f"cj credentials refused (HTTP {status})")


@pytest.mark.parametrize(
    ("status", "headers", "after"),
    [
        (429, {"Retry-After": "17"}, 17.0),
        (429, {}, None),
        (500, {}, None),
        (502, {}, None),
        (503, {"Retry-After": "Wed, 09 Apr 2025 15:02:00 GMT"}, 120.0),
        (504, {"Retry-After": "soon"}, None),
    ],
)
def test_transient_statuses_retry(
    status: int, headers: dict[str, str], after: float | None
) -> None:
    outcome = interpret(status, b"<html>bad gateway</html>", headers)
    assert isinstance(outcome, RetryLater)
    assert outcome.after == after


@pytest.mark.parametrize(
    "body",
    [
        b"<html>maintenance</html>",
        b"",
        answer({"data": None}),
        answer({"data": {"cancelOrders": {"orders": [], "errors": []}}}),
    ],
)
def test_unreadable_200_retries(body: bytes) -> None:
    assert isinstance(interpret(200, body), RetryLater)


def test_other_client_errors_are_rejected() -> None:
    assert interpret(404, b"not found") == Rejected("cj answered HTTP 404")


def test_token_never_appears_in_outcomes() -> None:
    for status, body in ((401, b""), (200, in_200("Order not found")), (500, b"")):
        assert TOKEN.get_secret_value() not in repr(interpret(status, body))
