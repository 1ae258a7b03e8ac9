"""Oracle Commerce Cloud: the Cancel Order event webhook in (PLATFORMS.md section 3).

Signature: base64(HMAC(raw body, key)); the key is the webhook secret base64-decoded (Oracle bug
24619421; `key_encoding = "raw"` uses the secret's bytes). Two headers carry it, and a tenant may
send both: `X-Oracle-CC-WebHook-Signature` (SHA-512 per the current docs,
https://docs.oracle.com/en/cloud/saas/cx-commerce/ccdev/secure-webhooks.html; SHA-1 in 17.x,
https://docs.oracle.com/cd/E90963_01/Cloud.10-17/ExtendingCC/html/s0304securewebhooks01.html;
SHA-256 per https://docs.oracle.com/cd/E91846_01/Cloud.12-17/UsingCC/html/s3102webhooks01.html)
and `X-Oracle-CC-WebHook-Signature-SHA512` (what Oracle's own extension code reads). A webhook
is authentic when any header present verifies with its own algorithm (see `OCCSource.verify`).
The shop is the site: `x-ccsite`, else the body's `site`, else `order.siteId`. OCC sends no
delivery id.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Literal
from urllib.parse import quote

import orjson
from pydantic import Field, SecretStr, ValidationError

from contracts.events import MAX_TEXT, CancelReason, OrderCancelled, Source
from contracts.occ import OCCOrder, OCCWebhook
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
    Token,
    TokenAuth,
    UnknownShopError,
    clean_text,
    client_credentials_call,
    header,
    parse_timestamp,
    read_access_token,
    retry_after_seconds,
    retryable,
)

PLAIN_HEADER = "X-Oracle-CC-WebHook-Signature"
SHA512_HEADER = "X-Oracle-CC-WebHook-Signature-SHA512"
SIGNATURE_HEADERS = (PLAIN_HEADER, SHA512_HEADER)
SITE_HEADER = "x-ccsite"
MAX_SHOWN = 100  # characters of a refused site id an answer repeats
SignatureAlgorithm = Literal["sha1", "sha256", "sha512"]
KeyEncoding = Literal["base64", "raw"]
DIGESTS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
# The plain header's algorithm is the one whose digest has the decoded value's length.
BY_DIGEST_SIZE: dict[int, SignatureAlgorithm] = {20: "sha1", 32: "sha256", 64: "sha512"}

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


def plain_algorithm(sent: bytes) -> SignatureAlgorithm | None:
    """The algorithm a plain-header value stands for: its base64 digest's length decides.

    20 bytes is SHA-1, 32 SHA-256, 64 SHA-512; a value that is not strict base64, or decodes to
    another length, stands for none (that header fails; another one may still verify).
    """
    try:
        decoded = base64.b64decode(sent, validate=True)
    except (binascii.Error, ValueError):
        return None
    return BY_DIGEST_SIZE.get(len(decoded))


@dataclass(frozen=True, slots=True)
class OCCSource:
    """The OCC source as configured: how the secret becomes the key.

    `algorithm` no longer steers verification (each header carries its own algorithm, see
    `verify`); it is kept so existing `[sources.occ] algorithm = ...` settings stay valid, and
    it now only documents which algorithm the tenant was set up with (`check-config` shows it).
    Accepting any of the three costs nothing: an HMAC is unforgeable without the secret with
    SHA-1 as with SHA-512 (RFC 2104; RFC 6151 section 2), and the digest length names the
    algorithm without ambiguity. Tying the plain header to the setting is what refused every
    webhook of tenants whose setting and sender disagreed.
    """

    algorithm: SignatureAlgorithm = "sha512"
    key_encoding: KeyEncoding = "base64"
    sites: frozenset[str] = frozenset()  # the allowlist (empty: any site)

    def verify(
        self, headers: Headers, body: bytes, secrets: Sequence[SecretStr], now: datetime
    ) -> None:
        """Accept when any signature header present verifies with any secret (rotation).

        `X-Oracle-CC-WebHook-Signature-SHA512` is HMAC-SHA-512. `X-Oracle-CC-WebHook-Signature`
        is HMAC with the algorithm its digest length shows once base64-decoded (SHA-1, SHA-256
        or SHA-512, `plain_algorithm`); undecodable or of another length, it fails and the other
        header still counts. Comparisons are constant-time, of the base64 text as sent.
        """
        del now  # OCC signs nothing dated
        checks: list[tuple[bytes, SignatureAlgorithm]] = []
        present = False
        if (plain := header(headers, PLAIN_HEADER)) is not None:
            present = True
            plain_bytes = plain.encode("utf-8", "replace")  # bytes: no TypeError on odd input
            if (algorithm := plain_algorithm(plain_bytes)) is not None:
                checks.append((plain_bytes, algorithm))
        if (sha512 := header(headers, SHA512_HEADER)) is not None:
            present = True
            checks.append((sha512.encode("utf-8", "replace"), "sha512"))
        if not present:
            raise SignatureError(f"missing {PLAIN_HEADER} header (or {SHA512_HEADER})")
        keys = [signing_key(s.get_secret_value(), self.key_encoding) for s in secrets]
        for sent, algorithm in checks:
            for key in keys:
                mac = base64.b64encode(hmac.digest(key, body, DIGESTS[algorithm]))
                if hmac.compare_digest(mac, sent):
                    return
        raise SignatureError("no OCC signature header matches the body")

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
        if self.sites and site not in self.sites:
            # `x-ccsite` is not covered by the signature: another site is another order
            shown = clean_text(site or "")[:MAX_SHOWN] or "(none)"
            raise UnknownShopError(f"site {shown!r} is not in [sources.occ] sites")
        return event_from_order(order, site, received_at)


def event_from_order(order: OCCOrder, site: str | None, received_at: datetime) -> OrderCancelled:
    """The canonical event of a cancelled OCC order (the webhook's, or the order list's).

    `site`: the webhook's site header or field, else the order's `siteId`; none is
    `MalformedPayloadError`, as is an order no event can be made of.
    """
    site = site or order.siteId
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


class OCCSourceSettings(SourceSettings):
    """`[sources.occ]`: the webhook secret(s) and how the secret becomes the HMAC key."""

    # Documents the tenant's setup only; each signature header carries its own (`OCCSource`).
    algorithm: SignatureAlgorithm = "sha512"
    key_encoding: KeyEncoding = "base64"  # "raw": the secret's bytes (Oracle bug 24619421)
    # `x-ccsite` is not covered by the signature: one signed body sent with other site ids would
    # be other orders. When set, any other site is refused (401 unknown_shop), and the backstop
    # lists these sites only.
    sites: tuple[str, ...] = ()


def source_secret_envs(settings: OCCSourceSettings) -> dict[str, str]:
    """None besides the webhook secrets every source names."""
    del settings
    return {}


def make_source(settings: OCCSourceSettings, secrets: Mapping[str, SecretStr]) -> OCCSource:
    """The OCC source from `[sources.occ]`: a base64 key unless configured otherwise."""
    del secrets
    return OCCSource(settings.algorithm, settings.key_encoding, frozenset(settings.sites))


# --- target: cancel the order on OCC (PLATFORMS.md section 3, outbound) ---------------------

HTTP_OK = 200
# Seconds: tokens from an application key last 5 minutes
# (https://docs.oracle.com/cd/E90963_01/Cloud.10-17/ExtendingCC/html/s0203refreshanaccesstoken01.html).
TOKEN_LIFETIME = 300.0
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

    OLD_KEYS = MappingProxyType({"timeout_s": OldKey("timeout")})

    base_url: str = Field(
        pattern=r"^https?://"
    )  # the admin host, e.g. https://a123.oracleoutsourcing.com
    app_key_env: EnvName = "OCC_APP_KEY"
    default_site: str | None = None  # the site of links that give a bare order id
    timeout: Seconds = Field(default=10.0, gt=0, le=300)  # per call
    reasons: dict[CancelReason, str] = Field(default_factory=dict)
    sites: dict[str, OCCSiteSettings] = Field(default_factory=dict)


def login_call(base_url: str, app_key: SecretStr) -> HttpCall:
    """`POST /ccadmin/v1/login` with the application key, client-credentials grant."""
    return client_credentials_call(
        f"{base_url}/ccadmin/v1/login", f"Bearer {app_key.get_secret_value()}"
    )


def read_login(status: int, headers: Headers, body: bytes) -> Token | RetryLater | Rejected:
    """The login answer: the access token, for `expires_in` seconds if given, else 5 minutes.

    Oracle documents the answer as `{"access_token", "token_type": "bearer"}` with no
    `expires_in` (https://docs.oracle.com/cd/E78936_01/Cloud.16-5/ExtendingCC/html/
    s0203usetheapplicationkeyforauthentic01.html) and the lifetime as 5 minutes in prose; a
    tenant that sends `expires_in` is believed. Either way a 401 fetches a new token once.
    """
    del headers
    return read_access_token(
        status, body, who="occ login", refused=frozenset({401, 403}), lifetime=TOKEN_LIFETIME
    )


def error_model(body: bytes) -> tuple[str, str]:
    """OCC's errorModel `{errorCode, message, status, ...}` (codes as strings or numbers).

    https://docs.oracle.com/en/cloud/saas/cx-commerce/ccdev/error-messages.html: the fields are
    strings, `status` repeats the HTTP status. Which HTTP status each code comes with is not
    documented, so outcomes follow `errorCode`. The multiple-error format has no top-level
    `errorCode`: the first entry of `errors` that has one stands for the answer.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "", ""
    if not isinstance(document, dict):
        return "", ""
    code, message = document.get("errorCode"), document.get("message")
    if code is None and isinstance(entries := document.get("errors"), list):
        first = next((e for e in entries if isinstance(e, dict) and "errorCode" in e), None)
        if first is not None:
            code, message = first["errorCode"], first.get("message") or message
    return (str(code) if code is not None else ""), (str(message)[:300] if message else "")


