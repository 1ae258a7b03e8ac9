"""Shoplazza webhooks in: signature vectors and payload parsing (PLATFORMS.md section 1)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from multidict import CIMultiDict
from pydantic import SecretStr

from contracts.events import CancelReason, OrderCancelled, Source, event_id_for
from handlers import shoplazza
from handlers.base import Ignored, MalformedPayloadError, SignatureError, WebhookError

SECRET = "shpss_current_Zq8vT3kLm"
PREVIOUS = "shpss_previous_Rw4xN7pJd"
NOW = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
RECEIVED = datetime(2024, 3, 1, 12, 0, 5, tzinfo=UTC)

# Known answers computed outside Python, with openssl: the body piped through
# `printf '%s' BODY | openssl dgst -sha256 -hmac shpss_known_answer -binary | base64`
# (and `-hex` instead of `-binary | base64` for the hex digest).
SOURCE = shoplazza.ShoplazzaSource()

KNOWN_SECRET = "shpss_known_answer"
KNOWN_BODY = b'{"id":"1001","status":"cancelled"}'
KNOWN_SIGNATURE = "FGqSdFlwEUnL/iryujM+7SeOdDmx1PW/+YN91UBcKMk="
KNOWN_HEX = "146a927459701149cbfe2af2ba333eed278e7439b1d4f5bff9837dd5405c28c9"
# Same, for the empty body (`printf ''`).
KNOWN_EMPTY_SIGNATURE = "UO/nu16JjZxdSox6uvs8no1r6dX8n7qIfZnTj87luKI="

SIG = "X-Shoplazza-Hmac-Sha256"
TOPIC = "X-Shoplazza-Topic"
SHOP = "X-Shoplazza-Shop-Domain"
DEDUP = "X-Shoplazza-Deduplication-ID"

BODY = b'{"id": "1001", "number": "#1001", "status": "cancelled", "cancel_reason": "fraud"}'


def reference_signature(body: bytes, secret: str) -> str:
    """The header value, computed here without the module under test."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def verify(headers: Mapping[str, str], body: bytes, secrets: tuple[str, ...] = (SECRET,)) -> None:
    SOURCE.verify(CIMultiDict(headers), body, [SecretStr(secret) for secret in secrets], NOW)


# --- signature ---------------------------------------------------------------------------------


def test_known_answer_vector_is_accepted() -> None:
    """The openssl-computed signature verifies, and `sign` reproduces it."""
    verify({SIG: KNOWN_SIGNATURE}, KNOWN_BODY, (KNOWN_SECRET,))
    assert shoplazza.sign(KNOWN_BODY, KNOWN_SECRET) == KNOWN_SIGNATURE


def test_known_answer_vector_for_empty_body_is_accepted() -> None:
    verify({SIG: KNOWN_EMPTY_SIGNATURE}, b"", (KNOWN_SECRET,))
    assert shoplazza.sign(b"", KNOWN_SECRET) == KNOWN_EMPTY_SIGNATURE


def test_reference_signature_matches_openssl() -> None:
    """The in-test helper agrees with openssl, so the vectors below are trustworthy."""
    assert reference_signature(KNOWN_BODY, KNOWN_SECRET) == KNOWN_SIGNATURE


@pytest.mark.parametrize(
    "body",
    [
        BODY,
        b'{"order": {"id": 1001, "status": "cancelled"}}',
        '{"id": "1001", "cancel_reason": "Kunde möchte stornieren 顧客"}'.encode(),
        b"\xff\xfe not even utf-8",
        b"x" * 100_000,
    ],
    ids=["bare", "wrapped", "non-ascii", "binary", "large"],
)
def test_signature_computed_in_test_is_accepted(body: bytes) -> None:
    signature = reference_signature(body, SECRET)
    verify({SIG: signature}, body)
    assert shoplazza.sign(body, SECRET) == signature


def test_signature_header_name_is_case_insensitive() -> None:
    verify({SIG.lower(): reference_signature(BODY, SECRET)}, BODY)


