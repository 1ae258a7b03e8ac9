"""Shoplazza: `orders/cancelled` webhooks in (PLATFORMS.md section 1).

Signature: `X-Shoplazza-Hmac-Sha256` is base64(HMAC-SHA256(raw body, app client secret)). Hex
digests (the OAuth-callback format) are refused. Topic `orders/cancelled` is a cancellation, and so
is `orders/updated` whose order status is `cancelled`; other topics are ignored. The shop is the
`X-Shoplazza-Shop-Domain` header, the delivery id `X-Shoplazza-Deduplication-ID`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from datetime import datetime

import orjson
from pydantic import SecretStr, ValidationError

from contracts.events import MAX_TEXT, CancelReason, OrderCancelled, Source
from contracts.shoplazza import ShoplazzaOrder, unwrap_order
from handlers.base import (
    Headers,
    Ignored,
    MalformedPayloadError,
    SignatureError,
    header,
    parse_timestamp,
)

SIGNATURE_HEADER = "X-Shoplazza-Hmac-Sha256"
TOPIC_HEADER = "X-Shoplazza-Topic"
SHOP_HEADER = "X-Shoplazza-Shop-Domain"
DEDUP_HEADER = "X-Shoplazza-Deduplication-ID"
API_VERSION_HEADER = "X-Shoplazza-Api-Version"

CANCELLED_TOPIC = "orders/cancelled"
UPDATED_TOPIC = "orders/updated"
CANCELLED_STATUS = "cancelled"

# Shoplazza's reason is merchant free text: the first keyword found decides (PLATFORMS.md 6).
REASON_KEYWORDS: tuple[tuple[str, CancelReason], ...] = (
    ("fraud", CancelReason.FRAUD),
    ("stock", CancelReason.INVENTORY),
    ("inventory", CancelReason.INVENTORY),
    ("payment", CancelReason.PAYMENT_DECLINED),
    ("declined", CancelReason.PAYMENT_DECLINED),
    ("duplicate", CancelReason.DUPLICATE),
    ("customer", CancelReason.CUSTOMER_REQUEST),
    ("changed", CancelReason.CUSTOMER_REQUEST),
    ("mind", CancelReason.CUSTOMER_REQUEST),
)


def sign(body: bytes, secret: str) -> str:
    """The header value Shoplazza sends for `body` (used by tests, fakes and benchmarks)."""
    return base64.b64encode(hmac.digest(secret.encode(), body, hashlib.sha256)).decode()


def verify(headers: Headers, body: bytes, secrets: Sequence[SecretStr], now: datetime) -> None:
    """Base64 HMAC-SHA256 of the raw body with the current or the previous client secret."""
    del now  # nothing Shoplazza signs is dated
    sent = header(headers, SIGNATURE_HEADER)
    if sent is None:
        raise SignatureError(f"missing {SIGNATURE_HEADER} header")
    sent_bytes = sent.encode("utf-8", "replace")  # compare bytes: no TypeError on odd input
    for secret in secrets:
        mac = hmac.digest(secret.get_secret_value().encode(), body, hashlib.sha256)
        if hmac.compare_digest(base64.b64encode(mac), sent_bytes):
            return
    raise SignatureError(f"{SIGNATURE_HEADER} does not match the body")


def canonical_reason(text: str | None) -> CancelReason:
    """Map Shoplazza's free-text reason by keyword; unknown or empty is `other`."""
    if not text:
        return CancelReason.OTHER
    words = text.lower()
    for keyword, reason in REASON_KEYWORDS:
        if re.search(rf"\b{keyword}", words):  # word starts: "restock" is not "stock"
            return reason
    return CancelReason.OTHER


def _order(body: bytes) -> ShoplazzaOrder:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedPayloadError(f"body is not JSON: {exc.msg}") from None
    document = unwrap_order(document)
    if not isinstance(document, dict):
        raise MalformedPayloadError("body is not a JSON object (nor {'order': {...}})")
    try:
        return ShoplazzaOrder.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "order"
        raise MalformedPayloadError(f"order.{where}: {first['msg']}") from None


def parse(headers: Headers, body: bytes, received_at: datetime) -> OrderCancelled | Ignored:
    """The canonical event for a cancellation; `Ignored` for any other topic or status."""
    topic = header(headers, TOPIC_HEADER)
    if topic is not None and topic not in (CANCELLED_TOPIC, UPDATED_TOPIC):
        return Ignored(f"topic {topic!r} is not a cancellation")
    order = _order(body)
    status = (order.status or "").lower()
    # The topic header is not signed: a signed body saying otherwise must not become a
    # cancellation. No topic at all is read like orders/updated, so nothing is lost.
    if topic == CANCELLED_TOPIC and status not in ("", CANCELLED_STATUS):
        raise MalformedPayloadError(f"topic {CANCELLED_TOPIC} but order status is {order.status!r}")
    if topic != CANCELLED_TOPIC and status != CANCELLED_STATUS:
        return Ignored(f"order status {order.status!r} is not {CANCELLED_STATUS!r}")
    shop = header(headers, SHOP_HEADER)
    if shop is None:
        raise MalformedPayloadError(f"missing {SHOP_HEADER} header")
    shop = shop.lower().rstrip(".")  # one shop, one spelling: the event id depends on it
    cancelled_at = (
        parse_timestamp(order.cancelled_at)
        or parse_timestamp(order.canceled_at)
        or parse_timestamp(order.updated_at)
        or received_at
    )
    source_reason = (order.cancel_reason or "").strip()[:MAX_TEXT] or None
    try:
        return OrderCancelled.create(
            source=Source.SHOPLAZZA,
            shop=shop,
            order_id=order.id,
            order_number=order.number,
            reason=canonical_reason(source_reason),
            source_reason=source_reason,
            cancelled_at=cancelled_at,
            received_at=received_at,
            delivery_id=header(headers, DEDUP_HEADER),
        )
    except ValidationError as exc:  # e.g. an id longer than MAX_ID
        first = exc.errors()[0]
        raise MalformedPayloadError(f"{first['loc'][0]}: {first['msg']}") from None