def _transient(status: int, headers: Headers, now: datetime) -> RetryLater | None:
    if retryable(status):
        return RetryLater(f"occ answered HTTP {status}", retry_after_seconds(headers, now))
    return None


def confirm_read(status: int, headers: Headers, body: bytes, now: datetime) -> Outcome:
    """The order as read after "not cancellable" (200101): `REMOVED` is already cancelled."""
    if (transient := _transient(status, headers, now)) is not None:
        return transient
    code, message = error_model(body)
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
class OCCTarget:
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
        code, message = error_model(body)
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


REASONS_PATH = "/ccadmin/v1/reasons?type=cancelReasons"


def _active_reasons(body: bytes) -> frozenset[str] | None:
    """The active cancel reason ids in a `GET /ccadmin/v1/reasons` answer; None if unreadable.

    Documented as `[{id, description, readableDescription, active}]` (the page's example is a
    bare list, its schema an object): a list, or an object's `items`, both read.
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    items = document.get("items") if isinstance(document, dict) else document
    if not isinstance(items, list):
        return None
    return frozenset(
        str(item["id"])
        for item in items
        if isinstance(item, dict) and item.get("id") is not None and item.get("active") is not False
    )


def _read_reasons(
    site: str | None, wanted: frozenset[str], now: datetime
) -> Callable[[int, Headers, bytes], str | Rejected | RetryLater]:
    where = f"site {site}" if site else "the default site"

    def read(status: int, headers: Headers, body: bytes) -> str | Rejected | RetryLater:
        if status in (401, 403):
            return Rejected(f"occ reasons read: credentials refused (HTTP {status})")
        if retryable(status):
            return RetryLater(f"occ answered HTTP {status}", retry_after_seconds(headers, now))
        active = _active_reasons(body) if status == HTTP_OK else None
        if active is None:
            code, message = error_model(body)
            return Rejected(f"occ reasons read at {where}: HTTP {status} {code} {message}".strip())
        if missing := sorted(wanted - active):
            return Rejected(
                f"cancel reason ids not active at {where}: {', '.join(missing)}"
                " (set [targets.occ] reasons to ids the tenant lists)"
            )
        return f"{where}: the {len(wanted)} cancel reason ids in use are active"

    return read


def target_probes(
    settings: OCCTargetSettings, secrets: Mapping[str, SecretStr], now: datetime
) -> tuple[Probe, ...]:
    """After the login (the target's `auth`), each site's cancel reasons list, read.

    `GET /ccadmin/v1/reasons?type=cancelReasons` (https://docs.oracle.com/en/cloud/saas/
    cx-commerce/cxocc/op-ccadmin-v1-reasons-get.html): every reason id the bridge would send
    to that site must be listed and active, or OCC refuses the cancel with 200218/200219.
    """
    del secrets
    base = settings.base_url.rstrip("/")
    reasons = {**DEFAULT_CANCEL_REASONS, **settings.reasons}
    named = {*settings.sites, *([settings.default_site] if settings.default_site else [])}
    sites: list[str | None] = [*sorted(named)] or [None]
    found = []
    for site in sites:
        used = {**reasons, **(settings.sites[site].reasons if site in settings.sites else {})}
        headers = {"Accept": "application/json", **({SITE_HEADER: site} if site else {})}
        call = HttpCall(method="GET", url=base + REASONS_PATH, headers=headers, body=b"")
        wanted = frozenset(used.values())
        found.append(
            Probe(f"occ reasons {site}", call, _read_reasons(site, wanted, now), bearer=True)
        )
    return tuple(found)


def make_target(settings: OCCTargetSettings, secrets: Mapping[str, SecretStr]) -> TargetBuild:
    """The OCC target from `[targets.occ]` and its application key."""
    base = settings.base_url.rstrip("/")
    adapter = OCCTarget(
        base,
        settings.default_site,
        {**DEFAULT_CANCEL_REASONS, **settings.reasons},
        {site: dict(s.reasons) for site, s in settings.sites.items()},
    )
    summary = (
        f"POST {base}/ccadmin/v1/orders/cancel; logs in with the key from"
        f" {settings.app_key_env} (set); order ids from the order links"
        f"{f', default site {settings.default_site}' if settings.default_site else ''};"
        f" timeout {settings.timeout:g}s"
    )
    return TargetBuild(
        adapter,
        settings.timeout,
        link_platform="occ",
        summary=summary,
        auth=TokenAuth(login_call(base, secrets["app_key_env"]), read_login),
    )