@pytest.mark.parametrize("signed_with", [SECRET, PREVIOUS])
def test_current_and_previous_secret_are_both_accepted(signed_with: str) -> None:
    """While a secret rotates, bodies signed with either one verify."""
    verify({SIG: reference_signature(BODY, signed_with)}, BODY, (SECRET, PREVIOUS))


def test_previous_secret_is_refused_once_rotation_ends() -> None:
    with pytest.raises(SignatureError):
        verify({SIG: reference_signature(BODY, PREVIOUS)}, BODY, (SECRET,))


def test_no_secrets_accepts_nothing() -> None:
    with pytest.raises(SignatureError):
        verify({SIG: reference_signature(BODY, SECRET)}, BODY, ())


GOOD = reference_signature(BODY, SECRET)

BAD_SIGNATURES = [
    pytest.param({SIG: reference_signature(BODY, "shpss_wrong_secret")}, BODY, id="wrong-secret"),
    pytest.param({}, BODY, id="missing-header"),
    pytest.param({SIG: ""}, BODY, id="empty-header"),
    pytest.param({SIG: "   "}, BODY, id="blank-header"),
    pytest.param(
        {SIG: hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()}, BODY, id="hex-digest"
    ),
    pytest.param({SIG: KNOWN_HEX}, KNOWN_BODY, id="hex-digest-known-answer"),
    pytest.param({SIG: GOOD[:-1]}, BODY, id="truncated-by-one"),
    pytest.param({SIG: GOOD[:20]}, BODY, id="truncated-half"),
    pytest.param({SIG: GOOD + "A"}, BODY, id="one-char-too-long"),
    pytest.param({SIG: GOOD.rstrip("=")}, BODY, id="padding-stripped"),
    pytest.param({SIG: reference_signature(b"", "shpss_wrong_secret")}, b"", id="empty-body-wrong"),
    pytest.param({SIG: "not-base64-é-ü-签名"}, BODY, id="non-ascii-header"),
    pytest.param({SIG: GOOD}, BODY + b" ", id="body-one-byte-longer"),
    pytest.param({SIG: GOOD}, BODY.replace(b"fraud", b"Fraud"), id="body-altered"),
    pytest.param(
        {SIG: reference_signature(orjson.dumps(orjson.loads(BODY)), SECRET)},
        BODY,
        id="signed-re-serialised-body",
    ),
    pytest.param(
        {SIG: base64.urlsafe_b64encode(hmac.digest(b"x", b"?", "sha256")).decode()},
        b"?",
        id="urlsafe-alphabet-wrong-secret",
    ),
]


@pytest.mark.parametrize(("headers", "body"), BAD_SIGNATURES)
def test_bad_signature_is_refused_with_401(headers: dict[str, str], body: bytes) -> None:
    with pytest.raises(SignatureError) as caught:
        verify(headers, body, (SECRET, PREVIOUS))
    error = caught.value
    assert isinstance(error, WebhookError)
    assert error.status == 401
    assert error.code == "bad_signature"
    assert error.detail
    for secret in (SECRET, PREVIOUS):
        assert secret not in str(error)
        assert secret not in repr(error)
        assert secret not in error.detail


def test_missing_header_error_names_the_header() -> None:
    with pytest.raises(SignatureError, match=SIG):
        verify({TOPIC: "orders/cancelled"}, BODY)


# --- parsing -----------------------------------------------------------------------------------

BASE_HEADERS: dict[str, str] = {
    TOPIC: "orders/cancelled",
    SHOP: "Demo-Shop.MyShoplaza.com",
    DEDUP: "dedup-0001",
    "X-Shoplazza-Api-Version": "2022-01",
    SIG: "ignored-by-parse",
}
SHOP_ID = "demo-shop.myshoplaza.com"

ORDER: dict[str, object] = {
    "id": "1001",
    "number": "#1001",
    "status": "cancelled",
    "cancel_reason": "Customer changed mind",
    "cancelled_at": "2024-03-01T10:00:00+08:00",
    "updated_at": "2024-03-01T10:00:03+08:00",
    "financial_status": "refunded",
    "fulfillment_status": "cancelled",
    "line_items": [{"id": "li-1", "quantity": 2}],
}


