"""Cancelling on OCC: login, the cancel call, and what each documented error code means."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from multidict import CIMultiDict
from pydantic import SecretStr

from contracts.events import CancelReason, OrderCancelled, Source
from handlers.base import AlreadyDone, Delivered, FollowUp, HttpCall, Rejected, RetryLater, Token
from handlers.occ import OCCTargetSettings, confirm_read, make_target, read_login

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
