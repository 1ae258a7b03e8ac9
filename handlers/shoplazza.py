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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from urllib.parse import quote, unquote

import orjson
from pydantic import Field, SecretStr, ValidationError, field_validator

from contracts.events import MAX_TEXT, CancelReason, OrderCancelled, Source
from contracts.shoplazza import ShoplazzaOrder, error_text, unwrap_order
from handlers.base import (
    AlreadyDone,
    Delivered,
    EnvName,
    FollowUp,
    Headers,
    HttpCall,
    Ignored,
    MalformedPayloadError,
    OldKey,
    Outcome,
    Probe,
    Rejected,
    RetryLater,
    Seconds,
    SignatureError,
    SourceSettings,
    TargetBuild,
    TargetSettings,
    UnknownShopError,
    clean_text,
    header,
    parse_timestamp,
    retry_after_seconds,
    retryable,
)

SIGNATURE_HEADER = "X-Shoplazza-Hmac-Sha256"
TOPIC_HEADER = "X-Shoplazza-Topic"
SHOP_HEADER = "X-Shoplazza-Shop-Domain"
DEDUP_HEADER = "X-Shoplazza-Deduplication-ID"
API_VERSION_HEADER = "X-Shoplazza-Api-Version"

MAX_SHOWN = 100  # characters of a refused shop name an answer repeats
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

# Keywords match at word starts: "restock" is not "stock".
_REASON_PATTERNS = tuple((re.compile(rf"\b{word}"), reason) for word, reason in REASON_KEYWORDS)


def sign(body: bytes, secret: str) -> str:
    """The header value Shoplazza sends for `body` (used by tests, fakes and benchmarks)."""
    return base64.b64encode(hmac.digest(secret.encode(), body, hashlib.sha256)).decode()


def canonical_reason(text: str | None) -> CancelReason:
    """Map Shoplazza's free-text reason by keyword; unknown or empty is `other`."""
    if not text:
        return CancelReason.OTHER
    words = text.lower()
    for pattern, reason in _REASON_PATTERNS:
        if pattern.search(words):
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


def shop_domain(value: str) -> str:
    """A shop as the bridge spells it: one spelling per shop (the event id depends on it)."""
    return value.lower().rstrip(".")


class ShoplazzaSourceSettings(SourceSettings):
    """`[sources.shoplazza]`: the app's client secret(s), and the shops it serves."""

    # `X-Shoplazza-Shop-Domain` is not covered by the signature: one signed body sent with other
    # shop names would be other orders. When set, any other shop is refused (401 unknown_shop).
    shops: tuple[str, ...] = ()
    # The address Shoplazza posts orders/cancelled to (`cancel-bridge subscriptions`), e.g.
    # "https://bridge.example.com/webhooks/shoplazza".
    webhook_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+(/\S*)?$")

    @field_validator("shops")
    @classmethod
    def _domains(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        shops = tuple(shop_domain(shop.strip()) for shop in value)
        if any(not shop for shop in shops):
            raise ValueError("a shop domain is empty")
        return shops


@dataclass(frozen=True, slots=True)
class ShoplazzaSource:
    """The Shoplazza source; `shops`: the allowlist (empty: any shop)."""

    shops: frozenset[str] = frozenset()

    def verify(
        self, headers: Headers, body: bytes, secrets: Sequence[SecretStr], now: datetime
    ) -> None:
        """Base64 HMAC-SHA256 of the raw body with the current or the previous client secret."""
        del now  # nothing Shoplazza signs is dated
        sent = header(headers, SIGNATURE_HEADER)
        if sent is None:
            raise SignatureError(f"missing {SIGNATURE_HEADER} header")
        sent_bytes = sent.encode("utf-8", "replace")  # compare bytes: no TypeError on odd input
        for secret in secrets:
            mac = hmac.digest(secret.get_secret_value().encode(), body, hashlib.sha256)
            if hmac.compare_digest(base64.b64encode(mac), sent_bytes):
                self._check_shop(headers)
                return
        raise SignatureError(f"{SIGNATURE_HEADER} does not match the body")

    def _check_shop(self, headers: Headers) -> None:
        """The unsigned shop header names a shop of the allowlist (when there is one)."""
        if not self.shops:
            return
        shop = shop_domain(header(headers, SHOP_HEADER) or "")
        if shop not in self.shops:
            shown = clean_text(shop)[:MAX_SHOWN] or "(none)"
            raise UnknownShopError(f"shop {shown!r} is not in [sources.shoplazza] shops")

    def parse(
        self, headers: Headers, body: bytes, received_at: datetime
    ) -> OrderCancelled | Ignored:
        """The canonical event for a cancellation; `Ignored` for any other topic or status."""
        topic = header(headers, TOPIC_HEADER)
        if topic is not None and topic not in (CANCELLED_TOPIC, UPDATED_TOPIC):
            return Ignored(f"topic {topic!r} is not a cancellation")
        order = _order(body)
        status = (order.status or "").lower()
        # The topic header is not signed: a signed body saying otherwise must not become a
        # cancellation. No topic at all is read like orders/updated, so nothing is lost.
        if topic == CANCELLED_TOPIC and status not in ("", CANCELLED_STATUS):
            raise MalformedPayloadError(
                f"topic {CANCELLED_TOPIC} but order status is {order.status!r}"
            )
        if topic != CANCELLED_TOPIC and status != CANCELLED_STATUS:
            return Ignored(f"order status {order.status!r} is not {CANCELLED_STATUS!r}")
        shop = header(headers, SHOP_HEADER)
        if shop is None:
            raise MalformedPayloadError(f"missing {SHOP_HEADER} header")
        shop = shop_domain(shop)  # one shop, one spelling: the event id depends on it
        return event_from_order(order, shop, received_at, header(headers, DEDUP_HEADER))


def event_from_order(
    order: ShoplazzaOrder, shop: str, received_at: datetime, delivery_id: str | None
) -> OrderCancelled:
    """The canonical event for a cancelled `order` of `shop` (a webhook's, or the backstop's).

    Raises `MalformedPayloadError` when a field cannot make an event (an id over MAX_ID...).
    """
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
            delivery_id=delivery_id,
        )
    except ValidationError as exc:  # e.g. an id longer than MAX_ID
        first = exc.errors()[0]
        raise MalformedPayloadError(f"{first['loc'][0]}: {first['msg']}") from None