def make_headers(overrides: Mapping[str, str | None] | None = None) -> CIMultiDict[str]:
    """BASE_HEADERS with `overrides` applied; a None value removes the header."""
    headers = CIMultiDict(BASE_HEADERS)
    for name, value in (overrides or {}).items():
        headers.popall(name, None)
        if value is not None:
            headers[name] = value
    return headers


def parse(
    document: object, overrides: Mapping[str, str | None] | None = None
) -> OrderCancelled | Ignored:
    body = document if isinstance(document, bytes) else orjson.dumps(document)
    return SOURCE.parse(make_headers(overrides), body, RECEIVED)


def parse_event(
    document: object, overrides: Mapping[str, str | None] | None = None
) -> OrderCancelled:
    result = parse(document, overrides)
    assert isinstance(result, OrderCancelled), result
    return result


def order(**changes: object) -> dict[str, object]:
    """ORDER with `changes`; a None value removes the field."""
    merged = {**ORDER, **changes}
    return {key: value for key, value in merged.items() if value is not None}


def test_bare_order_becomes_the_canonical_event() -> None:
    event = parse_event(ORDER)
    assert event.source is Source.SHOPLAZZA
    assert event.shop == SHOP_ID
    assert event.order_id == "1001"
    assert event.order_number == "#1001"
    assert event.reason is CancelReason.CUSTOMER_REQUEST
    assert event.source_reason == "Customer changed mind"
    assert event.cancelled_at == datetime(2024, 3, 1, 2, 0, tzinfo=UTC)
    assert event.received_at == RECEIVED
    assert event.delivery_id == "dedup-0001"
    assert event.event_id == event_id_for(Source.SHOPLAZZA, SHOP_ID, "1001")


def test_wrapped_order_gives_the_same_event_as_the_bare_one() -> None:
    """Third-party senders wrap the order as {"order": {...}}."""
    assert parse_event({"order": ORDER}) == parse_event(ORDER)


@pytest.mark.parametrize(
    ("raw_id", "expected"),
    [
        ("1001", "1001"),
        (1001, "1001"),
        (" 1001 ", "1001"),
        ("a5f1c2e0-7b9d-4c1e-9f00-1234567890ab", "a5f1c2e0-7b9d-4c1e-9f00-1234567890ab"),
        (9_007_199_254_740_993, "9007199254740993"),  # beyond float precision: kept exact
    ],
)
def test_order_id_as_string_or_number(raw_id: object, expected: str) -> None:
    assert parse_event(order(id=raw_id)).order_id == expected


def test_numeric_and_string_ids_give_one_event_id() -> None:
    """A number and its string are one order: redeliveries must de-duplicate."""
    assert parse_event(order(id=1001)).event_id == parse_event(order(id="1001")).event_id


