"""Cancelling on Buy with Prime: the token request, the mutation, and each documented error."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict
from pydantic import SecretStr

from contracts.events import CancelReason, OrderCancelled, Source
from handlers.base import AlreadyDone, Delivered, FollowUp, HttpCall, Rejected, RetryLater, Token
from handlers.prime import (
    PrimeTargetSettings,
    confirm_read,
    make_target,
    read_token,
    token_call,
)

NOW = datetime(2025, 4, 9, 12, 0, tzinfo=UTC)
SECRETS = {"client_id_env": SecretStr("cid"), "client_secret_env": SecretStr("csecret")}
SETTINGS = PrimeTargetSettings.model_validate({"business_product_id": "bp-123"})
MADE = make_target(SETTINGS, SECRETS)
EVENT = OrderCancelled.create(
    source=Source.SHOPLAZZA,
    shop="demo.myshoplaza.com",
    order_id="1001",
    order_number=None,
    reason=CancelReason.INVENTORY,
    source_reason=None,
    cancelled_at=NOW,
    received_at=NOW,
    delivery_id=None,
)


def cancel(adapter: Any = MADE.adapter, linked: str = "322-KG36-AAAAA") -> HttpCall:  # noqa: ANN401
    built = adapter.build(EVENT, NOW, linked)
    assert isinstance(built, HttpCall), built
    return built


def test_the_token_request_is_client_credentials_with_basic_auth() -> None:
    assert MADE.auth is not None
    request = MADE.auth.request
    assert (request.method, request.url) == ("POST", "https://api.buywithprime.amazon.com/token")
    assert request.headers["Authorization"] == "Basic " + base64.b64encode(b"cid:csecret").decode()
    assert request.body == b"grant_type=client_credentials"
    assert "csecret" not in MADE.summary


def test_the_token_request_by_form_fields() -> None:
    """`token_client_auth = "form"`: the client id and secret as form fields, no Basic header."""
    settings = PrimeTargetSettings.model_validate(
        {"business_product_id": "bp-123", "token_client_auth": "form"}
    )
    auth = make_target(settings, SECRETS).auth
    assert auth is not None
    assert "Authorization" not in auth.request.headers
    assert auth.request.body == (
        b"grant_type=client_credentials&client_id=cid&client_secret=csecret"
    )
    assert auth.request == token_call(
        "https://api.buywithprime.amazon.com/token",
        SecretStr("cid"),
        SecretStr("csecret"),
        "form",
    )


def test_an_api_version_without_a_transcribed_schema_is_refused() -> None:
    with pytest.raises(ValueError, match="api_version"):
        PrimeTargetSettings.model_validate(
            {"business_product_id": "bp-123", "api_version": "2025-01-01"}
        )


def test_the_2024_04_01_mutation_names_the_order_inside_its_input() -> None:
    settings = PrimeTargetSettings.model_validate(
        {"business_product_id": "bp-123", "api_version": "2024-04-01"}
    )
    built = cancel(make_target(settings, SECRETS).adapter)
    document = orjson.loads(built.body)
    assert "cancelOrder(input: $input)" in document["query"]
    assert document["variables"]["input"]["orderIdentifier"] == {"orderId": "322-KG36-AAAAA"}
    assert built.headers["x-api-version"] == "2024-04-01"
    accepted = {"data": {"cancelOrder": {"cancellation": {"id": "dd1", "state": "PENDING"}}}}
    answer = make_target(settings, SECRETS).adapter.interpret(
        built, 200, CIMultiDict(), orjson.dumps(accepted), NOW
    )
    assert answer == Delivered(reference="dd1", order_id="322-KG36-AAAAA")


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, {"access_token": "t", "expires_in": 900}, Token(SecretStr("t"), 900.0)),
        (200, {"access_token": "t"}, Token(SecretStr("t"), 900.0)),
        (200, {"access_token": "t", "expires_in": 300}, Token(SecretStr("t"), 300.0)),
        (200, {"access_token": "t", "expires_in": 0}, Token(SecretStr("t"), 900.0)),
        (200, {"access_token": "t", "expires_in": "300"}, Token(SecretStr("t"), 300.0)),
        (200, {"access_token": "t", "expires_in": "soon"}, Token(SecretStr("t"), 900.0)),
        (200, {"access_token": "t", "expires_in": True}, Token(SecretStr("t"), 900.0)),
        (200, {"access_token": "t", "expires_in": "\u00b2"}, Token(SecretStr("t"), 900.0)),
        (200, {"access_token": "t", "expires_in": "9" * 5000}, Token(SecretStr("t"), 86400.0)),
        (200, {"access_token": "t", "expires_in": 1e308}, Token(SecretStr("t"), 86400.0)),
        (401, {}, Rejected("prime token endpoint refused the credentials (HTTP 401)")),
        (429, b"", RetryLater("prime token endpoint answered HTTP 429")),
    ],
)
def test_the_token_answer(status: int, body: object, expected: object) -> None:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    assert read_token(status, CIMultiDict(), raw) == expected


def test_the_mutation_by_order_id_carries_the_event_id_alias_and_reason() -> None:
    built = cancel()
    assert built.url == "https://api.buywithprime.amazon.com/graphql"
    assert built.headers["x-api-version"] == "2024-11-01"
    assert built.headers["x-api-target-id"] == "bp-123"
    document = orjson.loads(built.body)
    assert "cancelOrder(orderIdentifier: $order, input: $input)" in document["query"]
    assert document["variables"] == {
        "order": {"orderId": "322-KG36-AAAAA"},
        "input": {
            "aliases": [{"aliasId": str(EVENT.event_id), "aliasType": "EXTERNAL_CANCELLATION_ID"}],
            "reason": "OUT_OF_STOCK",
        },
    }


def test_the_mutation_by_alias() -> None:
    settings = PrimeTargetSettings.model_validate(
        {"business_product_id": "bp-123", "order_by": "alias", "alias_type": "OMS_ORDER_ID"}
    )
    built = cancel(make_target(settings, SECRETS).adapter, "1001")
    assert orjson.loads(built.body)["variables"]["order"] == {
        "alias": {"aliasId": "1001", "aliasType": "OMS_ORDER_ID"}
    }


def error(kind: str, code: str = "", message: str = "m") -> dict[str, object]:
    return {
        "errors": [
            {
                "message": message,
                "extensions": {"classification": {"type": kind, "code": code, "errorCode": 400}},
            }
        ],
        "data": {"cancelOrder": None},
    }


def plain(kind: str, message: str = "m") -> dict[str, object]:
    """An error classified graphql-java style: `extensions.classification` a plain string."""
    return {
        "errors": [{"message": message, "extensions": {"classification": kind}}],
        "data": None,
    }


ACCEPTED = {
    "data": {
        "cancelOrder": {
            "cancellation": {"id": "dd24641f", "state": "PENDING", "requestedBy": "MERCHANT"}
        }
    }
}


def interpret(status: int, body: object) -> object:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    return MADE.adapter.interpret(cancel(), status, CIMultiDict(), raw, NOW)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, ACCEPTED, Delivered(reference="dd24641f", order_id="322-KG36-AAAAA")),
        (
            200,
            error("ResourceNotFoundError", message="no order"),
            Rejected("prime: order not found (no order)"),
        ),
        (
            200,
            error("AccessDeniedError", message="denied"),
            Rejected("prime: AccessDeniedError  denied"),
        ),
        (
            200,
            error("ValidationError", "InvalidInput", "bad"),
            Rejected("prime: ValidationError InvalidInput bad"),
        ),
        (200, error("ThrottlingError"), RetryLater("prime: ThrottlingError")),
        (200, error("InternalServerError"), RetryLater("prime: InternalServerError")),
        (200, plain("ThrottlingError"), RetryLater("prime: ThrottlingError")),
        (200, plain("ResourceNotFoundError", "gone"), Rejected("prime: order not found (gone)")),
        (400, plain("ValidationError", "bad field"), Rejected("prime: ValidationError  bad field")),
        (429, b"", RetryLater("prime answered HTTP 429")),
        (503, b"", RetryLater("prime answered HTTP 503")),
        (401, b"", Rejected("prime credentials refused (HTTP 401)")),
        (200, b"<html>", RetryLater("prime answered HTTP 200 with a body that is not JSON")),
        (200, {"data": {}}, RetryLater("prime answered without a cancellation or errors")),
    ],
)
def test_documented_answers(status: int, body: object, expected: object) -> None:
    assert interpret(status, body) == expected


@pytest.mark.parametrize(
    "body",
    [
        error("ValidationError", "CancellationIneligible", "fulfillment is in progress"),
        error("ConflictError", "", "alias already used"),
        plain("ConflictError", "alias already used"),
    ],
)
def test_ineligible_or_conflict_reads_the_order(body: object) -> None:
    follow = interpret(200, body)
    assert isinstance(follow, FollowUp)
    document = orjson.loads(follow.call.body)
    assert document["query"].startswith("query Order(")
    assert document["variables"] == {"order": {"orderId": "322-KG36-AAAAA"}}
    assert follow.call.headers["x-api-target-id"] == "bp-123"


def order(
    cancellations: list[str], package: str | None = "PENDING", details: tuple[str, ...] = ()
) -> dict[str, object]:
    summary = {"state": package} if package else None
    return {
        "data": {
            "order": {
                "id": "322-KG36-AAAAA",
                "packageInformation": {
                    "summary": summary,
                    "details": [{"id": f"p{n}", "state": s} for n, s in enumerate(details)],
                },
                "cancellations": {"details": [{"state": s} for s in cancellations]},
            }
        }
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (order(["PENDING"]), AlreadyDone("prime: order 322-KG36-AAAAA already has a cancellation")),
        (order(["SUCCESS"]), AlreadyDone("prime: order 322-KG36-AAAAA already has a cancellation")),
        (
            order([], "CANCELLED"),
            AlreadyDone("prime: order 322-KG36-AAAAA already has a cancellation"),
        ),
        (
            order(["REJECTED"], "IN_TRANSIT"),
            Rejected("prime: order 322-KG36-AAAAA cannot be cancelled (not eligible)"),
        ),
        (
            order([], None, ("CANCELLED", "CANCELLED")),
            AlreadyDone("prime: order 322-KG36-AAAAA already has a cancellation"),
        ),
        (
            order([], None, ("CANCELLED", "IN_TRANSIT")),
            Rejected("prime: order 322-KG36-AAAAA cannot be cancelled (not eligible)"),
        ),
        (error("ThrottlingError"), RetryLater("prime order read: ThrottlingError")),
        (plain("ThrottlingError"), RetryLater("prime order read: ThrottlingError")),
        (
            plain("ValidationError", "no such field"),
            Rejected("prime order read failed: ValidationError no such field"),
        ),
    ],
)
def test_the_confirm_read(body: object, expected: object) -> None:
    assert confirm_read(200, CIMultiDict(), orjson.dumps(body), NOW) == expected


def test_a_confirm_read_refused_with_http_400_is_rejected() -> None:
    """Schema refusals may come as HTTP 400 (undocumented): no retry loop, a reason."""
    found = confirm_read(400, CIMultiDict(), orjson.dumps(plain("ValidationError", "x")), NOW)
    assert found == Rejected("prime order read failed: ValidationError x")