def source_secret_envs(settings: ShoplazzaSourceSettings) -> dict[str, str]:
    """None besides the webhook secrets every source names."""
    del settings
    return {}


def make_source(
    settings: ShoplazzaSourceSettings, secrets: Mapping[str, SecretStr]
) -> ShoplazzaSource:
    """The Shoplazza source from `[sources.shoplazza]`."""
    del secrets
    return ShoplazzaSource(frozenset(settings.shops))


# --- target: cancel the order on Shoplazza (PLATFORMS.md section 1, outbound) ---------------

HTTP_OK = 200
# Statuses a re-cancel may get: undocumented. 406 is the documented "wrong state" answer
# (https://shoplazza.dev/reference/http-status: "e.g. refund an order which is not in after-sale
# status"), 400 the catch-all of every version, 422 "parameters formatted incorrectly". None of
# them says "already cancelled" for sure, so each is settled by reading the order.
CONFIRM_STATUSES = frozenset({400, 406, 422})
DEFAULT_TARGET_REASONS: Mapping[CancelReason, str] = MappingProxyType(
    {
        CancelReason.CUSTOMER_REQUEST: "Customer request",
        CancelReason.FRAUD: "Fraud",
        CancelReason.INVENTORY: "Out of stock",
        CancelReason.PAYMENT_DECLINED: "Payment declined",
        CancelReason.DUPLICATE: "Duplicate order",
        CancelReason.OTHER: "Other",
    }
)


class ShoplazzaShopSettings(TargetSettings):
    """`[targets.shoplazza.shops."<shop domain>"]`: one store's API access."""

    token_env: EnvName  # the store's Access-Token (scope write_order)
    base_url: str | None = None  # default https://<shop domain>
    api_version: str = Field(default="2022-01", pattern=r"^[0-9]{4}-[0-9]{2}$")


class ShoplazzaTargetSettings(TargetSettings):
    """`[targets.shoplazza]`: cancel orders on Shoplazza stores."""

    OLD_KEYS = MappingProxyType({"timeout_s": OldKey("timeout")})

    shops: dict[str, ShoplazzaShopSettings] = Field(min_length=1)
    default_shop: str | None = None  # the store of links that give a bare order id
    timeout: Seconds = Field(default=10.0, gt=0, le=300)  # per call
    rate_per_second: float = Field(default=2.0, gt=0, le=100)  # per store; Shoplazza allows 2
    reasons: dict[CancelReason, str] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ShopAccess:
    """Where and how to call one store."""

    base_url: str
    api_version: str
    token: SecretStr


