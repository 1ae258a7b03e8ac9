"""Buy with Prime events in, by plain calls: credentials, bodies, the order that completes them."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from pydantic import SecretStr

from contracts.events import CancelReason, OrderCancelled, Source, event_id_for
from handlers.base import (
    Ignored,
    Lookup,
    MalformedPayloadError,
    SignatureError,
    Unavailable,
)
from handlers.prime import PrimeSource, PrimeSourceSettings, issue_token, make_source

NOW = datetime(2025, 4, 9, 12, 0, tzinfo=UTC)
SECRETS = (SecretStr("current-password"), SecretStr("previous-password"))
API_SECRETS = {"api.client_id_env": SecretStr("id"), "api.client_secret_env": SecretStr("secret")}
SECTION: dict[str, Any] = {
    "secret_env": "PRIME_SECRET",
    "username": "prime-webhooks",
    "aliases": {"OMS_ORDER_ID": "shoplazza"},
    "api": {"client_id_env": "CID", "client_secret_env": "CSECRET"},
}


def configured(**changes: Any) -> PrimeSource:  # noqa: ANN401 - TOML values
    """The source `[sources.prime]` makes: `SECTION` with `changes`; `api` keys merge."""
    api = {**SECTION["api"], **changes.pop("api", {})}
    settings = PrimeSourceSettings.model_validate({**SECTION, **changes, "api": api})
    return make_source(settings, API_SECRETS)


BASIC_SOURCE = configured(api={"api_url": "https://prime.example/graphql"})
OAUTH_SOURCE = configured(auth="oauth", api={"api_url": "https://prime.example/graphql"})


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_basic_credentials_with_the_current_or_previous_secret() -> None:
    BASIC_SOURCE.verify(basic("prime-webhooks", "current-password"), b"", SECRETS, NOW)
    BASIC_SOURCE.verify(basic("prime-webhooks", "previous-password"), b"", SECRETS, NOW)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic("prime-webhooks", "wrong"),
        basic("intruder", "current-password"),
        {"Authorization": "Basic %%%"},
        {"Authorization": "Bearer token"},
    ],
)
def test_bad_basic_credentials_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(SignatureError) as caught:
        BASIC_SOURCE.verify(headers, b"", SECRETS, NOW)
    assert "current-password" not in str(caught.value)


def test_bearer_tokens_we_issued_are_accepted_until_they_expire() -> None:
    fresh = issue_token("prime-webhooks", SECRETS[0], datetime.now(UTC))
    OAUTH_SOURCE.verify({"Authorization": f"Bearer {fresh}"}, b"", SECRETS, NOW)
    old = issue_token("prime-webhooks", SECRETS[0], datetime.now(UTC) - timedelta(hours=1))
    forged = issue_token("prime-webhooks", SecretStr("another-secret"), datetime.now(UTC))
    for token in (old, forged, fresh + "x"):
        with pytest.raises(SignatureError):
            OAUTH_SOURCE.verify({"Authorization": f"Bearer {token}"}, b"", SECRETS, NOW)
    with pytest.raises(SignatureError):
        OAUTH_SOURCE.verify(basic("prime-webhooks", "current-password"), b"", SECRETS, NOW)


def event_body(kind: str = "PACKAGE_DELIVERY_CANCELLED", **extra: object) -> dict[str, Any]:
    return {
        "eventId": "ev-1",
        "idempotencyKey": "idem-1",
        "eventType": kind,
        "resources": ["businessProduct/bp-1/order/322-AAA/delivery/d-1"],
        "eventTime": "2025-04-09T11:00:00Z",
        **extra,
    }


def lookup(body: object) -> Lookup:
    found = BASIC_SOURCE.parse({}, orjson.dumps(body), NOW)
    assert isinstance(found, Lookup), found
    return found


def test_a_cancellation_event_asks_for_its_order() -> None:
    found = lookup(event_body())
    assert found.call.url == "https://prime.example/graphql"
    assert found.call.headers["x-api-target-id"] == "bp-1"
    assert found.call.headers["x-api-version"] == "2024-11-01"
    assert orjson.loads(found.call.body)["variables"] == {"order": {"orderId": "322-AAA"}}
    assert found.auth is not None


@pytest.mark.parametrize(
    "body",
    [
        event_body("DELIVERY_CANCELLED"),
        event_body("ITEM_CANCELLED"),
        {**event_body(), "eventType": None, "eventDescriptor": "PACKAGE_DELIVERY_CANCELLED"},
        {
            "detail-type": "PACKAGE_DELIVERY_CANCELLED",
            "detail": {**event_body(), "eventType": None},
        },
    ],
)
def test_older_types_descriptors_and_eventbridge_envelopes(body: object) -> None:
    assert isinstance(lookup(body), Lookup)


def test_other_event_types_are_ignored() -> None:
    for kind in ("REFUND_REQUESTED", "PACKAGE_DELIVERED"):
        assert isinstance(BASIC_SOURCE.parse({}, orjson.dumps(event_body(kind)), NOW), Ignored)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "not a JSON object"),
        (b"[1]", "not a JSON object"),
        (orjson.dumps(event_body(resources=["order/1"])), "no businessProduct"),
        (orjson.dumps(event_body(resources="oops")), "resources"),
    ],
)
def test_unreadable_events_are_quarantined(body: bytes, reason: str) -> None:
    with pytest.raises(MalformedPayloadError) as caught:
        BASIC_SOURCE.parse({}, body, NOW)
    assert reason in caught.value.reason


def order_answer(state: str = "CANCELLED", **order: object) -> bytes:
    return orjson.dumps(
        {
            "data": {
                "order": {
                    "id": "322-AAA",
                    "aliases": [
                        {"aliasId": "1001", "aliasType": "OMS_ORDER_ID"},
                        {"aliasId": "x", "aliasType": "OTHER_ALIAS"},
                    ],
                    "packageInformation": {
                        "summary": {"state": state},
                        "details": [{"id": "p", "state": state, "reason": "CUSTOMER_REQUESTED"}],
                    },
                    "cancellations": {
                        "details": [
                            {
                                "state": "SUCCESS",
                                "reason": "OUT_OF_STOCK",
                                "createdAt": "2025-04-09T10:30:00Z",
                            }
                        ]
                    },
                    **order,
                }
            }
        }
    )


def test_the_order_completes_the_event() -> None:
    event = lookup(event_body()).then(200, {}, order_answer())
    assert isinstance(event, OrderCancelled)
    assert (event.source, event.shop, event.order_id) == (Source.PRIME, "bp-1", "322-AAA")
    assert event.event_id == event_id_for(Source.PRIME, "bp-1", "322-AAA")
    assert (event.reason, event.source_reason) == (CancelReason.INVENTORY, "OUT_OF_STOCK")
    assert event.cancelled_at == datetime(2025, 4, 9, 10, 30, tzinfo=UTC)
    assert event.delivery_id == "idem-1"
    assert event.aliases == {"shoplazza": "1001"}


def test_without_a_cancellation_the_package_reason_and_event_time_count() -> None:
    event = lookup(event_body()).then(200, {}, order_answer(cancellations=None))
    assert isinstance(event, OrderCancelled)
    assert (event.reason, event.source_reason) == (
        CancelReason.CUSTOMER_REQUEST,
        "CUSTOMER_REQUESTED",
    )
    assert event.cancelled_at == datetime(2025, 4, 9, 11, 0, tzinfo=UTC)


def test_a_partial_cancellation_is_ignored_and_says_why() -> None:
    found = lookup(event_body()).then(200, {}, order_answer("IN_TRANSIT"))
    assert isinstance(found, Ignored)
    assert "the package summary is IN_TRANSIT" in found.reason
    assert "partial" in found.reason


def without_summary(packages: list[str], cancellations: list[str]) -> bytes:
    """An order whose packageInformation has details but no summary."""
    details = [
        {"id": f"p{n}", "state": s, "reason": "UNFULFILLABLE"} for n, s in enumerate(packages)
    ]
    return order_answer(
        packageInformation={"summary": None, "details": details},
        cancellations={"details": [{"state": s} for s in cancellations]},
    )


@pytest.mark.parametrize(
    "body",
    [
        without_summary(["CANCELLED", "CANCELLED"], []),
        without_summary(["CANCELLED", "CANCELLED"], ["REJECTED"]),
        without_summary([], ["PENDING"]),
        order_answer(packageInformation=None, cancellations={"details": [{"state": "SUCCESS"}]}),
        order_answer(
            packageInformation={"summary": None, "details": None},
            cancellations={"details": [None, {"state": "SUCCESS"}]},
        ),
    ],
)
def test_a_full_cancellation_without_a_package_summary_is_published(body: bytes) -> None:
    """No summary: every package CANCELLED; with no package listed, a live cancellation."""
    assert isinstance(lookup(event_body()).then(200, {}, body), OrderCancelled)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (without_summary(["CANCELLED", "IN_TRANSIT"], ["REJECTED"]), "IN_TRANSIT"),
        # A shopper's cancellation may cover some items: a package still moving outweighs it.
        (without_summary(["PENDING"], ["SUCCESS"]), "PENDING"),
        (without_summary(["CANCELLED", "DELIVERED"], ["SUCCESS"]), "DELIVERED"),
        (without_summary([], []), "nothing says the order is cancelled"),
        (order_answer(packageInformation=None, cancellations=None), "no packages"),
    ],
)
def test_without_a_summary_anything_less_is_ignored_with_its_reason(body: bytes, why: str) -> None:
    found = lookup(event_body()).then(200, {}, body)
    assert isinstance(found, Ignored)
    assert why in found.reason
    assert "322-AAA" in found.reason


def test_a_form_token_request_when_configured() -> None:
    handler = configured(aliases={}, api={"token_client_auth": "form", "api_version": "2024-04-01"})
    found = handler.parse({}, orjson.dumps(event_body()), NOW)
    assert isinstance(found, Lookup)
    assert found.auth is not None
    assert "Authorization" not in found.auth.request.headers
    assert b"client_secret=secret" in found.auth.request.body
    assert "deliveryInformation" in orjson.loads(found.call.body)["query"]


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (503, b""),
        (429, b""),
        (401, b""),
        (200, b"<html>"),
        (
            200,
            orjson.dumps(
                {"errors": [{"extensions": {"classification": {"type": "ThrottlingError"}}}]}
            ),
        ),
        (200, orjson.dumps({"errors": [{"extensions": {"classification": "ThrottlingError"}}]})),
        # A document Prime's schema refuses (our bug): Prime resends after the fix.
        (
            400,
            orjson.dumps(
                {
                    "errors": [
                        {"message": "x", "extensions": {"classification": "ValidationError"}}
                    ],
                    "data": None,
                }
            ),
        ),
    ],
)
def test_prime_not_answering_is_unavailable(status: int, body: bytes) -> None:
    assert isinstance(lookup(event_body()).then(status, {}, body), Unavailable)


@pytest.mark.parametrize(
    "classification", [{"type": "ResourceNotFoundError"}, "ResourceNotFoundError"]
)
def test_an_order_prime_does_not_know_is_quarantined(classification: object) -> None:
    body = orjson.dumps(
        {
            "errors": [
                {
                    "message": "nope",
                    "extensions": {"classification": classification},
                }
            ],
            "data": {"order": None},
        }
    )
    with pytest.raises(MalformedPayloadError, match="prime has no order 322-AAA"):
        lookup(event_body()).then(200, {}, body)


def test_null_lists_in_the_order_answer_are_read_as_empty() -> None:
    """The schema makes `aliases`, package `details` and cancellation `details` nullable."""
    body = order_answer(
        aliases=None,
        packageInformation={"summary": {"state": "CANCELLED"}, "details": None},
        cancellations={"details": None},
    )
    assert isinstance(lookup(event_body()).then(200, {}, body), OrderCancelled)
