"""Cancelling on OCC: login, the cancel call, and what each documented error code means."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from multidict import CIMultiDict
from pydantic import SecretStr

from bridge.executor import Executor, HttpAnswer
from bridge.tokens import TokenCache, with_token
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
    Token,
)
from handlers.occ import OCCTargetSettings, confirm_read, make_target, read_login
from tests.fakes.occ import FakeOCC

NOW = datetime(2025, 4, 9, 12, 0, tzinfo=UTC)
APP_KEY = "occ-app-key-jwt"
SETTINGS = OCCTargetSettings.model_validate(
    {
        "base_url": "https://admin.example.com/",
        "default_site": "siteUS",
        "reasons": {"fraud": "fraudSuspected"},
        "sites": {"siteEU": {"reasons": {"fraud": "betrugsverdacht"}}},
    }
)
MADE = make_target(SETTINGS, {"app_key_env": SecretStr(APP_KEY)})
ADAPTER = MADE.adapter


def event(reason: CancelReason = CancelReason.FRAUD) -> OrderCancelled:
    return OrderCancelled.create(
        source=Source.SHOPLAZZA,
        shop="demo.myshoplaza.com",
        order_id="1001",
        order_number=None,
        reason=reason,
        source_reason=None,
        cancelled_at=NOW,
        received_at=NOW,
        delivery_id=None,
    )


def call(linked: str = "o30413", reason: CancelReason = CancelReason.FRAUD) -> HttpCall:
    built = ADAPTER.build(event(reason), NOW, linked)
    assert isinstance(built, HttpCall), built
    return built


def test_login_uses_the_app_key_and_the_client_credentials_grant() -> None:
    assert MADE.auth is not None
    login = MADE.auth.request
    assert (login.method, login.url) == ("POST", "https://admin.example.com/ccadmin/v1/login")
    assert login.headers["Authorization"] == f"Bearer {APP_KEY}"
    assert login.body == b"grant_type=client_credentials"
    assert APP_KEY not in MADE.summary
    assert MADE.link_platform == "occ"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, {"access_token": "tok", "expires_in": 120}, Token(SecretStr("tok"), 120.0)),
        (200, {"access_token": "tok"}, Token(SecretStr("tok"), 300.0)),
        (401, {}, Rejected("occ login refused the credentials (HTTP 401)")),
        (503, b"", RetryLater("occ login answered HTTP 503")),
        (200, b"<html>", RetryLater("occ login answered with a body that is not JSON")),
        (
            200,
            {"token_type": "bearer"},
            Rejected("occ login answered HTTP 200 without an access_token"),
        ),
    ],
)
def test_the_login_answer(status: int, body: object, expected: object) -> None:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    assert read_login(status, CIMultiDict(), raw) == expected


def test_the_cancel_call_names_site_order_and_reason() -> None:
    built = call()
    assert (built.method, built.url) == (
        "POST",
        "https://admin.example.com/ccadmin/v1/orders/cancel",
    )
    assert built.headers["x-ccsite"] == "siteUS"
    assert "Authorization" not in built.headers  # the worker adds the token
    assert orjson.loads(built.body) == {"orderId": "o30413", "cancelReason": "fraudSuspected"}
    eu = call("siteEU/o1")
    assert eu.headers["x-ccsite"] == "siteEU"
    assert orjson.loads(eu.body) == {"orderId": "o1", "cancelReason": "betrugsverdacht"}
    default = call(reason=CancelReason.PAYMENT_DECLINED)
    assert orjson.loads(default.body)["cancelReason"] == "paymentNotReceived"


def test_no_link_is_rejected() -> None:
    assert isinstance(ADAPTER.build(event(), NOW, None), Rejected)


def interpret(status: int, body: object) -> object:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return ADAPTER.interpret(call(), status, CIMultiDict(), raw, NOW)


def error(code: str, message: str = "m") -> dict[str, str]:
    return {"errorCode": code, "message": message, "status": "400"}


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, {"result": "success"}, Delivered(reference="o30413", order_id="o30413")),
        (
            400,
            error("210105", "Order not found"),
            Rejected("occ: order not found (Order not found)"),
        ),
        (
            400,
            error("200218", "Invalid cancel reason"),
            Rejected("occ: 200218 Invalid cancel reason (check [targets.occ] reasons and sites)"),
        ),
        (
            400,
            error("28107", "shopper scope"),
            Rejected("occ: 28107 shopper scope (check [targets.occ] reasons and sites)"),
        ),
        (401, {}, Rejected("occ credentials refused (HTTP 401)")),
        (429, b"", RetryLater("occ answered HTTP 429")),
        (500, b"oops", RetryLater("occ answered HTTP 500")),
        (400, {"errorCode": 123, "message": "odd"}, Rejected("occ answered HTTP 400: 123 odd")),
    ],
)
def test_documented_answers(status: int, body: object, expected: object) -> None:
    assert interpret(status, body) == expected


def test_the_multiple_error_format_is_read_by_its_first_code() -> None:
    """The multiple-error format: the first entry's code decides (no top-level errorCode)."""
    body = {
        "message": "Error while cancelling",
        "errors": [{"errorCode": "210105", "message": "Order not found", "status": "400"}],
        "status": "400",
    }
    assert interpret(400, body) == Rejected("occ: order not found (Order not found)")
    follow = interpret(
        400, {"errors": [{"message": "x"}, {"errorCode": "200101"}], "status": "400"}
    )
    assert isinstance(follow, FollowUp)


