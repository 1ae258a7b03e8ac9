"""Cancelling on Shoplazza: the calls the adapter builds and what each documented answer means."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from multidict import CIMultiDict
from pydantic import SecretStr

from bridge.executor import Executor, HttpAnswer
from contracts.events import CancelReason, OrderCancelled, Source
from handlers.base import (
    AlreadyDone,
    Delivered,
    FollowUp,
    HttpCall,
    Outcome,
    Rejected,
    RetryLater,
    TargetAdapter,
)
from handlers.shoplazza import (
    ShoplazzaTargetSettings,
    confirm_read,
    make_target,
    target_secret_envs,
)
from tests.fakes.shoplazza import (
    ERROR_SHAPES,
    RECANCEL_STATUSES,
    ErrorShape,
    FakeShoplazza,
    RecancelStatus,
)

NOW = datetime(2025, 4, 9, 12, 0, tzinfo=UTC)
TOKEN = "shoplazza-access-token-1"
SETTINGS = ShoplazzaTargetSettings.model_validate(
    {
        "shops": {
            "Demo.MyShoplaza.com": {"token_env": "SL_DEMO"},
            "other.myshoplaza.com": {"token_env": "SL_OTHER", "base_url": "http://127.0.0.1:9/o/"},
        },
        "default_shop": "demo.myshoplaza.com",
        "reasons": {"fraud": "Suspected fraud"},
    }
)
SECRETS = {
    "shops.Demo.MyShoplaza.com.token_env": SecretStr(TOKEN),
    "shops.other.myshoplaza.com.token_env": SecretStr("other-token"),
}
ADAPTER = make_target(SETTINGS, SECRETS).adapter


def event(reason: CancelReason = CancelReason.FRAUD) -> OrderCancelled:
    return OrderCancelled.create(
        source=Source.OCC,
        shop="siteUS",
        order_id="o30413",
        order_number=None,
        reason=reason,
        source_reason=None,
        cancelled_at=NOW,
        received_at=NOW,
        delivery_id=None,
    )


def call(linked: str = "633130-00000004") -> HttpCall:
    built = ADAPTER.build(event(), NOW, linked)
    assert isinstance(built, HttpCall), built
    return built


def test_secrets_are_one_token_per_store() -> None:
    assert target_secret_envs(SETTINGS) == {
        "shops.Demo.MyShoplaza.com.token_env": "SL_DEMO",
        "shops.other.myshoplaza.com.token_env": "SL_OTHER",
    }
    made = make_target(SETTINGS, SECRETS)
    assert (made.link_platform, made.rate, made.timeout) == ("shoplazza", 2.0, 10.0)
    assert TOKEN not in made.summary


def test_the_cancel_call_for_a_bare_id_goes_to_the_default_store() -> None:
    built = call()
    assert built.method == "POST"
    assert built.url == (
        "https://Demo.MyShoplaza.com/openapi/2022-01/orders/633130-00000004/cancel"
    )
    assert built.headers["Access-Token"] == TOKEN
    assert orjson.loads(built.body) == {"reason": "Suspected fraud"}
    assert built.pace_key == "demo.myshoplaza.com"


def test_a_linked_id_may_name_its_store_and_ids_are_quoted() -> None:
    built = call("other.myshoplaza.com/a b?c")
    assert built.url == "http://127.0.0.1:9/o/openapi/2022-01/orders/a%20b%3Fc/cancel"
    assert built.headers["Access-Token"] == "other-token"
    assert built.pace_key == "other.myshoplaza.com"
    default_reason = ADAPTER.build(event(CancelReason.INVENTORY), NOW, "1")
    assert isinstance(default_reason, HttpCall)
    assert orjson.loads(default_reason.body) == {"reason": "Out of stock"}


@pytest.mark.parametrize(
    ("linked", "reason"),
    [
        (None, "no Shoplazza order is linked"),
        ("unknown.myshoplaza.com/1", "no [targets.shoplazza.shops] entry"),
    ],
)
def test_orders_that_cannot_be_named_are_rejected(linked: str | None, reason: str) -> None:
    built = ADAPTER.build(event(), NOW, linked)
    assert isinstance(built, Rejected)
    assert reason in built.reason


def interpret(status: int, body: object = None, headers: dict[str, str] | None = None) -> object:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return ADAPTER.interpret(call(), status, CIMultiDict(headers or {}), raw, NOW)


def test_200_is_delivered_naming_the_order() -> None:
    assert interpret(200, {"id": "633130-00000004", "status": "cancelled"}) == Delivered(
        reference="633130-00000004", order_id="633130-00000004"
    )
    assert interpret(200, b"not json") == Delivered(
        reference="633130-00000004", order_id="633130-00000004"
    )


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, {"error": "Unauthorized"}, Rejected("shoplazza credentials refused (HTTP 401)")),
        (403, {}, Rejected("shoplazza credentials refused (HTTP 403)")),
        (
            404,
            {"errors": ["Unable to find resource"]},
            Rejected("shoplazza: order not found (Unable to find resource)"),
        ),
        (429, b"", RetryLater("shoplazza answered HTTP 429")),
        (500, {"errors": ["DeadlineExceeded"]}, RetryLater("shoplazza answered HTTP 500")),
        (502, b"<html>bad gateway</html>", RetryLater("shoplazza answered HTTP 502")),
        (418, {"error": "teapot"}, Rejected("shoplazza answered HTTP 418: teapot")),
    ],
)
def test_documented_answers(status: int, body: object, expected: object) -> None:
    assert interpret(status, body) == expected


def test_retry_after_is_kept() -> None:
    assert interpret(429, b"", {"Retry-After": "7"}) == RetryLater(
        "shoplazza answered HTTP 429", 7.0
    )


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            404,
            {"code": "NotFound", "message": "Unable to find resource"},
            Rejected("shoplazza: order not found (NotFound: Unable to find resource)"),
        ),
        (
            418,
            {"code": "InvalidParameter", "message": "teapot"},
            Rejected("shoplazza answered HTTP 418: InvalidParameter: teapot"),
        ),
        (
            418,
            {"code": "InvalidParameter"},
            Rejected("shoplazza answered HTTP 418: InvalidParameter"),
        ),
        (
            418,
            {"message": "only a message"},
            Rejected("shoplazza answered HTTP 418: only a message"),
        ),
        (418, {"errors": ["a", "b"]}, Rejected("shoplazza answered HTTP 418: a; b")),
    ],
)
def test_each_error_body_shape_is_read(status: int, body: object, expected: object) -> None:
    """2022-01's `errors`/`error` and 2025-06's `{code, message}` all reach the outcome."""
    assert interpret(status, body) == expected


# A re-cancel's status is undocumented (406, 422 or 400), and so is which body shape it has.
RECANCEL_BODIES = {
    "errors": ({"errors": ["order status not allowed"]}, "order status not allowed"),
    "error": ({"error": "order status not allowed"}, "order status not allowed"),
    "code": (
        {"code": "InvalidParameter", "message": "order status not allowed"},
        "InvalidParameter: order status not allowed",
    ),
}


@pytest.mark.parametrize("shape", sorted(RECANCEL_BODIES))
@pytest.mark.parametrize("status", [400, 406, 422])
def test_a_recancel_answer_is_settled_by_the_read(status: int, shape: str) -> None:
    """Cancelled on read: `AlreadyDone`; not cancelled: `Rejected`, naming the cancel's answer."""
    body, text = RECANCEL_BODIES[shape]
    follow = interpret(status, body)
    assert isinstance(follow, FollowUp)
    cancelled = orjson.dumps({"order": {"id": "633130-00000004", "status": "cancelled"}})
    assert follow.then(200, CIMultiDict(), cancelled, NOW) == AlreadyDone(
        "shoplazza: order 633130-00000004 is already cancelled"
    )
    finished = orjson.dumps({"id": "633130-00000004", "status": "finished"})
    assert follow.then(200, CIMultiDict(), finished, NOW) == Rejected(
        "shoplazza: order 633130-00000004 is 'finished', not cancellable"
        f" (cancel answered HTTP {status}: {text})"
    )