def _errors(body: bytes) -> str:
    """The error body's message (`contracts.shoplazza.error_text`); "" when it is not JSON."""
    try:
        return error_text(orjson.loads(body))
    except orjson.JSONDecodeError:
        return ""


def _by_status(
    status: int, headers: Headers, body: bytes, now: datetime
) -> Rejected | RetryLater | None:
    if status in (401, 403):
        return Rejected(f"shoplazza credentials refused (HTTP {status})")
    if status == 404:  # noqa: PLR2004 - "Record not found"
        return Rejected(f"shoplazza: order not found ({_errors(body) or 'HTTP 404'})")
    if retryable(status):
        return RetryLater(f"shoplazza answered HTTP {status}", retry_after_seconds(headers, now))
    return None


def confirm_read(
    status: int, headers: Headers, body: bytes, now: datetime, *, cause: str = ""
) -> Outcome:
    """The order as read after a "wrong state" answer: cancelled is done, anything else final.

    `cause` is the cancel's own answer ("HTTP 406: ..."), kept in the outcome. The read is
    `GET /openapi/{version}/orders/{id}`, the order bare or as `{"order": {...}}`
    (https://shoplazza.dev/reference/api-usage).
    """
    because = f" (cancel answered {cause})" if cause else ""
    if (early := _by_status(status, headers, body, now)) is not None:
        return early
    if status != HTTP_OK:
        detail = f": {text}" if (text := _errors(body)) else ""
        return Rejected(f"shoplazza answered HTTP {status} to the order read{detail}{because}")
    try:
        order = ShoplazzaOrder.model_validate(unwrap_order(orjson.loads(body)))
    except (orjson.JSONDecodeError, ValidationError):
        return RetryLater("shoplazza order read: the answer is not an order")
    if (order.status or "").lower() == CANCELLED_STATUS:
        return AlreadyDone(f"shoplazza: order {order.id} is already cancelled")
    return Rejected(f"shoplazza: order {order.id} is {order.status!r}, not cancellable{because}")


@dataclass(frozen=True, slots=True)
class _ConfirmRead:
    """`confirm_read` remembering what the cancel was answered."""

    cause: str

    def __call__(self, status: int, headers: Headers, body: bytes, now: datetime) -> Outcome:
        return confirm_read(status, headers, body, now, cause=self.cause)


