"""CJ batching by plain calls: many orders in one `cancelOrders`, each answer attributed or not."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import orjson
import pytest
from multidict import CIMultiDict
from pydantic import SecretStr, ValidationError

from contracts.events import CancelReason, OrderCancelled, Source
from handlers import cj
from handlers.base import (
    AlreadyDone,
    BatchCall,
    BatchingTarget,
    Delivered,
    HttpCall,
    Outcome,
    Rejected,
    RetryLater,
    Unattributed,
)

NOW = datetime(2025, 4, 9, 15, 0, tzinfo=UTC)
TOKEN = SecretStr("cj-personal-access-token-9x")
CFG = cj.CJCancelConfig(
    url="https://tracking.api.cj.com/graphql",
    enterprise_id="1234567",
    action_tracker_id=987654,
    open_ended_locking=True,
    order_id_from="order_id",
)
KEYS = ("A-1", "B-2", "C-3")


def event(order_id: str, **changes: object) -> OrderCancelled:
    fields: dict[str, object] = {
        "source": Source.SHOPLAZZA,
        "shop": "demo.myshoplaza.com",
        "order_id": order_id,
        "order_number": f"n-{order_id}",
        "reason": CancelReason.INVENTORY,
        "source_reason": None,
        "cancelled_at": datetime(2025, 4, 9, 14, 30, tzinfo=UTC),
        "received_at": datetime(2025, 4, 9, 14, 30, 2, tzinfo=UTC),
        "delivery_id": None,
        **changes,
    }
    return OrderCancelled.create(**fields)  # type: ignore[arg-type]


def interpret(
    body: object,
    status: int = 200,
    keys: tuple[str, ...] = KEYS,
    headers: Mapping[str, str] | None = None,
) -> tuple[Outcome | Unattributed, ...]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return cj.interpret_cancels(status, CIMultiDict(headers or {}), raw, keys, CFG, NOW)


def result(orders: object = None, errors: object = None) -> dict[str, object]:
    return {"data": {"cancelOrders": {"orders": orders, "errors": errors}}}


def entry(order_id: str | None, submission: str | None = None) -> dict[str, object]:
    found: dict[str, object] = {
        "submissionId": submission or f"sub-{order_id}",
        "status": "Declined",
    }
    if order_id is not None:
        found["orderId"] = order_id
    return found


def test_many_orders_travel_in_one_call_in_order() -> None:
    """One request per item, as `build_cancel` makes it, in the list, in the items' order."""
    items = [(event(key), None) for key in KEYS]
    batch = cj.build_cancels(items, CFG, TOKEN, NOW)
    assert batch.call is not None
    assert batch.sent == (0, 1, 2)
    assert batch.keys == KEYS
    assert batch.refused == {}
    sent = orjson.loads(batch.call.body)
    assert sent["query"] == cj.MUTATION
    alone = [orjson.loads(single.body)["variables"]["orders"][0] for single in singles(items)]
    assert sent["variables"]["orders"] == alone
    assert batch.call.headers["Authorization"] == "Bearer cj-personal-access-token-9x"


def singles(items: Sequence[tuple[OrderCancelled, str | None]]) -> list[HttpCall]:
    calls = [cj.build_cancel(evt, CFG, TOKEN, NOW, linked) for evt, linked in items]
    return [call for call in calls if isinstance(call, HttpCall)]


def test_an_order_without_an_id_is_refused_and_the_rest_sent() -> None:
    cfg = dataclasses.replace(CFG, order_id_from="order_number")
    items = [(event("A-1"), None), (event("B-2", order_number=None), None), (event("C-3"), None)]
    batch = cj.build_cancels(items, cfg, TOKEN, NOW)
    assert batch.sent == (0, 2)
    assert batch.keys == ("n-A-1", "n-C-3")
    assert isinstance(batch.refused[1], Rejected)
    assert "order_number" in batch.refused[1].reason


