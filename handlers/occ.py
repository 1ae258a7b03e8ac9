"""Oracle Commerce Cloud: the Cancel Order event webhook in (PLATFORMS.md section 3).

Signature: `X-Oracle-CC-WebHook-Signature` = base64(HMAC(raw body, key)); the key is the webhook
secret base64-decoded (Oracle bug 24619421; `key_encoding = "raw"` uses the secret's bytes) and
the algorithm SHA-512 unless configured (`sha256`, `sha1` on older tenants). An Oracle sample
names the header `X-Oracle-CC-WebHook-Signature-SHA512`: accepted too. The shop is the site:
`x-ccsite`, else the body's `site`, else `order.siteId`. OCC sends no delivery id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson
from pydantic import SecretStr, ValidationError

from contracts.events import MAX_TEXT, CancelReason, OrderCancelled, Source
from contracts.occ import OCCWebhook
from handlers.base import (
    Headers,
    Ignored,
    KeyEncoding,
    MalformedPayloadError,
    SignatureAlgorithm,
    SignatureError,
    SourceOptions,
    header,
    parse_timestamp,
)

SIGNATURE_HEADERS = ("X-Oracle-CC-WebHook-Signature", "X-Oracle-CC-WebHook-Signature-SHA512")
SITE_HEADER = "x-ccsite"
DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}

# OCC cancel reasons are tenant data; the documented ids map like this, the rest is `other`.
REASONS: dict[str, CancelReason] = {
    "changeOfMind": CancelReason.CUSTOMER_REQUEST,
    "noLongerNeeded": CancelReason.CUSTOMER_REQUEST,
    "badProductReview": CancelReason.CUSTOMER_REQUEST,
    "betterCompetitorPrice": CancelReason.CUSTOMER_REQUEST,
    "itemAvailableAtDiscountCurrently": CancelReason.CUSTOMER_REQUEST,
    "noUpdateOnShipmentStatus": CancelReason.CUSTOMER_REQUEST,
    "paymentNotReceived": CancelReason.PAYMENT_DECLINED,
    "cannotProcessOrder": CancelReason.OTHER,
}


def signing_key(secret: str, encoding: KeyEncoding) -> bytes:
    """The HMAC key for `secret`: its base64 decoding, or its bytes as they are."""
    if encoding == "raw":
        return secret.encode()
    try:
        return base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        return secret.encode()  # not base64 at all: the only key it can be


def sign(
    body: bytes,
    secret: str,
    algorithm: SignatureAlgorithm = "sha512",
    encoding: KeyEncoding = "base64",
) -> str:
    """The header value OCC sends for `body` (tests, fakes, benchmarks)."""
    mac = hmac.digest(signing_key(secret, encoding), body, DIGESTS[algorithm])
    return base64.b64encode(mac).decode()


@dataclass(frozen=True, slots=True)
class OCCSource:
    """The OCC source as configured: which algorithm, how the secret becomes the key."""

    algorithm: SignatureAlgorithm = "sha512"
    key_encoding: KeyEncoding = "base64"

    def verify(
        self, headers: Headers, body: bytes, secrets: Sequence[SecretStr], now: datetime
    ) -> None:
        """Base64 HMAC of the raw body with the current or the previous webhook secret."""
        del now  # OCC signs nothing dated
        sent = next((v for name in SIGNATURE_HEADERS if (v := header(headers, name))), None)
        if sent is None:
            raise SignatureError(f"missing {SIGNATURE_HEADERS[0]} header")
        sent_bytes = sent.encode("utf-8", "replace")
        for secret in secrets:
            mac = hmac.digest(
                signing_key(secret.get_secret_value(), self.key_encoding),
                body,
                DIGESTS[self.algorithm],
            )
            if hmac.compare_digest(base64.b64encode(mac), sent_bytes):
                return
        raise SignatureError(f"{SIGNATURE_HEADERS[0]} does not match the body")

    def parse(
        self, headers: Headers, body: bytes, received_at: datetime
    ) -> OrderCancelled | Ignored:
        """The canonical event: every Cancel Order webhook is a cancellation."""
        try:
            hook = OCCWebhook.model_validate(orjson.loads(body))
        except orjson.JSONDecodeError as exc:
            raise MalformedPayloadError(f"body is not JSON: {exc.msg}") from None
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "body"
            raise MalformedPayloadError(f"{where}: {first['msg']}") from None
        order = hook.order
        site = header(headers, SITE_HEADER) or hook.site or order.siteId
        if site is None:
            raise MalformedPayloadError(f"no site: neither {SITE_HEADER}, site nor order.siteId")
        reason_id = order.cancelReason
        try:
            return OrderCancelled.create(
                source=Source.OCC,
                shop=site,
                order_id=order.id,
                order_number=None,
                reason=REASONS.get(reason_id or "", CancelReason.OTHER),
                source_reason=reason_id[:MAX_TEXT] if reason_id else None,
                cancelled_at=parse_timestamp(order.lastModifiedDate) or received_at,
                received_at=received_at,
                delivery_id=None,
            )
        except ValidationError as exc:  # e.g. an id longer than MAX_ID
            first = exc.errors()[0]
            raise MalformedPayloadError(f"{first['loc'][0]}: {first['msg']}") from None


def source(options: SourceOptions) -> OCCSource:
    """The registry's factory: SHA-512 and a base64 key unless configured otherwise."""
    return OCCSource(options.algorithm or "sha512", options.key_encoding or "base64")