@dataclass(frozen=True, slots=True)
class ShoplazzaTarget:
    """The Shoplazza target: `POST /openapi/{version}/orders/{id}/cancel` on the order's store.

    The order comes from the order links as `shop domain/order id`, or a bare order id of
    `default_shop`. Calls are paced per store.
    """

    shops: Mapping[str, ShopAccess]
    default_shop: str | None = None
    reasons: Mapping[CancelReason, str] = field(default_factory=lambda: DEFAULT_TARGET_REASONS)

    def _where(self, linked: str) -> tuple[str, str] | Rejected:
        shop, _, order_id = linked.rpartition("/")
        shop = shop.lower().rstrip(".") or (self.default_shop or "")
        if not shop:
            return Rejected(f"link {linked!r} names no store and no default_shop is set")
        if shop not in self.shops:
            return Rejected(f"no [targets.shoplazza.shops] entry for store {shop!r}")
        return shop, order_id

    def build(
        self, event: OrderCancelled, now: datetime, order_id: str | None = None
    ) -> HttpCall | Rejected:
        """The cancel call for the linked order."""
        del now
        if order_id is None:
            return Rejected("no Shoplazza order is linked to this cancellation")
        where = self._where(order_id)
        if isinstance(where, Rejected):
            return where
        shop, bare = where
        access = self.shops[shop]
        url = f"{access.base_url}/openapi/{access.api_version}/orders/{quote(bare, safe='')}"
        return HttpCall(
            method="POST",
            url=f"{url}/cancel",
            headers={
                "Access-Token": access.token.get_secret_value(),
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            body=orjson.dumps({"reason": self.reasons.get(event.reason, "Other")}),
            pace_key=shop,
        )

    def interpret(
        self, call: HttpCall, status: int, headers: Headers, body: bytes, now: datetime
    ) -> Outcome | FollowUp:
        """200 is done; "wrong state" (406, 422, 400) reads the order; see `_by_status`.

        A re-cancel's answer is undocumented (PLATFORMS.md section 1): whichever of the three
        Shoplazza gives, the read decides (cancelled: `AlreadyDone`, else `Rejected`).
        """
        order_id = unquote(call.url.removesuffix("/cancel").rpartition("/")[2])
        if status == HTTP_OK:
            return Delivered(reference=order_id, order_id=order_id)
        if status in CONFIRM_STATUSES:
            read = HttpCall(
                method="GET",
                url=call.url.removesuffix("/cancel"),
                headers={k: v for k, v in call.headers.items() if k != "Content-Type"},
                body=b"",
                pace_key=call.pace_key,
            )
            text = _errors(body)
            return FollowUp(
                read, _ConfirmRead(f"HTTP {status}: {text}" if text else f"HTTP {status}")
            )
        if (early := _by_status(status, headers, body, now)) is not None:
            return early
        return Rejected(f"shoplazza answered HTTP {status}: {_errors(body)}")


def _read_orders(
    shop: str, now: datetime
) -> Callable[[int, Headers, bytes], str | Rejected | RetryLater]:
    """`check-config --online`: the store's order list must answer 200 to its Access-Token."""

    def read(status: int, headers: Headers, body: bytes) -> str | Rejected | RetryLater:
        if (early := _by_status(status, headers, body, now)) is not None:
            return early
        if status != HTTP_OK:
            detail = f": {text}" if (text := _errors(body)) else ""
            return Rejected(f"shoplazza {shop}: HTTP {status} to the order list{detail}")
        return f"{shop}: orders read"

    return read


def target_probes(
    settings: ShoplazzaTargetSettings, secrets: Mapping[str, SecretStr], now: datetime
) -> tuple[Probe, ...]:
    """Per store, an authenticated read: `GET /openapi/{version}/orders?limit=1`.

    The order list (scope `read_order`, which the confirm-read needs too) answers 200 to a good
    Access-Token; nothing is changed (https://www.shoplazza.dev/api/202201/openapi).
    """
    return tuple(
        Probe(
            f"shoplazza {shop} order list",
            HttpCall(
                method="GET",
                url=f"{access.base_url}/openapi/{access.api_version}/orders?limit=1",
                headers={
                    "Access-Token": access.token.get_secret_value(),
                    "Accept": "application/json",
                },
                body=b"",
                pace_key=shop,
            ),
            _read_orders(shop, now),
        )
        for shop, access in sorted(shop_accesses(settings, secrets).items())
    )


def shop_accesses(
    settings: ShoplazzaTargetSettings, secrets: Mapping[str, SecretStr]
) -> dict[str, ShopAccess]:
    """Each store's base URL, API version and Access-Token, by its lowercased domain."""
    return {
        shop.lower().rstrip("."): ShopAccess(
            (s.base_url or f"https://{shop}").rstrip("/"),
            s.api_version,
            secrets[f"shops.{shop}.token_env"],
        )
        for shop, s in settings.shops.items()
    }


def target_secret_envs(settings: ShoplazzaTargetSettings) -> dict[str, str]:
    """One Access-Token variable per store."""
    return {f"shops.{shop}.token_env": s.token_env for shop, s in settings.shops.items()}


def make_target(settings: ShoplazzaTargetSettings, secrets: Mapping[str, SecretStr]) -> TargetBuild:
    """The Shoplazza target from `[targets.shoplazza]` and the stores' tokens."""
    shops = shop_accesses(settings, secrets)
    default = settings.default_shop.lower().rstrip(".") if settings.default_shop else None
    adapter = ShoplazzaTarget(shops, default, {**DEFAULT_TARGET_REASONS, **settings.reasons})
    summary = (
        f"POST https://<store>/openapi/<version>/orders/<id>/cancel for {len(shops)} store(s)"
        f" ({', '.join(sorted(shops))}); order ids from the order links"
        f"{f', default store {default}' if default else ''}; at most"
        f" {settings.rate_per_second:g} calls/s per store, timeout {settings.timeout:g}s"
    )
    return TargetBuild(
        adapter,
        settings.timeout,
        link_platform="shoplazza",
        rate=settings.rate_per_second,
        summary=summary,
    )