def test_not_cancellable_reads_the_order() -> None:
    follow = interpret(400, error("200101", "Order cannot be cancelled"))
    assert isinstance(follow, FollowUp)
    assert (follow.call.method, follow.call.url) == (
        "GET",
        "https://admin.example.com/ccadmin/v1/orders/o30413",
    )
    assert follow.call.headers["x-ccsite"] == "siteUS"


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, {"id": "o1", "state": "REMOVED"}, AlreadyDone("occ: order o1 is already REMOVED")),
        (
            200,
            {"id": "o1", "state": "NO_PENDING_ACTION"},
            Rejected("occ: order o1 is 'NO_PENDING_ACTION', not cancellable"),
        ),
        (404, error("210105", "nope"), Rejected("occ: order not found (nope)")),
        (503, b"", RetryLater("occ answered HTTP 503")),
    ],
)
def test_the_confirm_read(status: int, body: object, expected: object) -> None:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    assert confirm_read(status, CIMultiDict(), raw, NOW) == expected


# --- against the fake OCC, with each undocumented behaviour it can take ----------------------


@pytest.mark.parametrize(("sent", "lifetime"), [(None, 300.0), (3600, 3600.0), (60, 60.0)])
async def test_the_login_lifetime_is_expires_in_else_five_minutes(
    sent: int | None, lifetime: float
) -> None:
    """OCC documents no `expires_in` (the fake omits it by default): then 5 minutes."""
    fake = FakeOCC(app_key=APP_KEY, login_expires_in=sent)
    await fake.start()
    try:
        made = make_target(
            OCCTargetSettings(base_url=fake.url), {"app_key_env": SecretStr(APP_KEY)}
        )
        assert made.auth is not None
        async with Executor.running() as executor:
            answer = await executor.call(made.auth.request, within=5)
        assert isinstance(answer, HttpAnswer)
        assert made.auth.read(answer.status, answer.headers, answer.body) == Token(
            SecretStr("occ-token-1"), lifetime
        )
        refused = make_target(
            OCCTargetSettings(base_url=fake.url), {"app_key_env": SecretStr("wrong")}
        ).auth
        assert refused is not None
        async with Executor.running() as executor:
            answer = await executor.call(refused.request, within=5)
        assert isinstance(answer, HttpAnswer)
        assert refused.read(answer.status, answer.headers, answer.body) == Rejected(
            "occ login refused the credentials (HTTP 401)"
        )
    finally:
        await fake.stop()


async def test_the_target_against_the_fake_for_each_documented_answer() -> None:
    """Open, removed, shipped, unknown, bad reason, no site: the outcomes PLATFORMS.md maps."""
    fake = FakeOCC(app_key=APP_KEY)
    fake.orders.update(
        {("siteUS", "o1"): "SUBMITTED", ("siteUS", "o2"): "REMOVED", ("siteUS", "o3"): "SHIPPED"}
    )
    fake.orders[("siteEU", "o5")] = "SUBMITTED"
    await fake.start()
    try:
        settings = OCCTargetSettings.model_validate(
            {
                "base_url": fake.url,
                "default_site": "siteUS",
                "sites": {"siteEU": {"reasons": {"fraud": "betrugsverdacht"}}},
            }
        )
        made = make_target(settings, {"app_key_env": SecretStr(APP_KEY)})
        assert made.auth is not None
        async with Executor.running() as executor:
            token = await TokenCache(made.auth, executor, 5).get()
            assert isinstance(token, str), token
            outcomes = [
                await attempt(executor, made.adapter, linked, token)
                for linked in ("o1", "o2", "o3", "o4", "siteEU/o5")
            ]
            no_site = await executor.call(
                HttpCall(
                    "POST",
                    f"{fake.url}/ccadmin/v1/orders/cancel",
                    {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                    orjson.dumps({"orderId": "o1", "cancelReason": "changeOfMind"}),
                ),
                within=5,
            )
    finally:
        await fake.stop()
    assert outcomes == [
        Delivered(reference="o1", order_id="o1"),
        AlreadyDone("occ: order o2 is already REMOVED"),
        Rejected("occ: order o3 is 'SHIPPED', not cancellable"),
        Rejected("occ: order not found (Order o4 not found.)"),
        Rejected(
            "occ: 200218 Invalid cancel reason betrugsverdacht."
            " (check [targets.occ] reasons and sites)"
        ),
    ]
    assert fake.cancels == [("siteUS", "o1", "cannotProcessOrder")]
    assert isinstance(no_site, HttpAnswer)
    assert orjson.loads(no_site.body) == {
        "errorCode": "200126",
        "message": "Invalid Input.",
        "status": "400",
    }


async def attempt(executor: Executor, adapter: TargetAdapter, linked: str, token: str) -> Outcome:
    """One delivery as the worker makes it (bearer added), over real HTTP."""
    call = adapter.build(event(), NOW, linked)
    assert isinstance(call, HttpCall), call
    answer = await executor.call(with_token(call, token), within=5)
    assert isinstance(answer, HttpAnswer), answer
    result = adapter.interpret(call, answer.status, answer.headers, answer.body, NOW)
    while isinstance(result, FollowUp):
        answer = await executor.call(with_token(result.call, token), within=5)
        assert isinstance(answer, HttpAnswer), answer
        result = result.then(answer.status, answer.headers, answer.body, NOW)
    return result