def test_a_400_for_bad_credentials_ends_rejected_after_the_read() -> None:
    """The seed files "Unauthorized" under 400: the read is refused too, and that is final."""
    follow = interpret(400, {"error": "Unauthorized"})
    assert isinstance(follow, FollowUp)
    read = orjson.dumps({"error": "Unauthorized"})
    assert follow.then(400, CIMultiDict(), read, NOW) == Rejected(
        "shoplazza answered HTTP 400 to the order read: Unauthorized"
        " (cancel answered HTTP 400: Unauthorized)"
    )


@pytest.mark.parametrize("status", [400, 406, 422])
def test_wrong_state_reads_the_order(status: int) -> None:
    follow = interpret(status, {"errors": ["order status not allowed"]})
    assert isinstance(follow, FollowUp)
    assert follow.call.method == "GET"
    assert follow.call.url == "https://Demo.MyShoplaza.com/openapi/2022-01/orders/633130-00000004"
    assert follow.call.headers["Access-Token"] == TOKEN
    assert follow.call.body == b""
    assert follow.call.pace_key == "demo.myshoplaza.com"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            200,
            {"id": "1", "status": "cancelled"},
            AlreadyDone("shoplazza: order 1 is already cancelled"),
        ),
        (
            200,
            {"order": {"id": "1", "status": "cancelled", "cancelled_at": "2025-04-09T10:00:00Z"}},
            AlreadyDone("shoplazza: order 1 is already cancelled"),
        ),
        (
            200,
            {"id": "1", "status": "finished"},
            Rejected("shoplazza: order 1 is 'finished', not cancellable"),
        ),
        (
            404,
            {"errors": ["Unable to find resource"]},
            Rejected("shoplazza: order not found (Unable to find resource)"),
        ),
        (503, b"", RetryLater("shoplazza answered HTTP 503")),
        (200, b"[]", RetryLater("shoplazza order read: the answer is not an order")),
    ],
)
def test_the_confirm_read(status: int, body: object, expected: object) -> None:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    assert confirm_read(status, CIMultiDict(), raw, NOW) == expected