def test_linked_ids_name_the_orders() -> None:
    cfg = dataclasses.replace(CFG, order_id_from="link")
    batch = cj.build_cancels([(event("A-1"), "cj-9"), (event("B-2"), None)], cfg, TOKEN, NOW)
    assert batch.keys == ("cj-9",)
    assert isinstance(batch.refused[1], Rejected)


def test_no_call_when_every_order_is_refused() -> None:
    cfg = dataclasses.replace(CFG, order_id_from="link")
    batch = cj.build_cancels([(event("A-1"), None)], cfg, TOKEN, NOW)
    assert batch.call is None
    assert batch.sent == ()


def test_each_echoed_order_is_delivered_with_its_own_submission_id() -> None:
    """Entries come back in any order: attributed by orderId, not by position."""
    answer = result([entry("C-3"), entry("A-1"), entry("B-2")])
    assert interpret(answer) == (
        Delivered(reference="sub-A-1"),
        Delivered(reference="sub-B-2"),
        Delivered(reference="sub-C-3"),
    )


def test_the_one_order_left_unnamed_has_the_errors() -> None:
    """Two accepted by name, one not, errors that name no order: they are that one's."""
    errors = [{"message": "Order not found", "fields": ["orderId"]}]
    outcomes = interpret(result([entry("A-1"), entry("C-3")], errors))
    assert outcomes == (
        Delivered(reference="sub-A-1"),
        Rejected("cj: Order not found"),
        Delivered(reference="sub-C-3"),
    )


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (["Order A is already declined", "Order C is locked"], AlreadyDone),
        (["Order not found", "Order not found"], Rejected),
        (["Order not found", "Invalid actionTrackerId"], Unattributed),  # whose is whose?
        (["Order not found"], Unattributed),  # one error for two orders
        (["already declined", "Order not found"], Unattributed),
    ],
)
def test_several_unnamed_orders_share_only_what_reads_alike(
    messages: list[str], expected: type
) -> None:
    errors = [{"message": message, "fields": ["orderId"]} for message in messages]
    outcomes = interpret(result([entry("B-2")], errors))
    assert outcomes[1] == Delivered(reference="sub-B-2")
    assert isinstance(outcomes[0], expected)
    assert outcomes[2] == outcomes[0]
    if expected is Rejected:
        assert outcomes[0] == Rejected("cj: Order not found")


def test_fewer_errors_than_unnamed_orders_send_each_alone() -> None:
    errors = [{"message": "Order A-1 is already declined", "fields": ["orderId"]}]
    outcomes = interpret(result(None, errors))
    assert all(isinstance(outcome, Unattributed) for outcome in outcomes)
    assert "already declined" in str(outcomes[0])


def test_accepted_without_names_is_delivered_without_a_reference() -> None:
    """CJ's own example selects no orderId: as many entries as orders, no errors, all accepted."""
    answer = result([entry(None, "s1"), entry(None, "s2"), entry(None, "s3")])
    assert interpret(answer) == (Delivered(), Delivered(), Delivered())


@pytest.mark.parametrize(
    "orders",
    [
        [entry(None, "s1"), entry(None, "s2")],  # fewer entries than orders
        [entry("a-1"), entry("b-2"), entry("c-3")],  # named, but not as sent
    ],
)
def test_entries_that_cannot_be_matched_send_the_orders_alone(orders: object) -> None:
    outcomes = interpret(result(orders))
    assert all(isinstance(outcome, Unattributed) for outcome in outcomes)


def test_an_order_sent_twice_cannot_be_told_apart() -> None:
    answer = result([entry("A-1", "s1"), entry("A-1", "s2"), entry("B-2")])
    outcomes = interpret(answer, keys=("A-1", "A-1", "B-2"))
    assert isinstance(outcomes[0], Unattributed)
    assert isinstance(outcomes[1], Unattributed)
    assert outcomes[2] == Delivered(reference="sub-B-2")