@pytest.mark.parametrize(
    ("raw_number", "expected"),
    [("#1001", "#1001"), ("1001", "1001"), (1001, "1001"), (None, None), ("", None)],
)
def test_order_number_as_string_or_number(raw_number: object, expected: str | None) -> None:
    assert parse_event(order(number=raw_number)).order_number == expected


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        pytest.param(
            {"cancelled_at": "2024-03-01T10:00:00+08:00"},
            datetime(2024, 3, 1, 2, 0, tzinfo=UTC),
            id="cancelled_at-positive-offset",
        ),
        pytest.param(
            {"canceled_at": "2024-03-01T10:00:00-05:00"},
            datetime(2024, 3, 1, 15, 0, tzinfo=UTC),
            id="canceled_at-negative-offset",
        ),
        pytest.param(
            {"cancelled_at": "2024-03-01T10:00:00Z", "canceled_at": "2024-02-01T10:00:00Z"},
            datetime(2024, 3, 1, 10, 0, tzinfo=UTC),
            id="both-spellings-cancelled_at-wins",
        ),
        pytest.param(
            {"cancelled_at": None, "canceled_at": "2024-03-01T23:30:00-01:00"},
            datetime(2024, 3, 2, 0, 30, tzinfo=UTC),
            id="null-cancelled_at-uses-canceled_at",
        ),
        pytest.param(
            {"updated_at": "2024-03-01T09:30:00+01:00"},
            datetime(2024, 3, 1, 8, 30, tzinfo=UTC),
            id="fallback-updated_at",
        ),
        pytest.param(
            {"cancelled_at": "yesterday", "updated_at": "2024-03-01T09:30:00Z"},
            datetime(2024, 3, 1, 9, 30, tzinfo=UTC),
            id="unreadable-cancelled_at-falls-back",
        ),
        pytest.param({}, RECEIVED, id="fallback-received_at"),
        pytest.param({"cancelled_at": "", "updated_at": "  "}, RECEIVED, id="blank-fallback"),
        pytest.param(
            {"cancelled_at": "2024-03-01T10:00:00"},
            datetime(2024, 3, 1, 10, 0, tzinfo=UTC),
            id="no-offset-is-utc",
        ),
        pytest.param(
            {"cancelled_at": "2024-03-01T10:00:00.123456+05:30"},
            datetime(2024, 3, 1, 4, 30, 0, 123456, tzinfo=UTC),
            id="fraction-and-half-hour-offset",
        ),
    ],
)
def test_cancelled_at_spellings_and_fallbacks(times: dict[str, object], expected: datetime) -> None:
    document = {
        key: value
        for key, value in {
            **order(cancelled_at=None, updated_at=None),
            **times,
        }.items()
        if value is not None
    }
    event = parse_event(document)
    assert event.cancelled_at == expected
    assert event.cancelled_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("topic", "status"),
    [
        ("orders/cancelled", "cancelled"),
        ("orders/cancelled", None),  # the topic alone says it
        ("orders/updated", "cancelled"),
        (None, "cancelled"),  # no topic: the status decides
    ],
)
def test_cancellations_become_events(topic: str | None, status: str | None) -> None:
    result = parse(order(status=status), {TOPIC: topic})
    assert isinstance(result, OrderCancelled)
    assert result.order_id == "1001"


@pytest.mark.parametrize(
    ("topic", "status", "mentioned"),
    [
        ("orders/updated", "opened", "opened"),
        ("orders/updated", "finished", "finished"),
        ("orders/updated", None, "None"),
        ("orders/create", "cancelled", "orders/create"),
        ("products/update", "cancelled", "products/update"),
        ("orders/paid", "opened", "orders/paid"),
        (None, "placed", "placed"),
        (None, None, "None"),
    ],
)
def test_other_topics_and_statuses_are_ignored(
    topic: str | None, status: str | None, mentioned: str
) -> None:
    result = parse(order(status=status), {TOPIC: topic})
    assert isinstance(result, Ignored)
    assert mentioned in result.reason


MALFORMED = [
    pytest.param(b"not json", None, "not JSON", id="non-json"),
    pytest.param(b"", None, "not JSON", id="empty-body"),
    pytest.param(b'{"id": "1001", "status": ', None, "not JSON", id="truncated-json"),
    pytest.param(b'[{"id": "1001", "status": "cancelled"}]', None, "JSON object", id="array"),
    pytest.param(b'"1001"', None, "JSON object", id="string"),
    pytest.param(b"null", None, "JSON object", id="null"),
    pytest.param(b'{"status": "cancelled"}', None, "order.id", id="missing-id"),
    pytest.param(b'{"order": {"status": "cancelled"}}', None, "order.id", id="wrapped-no-id"),
    pytest.param(b'{"id": true, "status": "cancelled"}', None, "order.id", id="boolean-id"),
    pytest.param(b'{"id": 1001.5, "status": "cancelled"}', None, "order.id", id="float-id"),
    pytest.param(b'{"id": null, "status": "cancelled"}', None, "order.id", id="null-id"),
    pytest.param(b'{"id": "  ", "status": "cancelled"}', None, "order.id", id="blank-id"),
    pytest.param(b'{"id": {"x": 1}, "status": "cancelled"}', None, "order.id", id="object-id"),
    pytest.param(b'{"id": "1", "number": true}', None, "order.number", id="boolean-number"),
    pytest.param(b'{"id": "1", "number": [1]}', None, "order.number", id="list-number"),
    pytest.param(b'{"id": "1001"}', {SHOP: None}, SHOP, id="missing-shop-header"),
    pytest.param(b'{"id": "1001"}', {SHOP: "   "}, SHOP, id="blank-shop-header"),
]