# --- against the fake Shoplazza, with each undocumented behaviour it can take ---------------

FAKE_SHOPS = ("open.example", "cancelled.example", "finished.example", "missing.example")


@pytest.mark.parametrize("shape", ERROR_SHAPES)
@pytest.mark.parametrize("recancel", RECANCEL_STATUSES)
async def test_the_target_against_the_fake_for_each_reading(
    recancel: RecancelStatus, shape: ErrorShape
) -> None:
    """Whichever re-cancel status and error shape Shoplazza has, each order ends the same."""
    fake = FakeShoplazza(
        tokens={shop: f"token-{shop}" for shop in FAKE_SHOPS},
        recancel_status=recancel,
        error_shape=shape,
    )
    fake.orders.update(
        {
            ("open.example", "1"): "opened",
            ("cancelled.example", "2"): "cancelled",
            ("finished.example", "3"): "finished",
        }
    )
    await fake.start()
    try:
        settings = ShoplazzaTargetSettings.model_validate(
            {
                "shops": {
                    shop: {"token_env": f"T{n}", "base_url": f"{fake.url}/{shop}"}
                    for n, shop in enumerate(FAKE_SHOPS)
                }
            }
        )
        made = make_target(
            settings,
            {f"shops.{shop}.token_env": SecretStr(f"token-{shop}") for shop in FAKE_SHOPS},
        )
        async with Executor.running() as executor:
            outcomes = [  # one store each: two calls per store stay under the rate limit
                await attempt(executor, made.adapter, linked)
                for linked in (
                    "open.example/1",
                    "cancelled.example/2",
                    "finished.example/3",
                    "missing.example/4",
                )
            ]
    finally:
        await fake.stop()
    not_found = (
        "NotFound: Unable to find resource" if shape == "code" else "Unable to find resource"
    )
    assert outcomes == [
        Delivered(reference="1", order_id="1"),
        AlreadyDone("shoplazza: order 2 is already cancelled"),
        Rejected(
            "shoplazza: order 3 is 'finished', not cancellable (cancel answered HTTP 406: "
            + ("InvalidParameter: " if shape == "code" else "")
            + "order can not be cancelled)"
        ),
        Rejected(f"shoplazza: order not found ({not_found})"),
    ]
    assert fake.cancels == [("open.example", "1")]
    assert fake.reads == [("cancelled.example", "2"), ("finished.example", "3")]
    assert fake.too_fast == 0


async def attempt(executor: Executor, adapter: TargetAdapter, linked: str) -> Outcome:
    """One delivery as the worker makes it: the call, then its follow-ups, over real HTTP."""
    call = adapter.build(event(), NOW, linked)
    assert isinstance(call, HttpCall), call
    answer = await executor.call(call, within=5)
    assert isinstance(answer, HttpAnswer), answer
    result = adapter.interpret(call, answer.status, answer.headers, answer.body, NOW)
    while isinstance(result, FollowUp):
        answer = await executor.call(result.call, within=5)
        assert isinstance(answer, HttpAnswer), answer
        result = result.then(answer.status, answer.headers, answer.body, NOW)
    return result