def test_an_order_named_twice_is_not_attributed() -> None:
    outcomes = interpret(result([entry("A-1", "s1"), entry("A-1", "s2"), entry("B-2")]))
    assert isinstance(outcomes[0], Unattributed)
    assert outcomes[1] == Delivered(reference="sub-B-2")


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (401, {}, Rejected("cj credentials refused (HTTP 401)")),
        (403, {}, Rejected("cj credentials refused (HTTP 403)")),
        (429, {"Retry-After": "17"}, RetryLater("cj answered HTTP 429", 17.0)),
        (503, {}, RetryLater("cj answered HTTP 503")),
    ],
)
def test_what_concerns_the_whole_call_applies_to_each_order(
    status: int, headers: dict[str, str], expected: Outcome
) -> None:
    assert interpret(b"<html>no</html>", status, headers=headers) == (expected,) * 3


@pytest.mark.parametrize("body", [b"<html>maintenance</html>", orjson.dumps({"data": None})])
def test_a_200_without_cjs_result_retries_each(body: bytes) -> None:
    outcomes = interpret(body)
    assert len(outcomes) == 3
    assert all(isinstance(outcome, RetryLater) for outcome in outcomes)


@pytest.mark.parametrize("status", [200, 400])
def test_top_level_errors_blame_no_order(status: int) -> None:
    """A value one order carries may fail the whole document: each is sent alone to find it."""
    body = {"errors": [{"message": "Value 'X' does not exist in CorrectionReason"}], "data": None}
    outcomes = interpret(body, status)
    assert all(isinstance(outcome, Unattributed) for outcome in outcomes)
    assert "CorrectionReason" in str(outcomes[0])


@pytest.mark.parametrize("status", [404, 413])
def test_another_status_blames_no_order(status: int) -> None:
    outcomes = interpret(b"too large", status)
    assert outcomes == (Unattributed(f"cj answered HTTP {status} to 3 orders"),) * 3


def test_one_order_is_read_as_when_sent_alone() -> None:
    """A batch of one is `interpret`'s answer: errors in a 200 are that order's."""
    body = result(None, [{"message": "Order is already declined", "fields": ["orderId"]}])
    (outcome,) = interpret(body, keys=("A-1",))
    assert isinstance(outcome, AlreadyDone)
    top = {"errors": [{"message": "bad enum"}]}
    assert interpret(top, keys=("A-1",)) == (Rejected("cj graphql: bad enum"),)


def test_the_adapter_opts_in_with_its_settings() -> None:
    adapter = cj.CJTarget(dataclasses.replace(CFG, batch_size=7, batch_linger=0.005), TOKEN)
    assert isinstance(adapter, BatchingTarget)
    assert (adapter.batch_size, adapter.batch_linger) == (7, 0.005)
    batch = adapter.build_many([(event("A-1"), None), (event("B-2"), None)], NOW)
    assert isinstance(batch, BatchCall)
    body = orjson.dumps(result([entry("B-2"), entry("A-1")]))
    assert adapter.interpret_many(batch, 200, CIMultiDict(), body, NOW) == (
        Delivered(reference="sub-A-1"),
        Delivered(reference="sub-B-2"),
    )


def test_settings_default_and_bounds() -> None:
    required = {
        "enterprise_id": "1",
        "action_tracker_id": 2,
        "open_ended_locking": False,
        "order_id_from": "order_id",
    }
    settings = cj.CJTargetSettings.model_validate(required)
    assert (settings.batch_size, settings.batch_linger) == (1, 0.02)  # off unless set
    assert "one order per call" in cj.make_target(settings, {"token_env": TOKEN}).summary
    many = cj.CJTargetSettings.model_validate({**required, "batch_size": 50, "batch_linger": "5ms"})
    assert (cj.cancel_config(many).batch_size, cj.cancel_config(many).batch_linger) == (50, 0.005)
    summary = cj.make_target(many, {"token_env": TOKEN}).summary
    assert "up to 50 orders per call (linger 5ms)" in summary
    for wrong in ({"batch_size": 0}, {"batch_size": 10_001}, {"batch_linger": "2s"}):
        with pytest.raises(ValidationError):
            cj.CJTargetSettings.model_validate({**required, **wrong})
