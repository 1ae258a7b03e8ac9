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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from urllib.parse import quote

import orjson
from pydantic import Field, SecretStr, ValidationError

from contracts.events import MAX_TEXT, CancelReason, OrderCancelled, Source
from contracts.occ import OCCWebhook
from handlers.base import (
    RETRYABLE_STATUSES,
    AlreadyDone,
    Delivered,
    EnvName,
    FollowUp,
    Headers,
    HttpCall,
    Ignored,
    KeyEncoding,
    MalformedPayloadError,
    Outcome,
    Rejected,
    RetryLater,
    SignatureAlgorithm,
    SignatureError,
    SourceOptions,
    TargetBuild,
    TargetSettings,
    Token,
    TokenAuth,
    client_credentials_call,
    header,
    parse_timestamp,
    read_access_token,
    retry_after_seconds,
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


# --- target: cancel the order on OCC (PLATFORMS.md section 3, outbound) ---------------------

HTTP_OK = 200
TOKEN_LIFETIME = 300.0  # seconds: OCC admin tokens last 5 minutes
NOT_CANCELLABLE = "200101"
NOT_FOUND = "210105"
CONFIG_ERRORS = frozenset({"200126", "200218", "200219", "28107"})
REMOVED = "REMOVED"
DEFAULT_CANCEL_REASONS: Mapping[CancelReason, str] = MappingProxyType(
    {
        CancelReason.CUSTOMER_REQUEST: "changeOfMind",
        CancelReason.FRAUD: "cannotProcessOrder",
        CancelReason.INVENTORY: "cannotProcessOrder",
        CancelReason.PAYMENT_DECLINED: "paymentNotReceived",
        CancelReason.DUPLICATE: "cannotProcessOrder",
        CancelReason.OTHER: "cannotProcessOrder",
    }
)


class OCCSiteSettings(TargetSettings):
    """`[targets.occ.sites.<site id>]`: a site's own cancel reason ids (tenant data)."""

    reasons: dict[CancelReason, str] = Field(default_factory=dict)


class OCCTargetSettings(TargetSettings):
    """`[targets.occ]`: cancel orders through the OCC admin API."""

    base_url: str = Field(
        pattern=r"^https?://"
    )  # the admin host, e.g. https://a123.oracleoutsourcing.com
    app_key_env: EnvName = "OCC_APP_KEY"
    default_site: str | None = None  # the site of links that give a bare order id
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    reasons: dict[CancelReason, str] = Field(default_factory=dict)
    sites: dict[str, OCCSiteSettings] = Field(default_factory=dict)


def login_call(base_url: str, app_key: SecretStr) -> HttpCall:
    """`POST /ccadmin/v1/login` with the application key, client-credentials grant."""
    return client_credentials_call(
        f"{base_url}/ccadmin/v1/login", f"Bearer {app_key.get_secret_value()}"
    )


def read_login(status: int, headers: Headers, body: bytes) -> Token | RetryLater | Rejected:
    """The login answer: the access token (5 minutes unless it says otherwise)."""
    del headers
    return read_access_token(
        status, body, who="occ login", refused=frozenset({401, 403}), lifetime=TOKEN_LIFETIME
    )


def _error(body: bytes) -> tuple[str, str]:
    """OCC's `{errorCode, message}` (codes arrive as strings or numbers)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "", ""
    if not isinstance(document, dict):
        return "", ""
    code, message = document.get("errorCode"), document.get("message")
    return (str(code) if code is not None else ""), (str(message)[:300] if message else "")


def _transient(status: int, headers: Headers, now: datetime) -> RetryLater | None:
    if status in RETRYABLE_STATUSES or status >= 500:  # noqa: PLR2004 - any 5xx
        return RetryLater(f"occ answered HTTP {status}", retry_after_seconds(headers, now))
    return None


def confirm_read(status: int, headers: Headers, body: bytes, now: datetime) -> Outcome:
    """The order as read after "not cancellable" (200101): `REMOVED` is already cancelled."""
    if (transient := _transient(status, headers, now)) is not None:
        return transient
    code, message = _error(body)
    if status == 404 or code == NOT_FOUND:  # noqa: PLR2004
        return Rejected(f"occ: order not found ({message or code or 'HTTP 404'})")
    if status != HTTP_OK:
        return Rejected(f"occ answered HTTP {status} to the order read: {code} {message}".strip())
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return RetryLater("occ order read: the answer is not JSON")
    state = document.get("state") if isinstance(document, dict) else None
    order = document.get("id") if isinstance(document, dict) else None
    if state == REMOVED:
        return AlreadyDone(f"occ: order {order} is already {REMOVED}")
    return Rejected(f"occ: order {order} is {state!r}, not cancellable")


@dataclass(frozen=True, slots=True)
class OCCCancel:
    """The OCC target: `POST /ccadmin/v1/orders/cancel` with the order's site in `x-ccsite`.

    The order comes from the order links as `site id/order id`, or a bare order id of
    `default_site`. The worker adds the bearer token (`TokenAuth`).
    """

    base_url: str
    default_site: str | None = None
    reasons: Mapping[CancelReason, str] = field(default_factory=lambda: DEFAULT_CANCEL_REASONS)
    site_reasons: Mapping[str, Mapping[CancelReason, str]] = field(default_factory=dict)

    def build(
        self, event: OrderCancelled, now: datetime, order_id: str | None = None
    ) -> HttpCall | Rejected:
        """The cancel call for the linked order."""
        del now
        if order_id is None:
            return Rejected("no OCC order is linked to this cancellation")
        site, _, bare = order_id.rpartition("/")
        site = site or (self.default_site or "")
        if not site:
            return Rejected(f"link {order_id!r} names no site and no default_site is set")
        reasons = {**self.reasons, **self.site_reasons.get(site, {})}
        return HttpCall(
            method="POST",
            url=f"{self.base_url}/ccadmin/v1/orders/cancel",
            headers={
                "x-ccsite": site,
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
            body=orjson.dumps({"orderId": bare, "cancelReason": reasons[event.reason]}),
        )

    def interpret(
        self, call: HttpCall, status: int, headers: Headers, body: bytes, now: datetime
    ) -> Outcome | FollowUp:
        """200 is done; 200101 reads the order; other codes as PLATFORMS.md maps them."""
        order_id = str(orjson.loads(call.body)["orderId"])
        if status == HTTP_OK:
            return Delivered(reference=order_id, order_id=order_id)
        if (transient := _transient(status, headers, now)) is not None:
            return transient
        code, message = _error(body)
        if code == NOT_CANCELLABLE:
            read = HttpCall(
                method="GET",
                url=f"{self.base_url}/ccadmin/v1/orders/{quote(order_id, safe='')}",
                headers={"x-ccsite": call.headers["x-ccsite"], "Accept": "application/json"},
                body=b"",
            )
            return FollowUp(read, confirm_read)
        return _refusal(status, code, message)


def _refusal(status: int, code: str, message: str) -> Rejected:
    if code == NOT_FOUND:
        return Rejected(f"occ: order not found ({message or code})")
    if status in (401, 403):
        return Rejected(f"occ credentials refused (HTTP {status})")
    if code in CONFIG_ERRORS:
        return Rejected(f"occ: {code} {message} (check [targets.occ] reasons and sites)")
    return Rejected(f"occ answered HTTP {status}: {code} {message}".strip())


def target_secret_envs(settings: OCCTargetSettings) -> dict[str, str]:
    """The application key OCC logs in with."""
    return {"app_key_env": settings.app_key_env}


def make_target(settings: OCCTargetSettings, secrets: Mapping[str, SecretStr]) -> TargetBuild:
    """The OCC target from `[targets.occ]` and its application key."""
    base = settings.base_url.rstrip("/")
    adapter = OCCCancel(
        base,
        settings.default_site,
        {**DEFAULT_CANCEL_REASONS, **settings.reasons},
        {site: dict(s.reasons) for site, s in settings.sites.items()},
    )
    summary = (
        f"POST {base}/ccadmin/v1/orders/cancel; logs in with the key from"
        f" {settings.app_key_env} (set); order ids from the order links"
        f"{f', default site {settings.default_site}' if settings.default_site else ''};"
        f" timeout {settings.timeout_s:g}s"
    )
    return TargetBuild(
        adapter,
        settings.timeout_s,
        link_platform="occ",
        summary=summary,
        auth=TokenAuth(login_call(base, secrets["app_key_env"]), read_login),
    )