@pytest.mark.parametrize(("body", "overrides", "mentioned"), MALFORMED)
def test_malformed_payload_says_why(
    body: bytes, overrides: Mapping[str, str | None] | None, mentioned: str
) -> None:
    with pytest.raises(MalformedPayloadError) as caught:
        parse(body, overrides)
    assert mentioned in caught.value.reason
    assert str(caught.value) == caught.value.reason


def test_malformed_payload_is_not_a_webhook_error() -> None:
    """A signed but unparseable body is quarantined (200), never refused with a 4xx."""
    with pytest.raises(MalformedPayloadError) as caught:
        parse(b"not json")
    assert not isinstance(caught.value, WebhookError)


def test_delivery_id_comes_from_deduplication_header() -> None:
    assert parse_event(ORDER, {DEDUP: "a1b2c3"}).delivery_id == "a1b2c3"


def test_delivery_id_header_is_case_insensitive() -> None:
    overrides = {DEDUP: None, "x-shoplazza-deduplication-id": "lower-7"}
    assert parse_event(ORDER, overrides).delivery_id == "lower-7"


def test_delivery_id_is_none_without_header() -> None:
    assert parse_event(ORDER, {DEDUP: None}).delivery_id is None


def test_shop_is_lower_cased_so_the_event_id_is_stable() -> None:
    upper = parse_event(ORDER, {SHOP: "DEMO-SHOP.MYSHOPLAZA.COM"})
    lower = parse_event(ORDER, {SHOP: "demo-shop.myshoplaza.com"})
    assert upper.shop == lower.shop == SHOP_ID
    assert upper.event_id == lower.event_id


def test_redeliveries_share_an_event_id() -> None:
    first = parse_event(ORDER, {DEDUP: "attempt-1"})
    second = parse_event(order(updated_at="2024-03-02T00:00:00Z"), {DEDUP: "attempt-2"})
    assert first.delivery_id != second.delivery_id
    assert first.event_id == second.event_id


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # PLATFORMS.md section 6, Shoplazza column
        ("customer request", CancelReason.CUSTOMER_REQUEST),
        ("fraud", CancelReason.FRAUD),
        ("out of stock", CancelReason.INVENTORY),
        ("payment declined", CancelReason.PAYMENT_DECLINED),
        ("duplicate order", CancelReason.DUPLICATE),
        ("other", CancelReason.OTHER),
        # keywords anywhere, any case
        ("Customer changed their mind", CancelReason.CUSTOMER_REQUEST),
        ("Suspected FRAUD", CancelReason.FRAUD),
        ("Item Out Of Stock", CancelReason.INVENTORY),
        ("inventory shortage", CancelReason.INVENTORY),
        ("Payment failed", CancelReason.PAYMENT_DECLINED),
        ("card declined", CancelReason.PAYMENT_DECLINED),
        ("Duplicate", CancelReason.DUPLICATE),
        ("something else entirely", CancelReason.OTHER),
    ],
)
def test_reason_keywords_map_to_canonical_reasons(text: str, expected: CancelReason) -> None:
    event = parse_event(order(cancel_reason=text))
    assert event.reason is expected
    assert event.source_reason == text
    assert shoplazza.canonical_reason(text) is expected


@pytest.mark.parametrize("raw", ["", "   ", None])
def test_empty_reason_is_other_without_source_reason(raw: str | None) -> None:
    event = parse_event(order(cancel_reason=raw))
    assert event.reason is CancelReason.OTHER
    assert event.source_reason is None


def test_source_reason_is_stripped() -> None:
    event = parse_event(order(cancel_reason="  out of stock \n"))
    assert event.source_reason == "out of stock"
    assert event.reason is CancelReason.INVENTORY


@pytest.mark.parametrize("status", ["opened", "placed", "finished"])
def test_cancelled_topic_with_a_live_order_is_quarantined(status: str) -> None:
    """The topic header is unsigned: a signed body that says otherwise is not a cancellation."""
    with pytest.raises(MalformedPayloadError) as caught:
        parse(order(status=status), {TOPIC: "orders/cancelled"})
    assert status in caught.value.reason


@pytest.mark.parametrize(
    "stamp", ["0001-01-01T00:00:00+08:00", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"]
)
def test_timestamps_off_the_calendar_fall_back(stamp: str) -> None:
    """Go's zero time written with an offset cannot be converted to UTC: the next one is used."""
    event = parse_event(order(cancelled_at=stamp, updated_at="2024-05-01T00:00:00Z"))
    assert event.cancelled_at == datetime(2024, 5, 1, tzinfo=UTC)


def test_shop_spellings_give_one_event_id() -> None:
    ids = {
        parse_event(ORDER, {SHOP: spelling}).event_id
        for spelling in ("demo.myshoplaza.com", "Demo.MyShoplaza.com", " demo.myshoplaza.com. ")
    }
    assert len(ids) == 1


def test_header_bytes_that_are_not_utf8_are_repaired() -> None:
    """Such bytes arrive from aiohttp as surrogates; the event must still hash and serialise."""
    event = parse_event(ORDER, {SHOP: "sh\udcffop.com", DEDUP: "\udcfe\udcff"})
    assert event.shop == "sh\ufffdop.com"
    assert event.delivery_id == "\ufffd\ufffd"
    orjson.loads(event.to_json())


@pytest.mark.parametrize(("field", "value"), [("id", "B" * 140_000), ("number", "7" * 300)])
def test_overlong_ids_are_quarantined(field: str, value: str) -> None:
    """Ids travel in AMQP headers, which must fit in one frame: bounded at 255 characters."""
    with pytest.raises(MalformedPayloadError) as caught:
        parse(order(**{field: value}))
    assert "255" in caught.value.reason


def test_overlong_reason_is_truncated_not_refused() -> None:
    event = parse_event(order(cancel_reason="customer " * 500))
    assert event.source_reason is not None
    assert len(event.source_reason) == 1024
    assert event.reason is CancelReason.CUSTOMER_REQUEST


# --- the shop allowlist (the shop header is not signed) --------------------------------------

ALLOWLISTED = shoplazza.make_source(
    shoplazza.ShoplazzaSourceSettings(
        secret_env="S", shops=(" Demo.MyShoplaza.com. ", "second.myshoplaza.com")
    ),
    {},
)


def verify_for(source: shoplazza.ShoplazzaSource, shop: str | None) -> None:
    headers = {SIG: reference_signature(BODY, SECRET)}
    if shop is not None:
        headers[SHOP] = shop
    source.verify(CIMultiDict(headers), BODY, [SecretStr(SECRET)], NOW)


def test_an_allowlisted_shop_passes_in_any_spelling() -> None:
    for shop in ("demo.myshoplaza.com", "DEMO.myshoplaza.com.", "second.myshoplaza.com"):
        verify_for(ALLOWLISTED, shop)


@pytest.mark.parametrize("shop", ["other.myshoplaza.com", "demo.myshoplaza.com.evil", "", None])
def test_another_shop_is_refused_401(shop: str | None) -> None:
    """The probe's case: one signed body resent with other shop names is not other orders."""
    with pytest.raises(WebhookError) as caught:
        verify_for(ALLOWLISTED, shop)
    assert (caught.value.status, caught.value.code) == (401, "unknown_shop")
    assert "[sources.shoplazza] shops" in caught.value.detail


def test_a_bad_signature_is_refused_before_the_shop_is_looked_at() -> None:
    headers = {SIG: reference_signature(BODY, "not-the-secret"), SHOP: "other.myshoplaza.com"}
    with pytest.raises(SignatureError):
        ALLOWLISTED.verify(CIMultiDict(headers), BODY, [SecretStr(SECRET)], NOW)


def test_without_an_allowlist_any_shop_passes() -> None:
    verify_for(SOURCE, "anyone.myshoplaza.com")


def test_an_empty_shop_in_the_allowlist_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        shoplazza.ShoplazzaSourceSettings(secret_env="S", shops=("  ",))
