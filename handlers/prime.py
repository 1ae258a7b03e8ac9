"""Amazon Buy with Prime (preview API 2024-11-01; PLATFORMS.md section 2).

Target: `cancelOrder` on the Buy with Prime GraphQL API, by order id or by an order alias (e.g.
`OMS_ORDER_ID`), with an `EXTERNAL_CANCELLATION_ID` alias set to the event id so a repeat is
recognisable. A bearer token from `POST /token` (client credentials, 15 minutes) is added by the
worker. `CancellationIneligible` (and `ConflictError`) read the order: a cancellation already
there is `AlreadyDone`, else `Rejected`.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal

import jwt
import orjson
from pydantic import Field, SecretStr, ValidationError

from contracts.events import CancelReason, OrderCancelled, Source
from contracts.prime import PrimeEvent, PrimeOrder
from handlers.base import (
    RETRYABLE_STATUSES,
    AlreadyDone,
    Delivered,
    EnvName,
    FollowUp,
    Headers,
    HttpCall,
    Ignored,
    Lookup,
    MalformedPayloadError,
    Outcome,
    Rejected,
    RetryLater,
    SignatureError,
    SourceOptions,
    TargetBuild,
    TargetSettings,
    Token,
    TokenAuth,
    Unavailable,
    client_credentials_call,
    header,
    parse_timestamp,
    read_access_token,
    retry_after_seconds,
)

API_URL = "https://api.buywithprime.amazon.com/graphql"
TOKEN_URL = "https://api.buywithprime.amazon.com/token"  # noqa: S105 - a URL
API_VERSION = "2024-11-01"
TOKEN_LIFETIME = 900.0  # seconds: 15 minutes

CANCEL_MUTATION = (
    "mutation CancelOrder($order: OrderIdentifierInput!, $input: CancelOrderInput) {"
    " cancelOrder(orderIdentifier: $order, input: $input) {"
    " cancellation { id state reason requestedBy aliases { aliasId aliasType } } } }"
)
ORDER_QUERY = (
    "query Order($order: OrderIdentifierInput!) { order(orderIdentifier: $order) {"
    " id packageInformation { summary { state } }"
    " cancellations { details { id state } } } }"
)
PrimeReason = Literal[
    "INCORRECT_SHIPPING_ADDRESS",
    "ITEMS_ARRIVING_LATE",
    "ORDERED_BY_MISTAKE",
    "OTHER",
    "OUT_OF_STOCK",
    "PAYMENT_ISSUE",
]
DEFAULT_REASONS: Mapping[CancelReason, PrimeReason] = MappingProxyType(
    {
        CancelReason.CUSTOMER_REQUEST: "ORDERED_BY_MISTAKE",
        CancelReason.FRAUD: "OTHER",
        CancelReason.INVENTORY: "OUT_OF_STOCK",
        CancelReason.PAYMENT_DECLINED: "PAYMENT_ISSUE",
        CancelReason.DUPLICATE: "ORDERED_BY_MISTAKE",
        CancelReason.OTHER: "OTHER",
    }
)
CONFIRM_CODES = frozenset({"CancellationIneligible"})
CONFIRM_TYPES = frozenset({"ConflictError"})
RETRY_TYPES = frozenset({"ThrottlingError", "InternalServerError"})
DONE_CANCELLATION_STATES = frozenset({"PENDING", "SUCCESS"})


class PrimeTargetSettings(TargetSettings):
    """`[targets.prime]`: cancel orders through the Buy with Prime API."""

    api_url: str = API_URL
    token_url: str = TOKEN_URL
    api_version: str = API_VERSION
    client_id_env: EnvName = "PRIME_CLIENT_ID"
    client_secret_env: EnvName = "PRIME_CLIENT_SECRET"  # noqa: S105 - a variable name
    business_product_id: str = Field(min_length=1)  # x-api-target-id: the store
    order_by: Literal["order_id", "alias"] = "order_id"  # what the linked id is
    alias_type: str = Field(default="OMS_ORDER_ID", min_length=1)  # with order_by = "alias"
    cancellation_alias_type: str = Field(default="EXTERNAL_CANCELLATION_ID", min_length=1)
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    reasons: dict[CancelReason, PrimeReason] = Field(default_factory=dict)


def token_call(url: str, client_id: SecretStr, client_secret: SecretStr) -> HttpCall:
    """OAuth 2.0 client credentials (RFC 6749 section 4.4), the client authenticated by Basic."""
    basic = f"{client_id.get_secret_value()}:{client_secret.get_secret_value()}"
    return client_credentials_call(url, f"Basic {base64.b64encode(basic.encode()).decode()}")


def read_token(status: int, headers: Headers, body: bytes) -> Token | RetryLater | Rejected:
    """The token answer: `access_token`, 15 minutes unless `expires_in` says otherwise."""
    del headers
    return read_access_token(
        status,
        body,
        who="prime token endpoint",
        refused=frozenset({400, 401, 403}),
        lifetime=TOKEN_LIFETIME,
    )


def _classification(error: Any) -> tuple[str, str, str]:  # noqa: ANN401 - JSON
    """(type, code, message) of one GraphQL error."""
    if not isinstance(error, dict):
        return "", "", ""
    extensions = error.get("extensions")
    found = extensions.get("classification") if isinstance(extensions, dict) else None
    found = found if isinstance(found, dict) else {}
    return (
        str(found.get("type", "")),
        str(found.get("code", "")),
        str(error.get("message", ""))[:300],
    )


def _document(body: bytes) -> dict[str, Any] | None:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None


def confirm_read(status: int, headers: Headers, body: bytes, now: datetime) -> Outcome:
    """The order after `CancellationIneligible`: a cancellation there already means done."""
    if status in RETRYABLE_STATUSES or status >= 500:  # noqa: PLR2004 - any 5xx
        return RetryLater(f"prime answered HTTP {status}", retry_after_seconds(headers, now))
    document = _document(body)
    if document is None:
        return RetryLater("prime order read: the answer is not JSON")
    data = document.get("data")
    order = data.get("order") if isinstance(data, dict) else None
    if not isinstance(order, dict):
        kind, code, message = _classification((document.get("errors") or [None])[0])
        if kind in RETRY_TYPES:
            return RetryLater(f"prime order read: {kind}")
        return Rejected(f"prime order read failed: {kind or code or 'no order'} {message}".strip())
    details = ((order.get("cancellations") or {}).get("details")) or []
    states = {d.get("state") for d in details if isinstance(d, dict)}
    summary = ((order.get("packageInformation") or {}).get("summary")) or {}
    if states & DONE_CANCELLATION_STATES or summary.get("state") == "CANCELLED":
        return AlreadyDone(f"prime: order {order.get('id')} already has a cancellation")
    return Rejected(f"prime: order {order.get('id')} cannot be cancelled (not eligible)")


@dataclass(frozen=True, slots=True)
class PrimeCancel:
    """The Buy with Prime target (the worker adds the bearer token)."""

    api_url: str
    api_version: str
    business_product_id: str
    order_by: Literal["order_id", "alias"] = "order_id"
    alias_type: str = "OMS_ORDER_ID"
    cancellation_alias_type: str = "EXTERNAL_CANCELLATION_ID"
    reasons: Mapping[CancelReason, str] = field(default_factory=lambda: DEFAULT_REASONS)

    def _identifier(self, order_id: str) -> dict[str, object]:
        if self.order_by == "alias":
            return {"alias": {"aliasId": order_id, "aliasType": self.alias_type}}
        return {"orderId": order_id}

    def _call(self, query: str, variables: dict[str, object]) -> HttpCall:
        return HttpCall(
            method="POST",
            url=self.api_url,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "x-api-version": self.api_version,
                "x-api-target-id": self.business_product_id,
            },
            body=orjson.dumps({"query": query, "variables": variables}),
        )

    def build(
        self, event: OrderCancelled, now: datetime, order_id: str | None = None
    ) -> HttpCall | Rejected:
        """`cancelOrder` for the linked order, tagged with the event id."""
        del now
        if order_id is None:
            return Rejected("no Buy with Prime order is linked to this cancellation")
        alias = {"aliasId": str(event.event_id), "aliasType": self.cancellation_alias_type}
        variables: dict[str, object] = {
            "order": self._identifier(order_id),
            "input": {"aliases": [alias], "reason": self.reasons.get(event.reason, "OTHER")},
        }
        return self._call(CANCEL_MUTATION, variables)

    def interpret(
        self, call: HttpCall, status: int, headers: Headers, body: bytes, now: datetime
    ) -> Outcome | FollowUp:
        """Errors come as GraphQL `errors[].extensions.classification`; see PLATFORMS.md 2."""
        if status in (401, 403):
            return Rejected(f"prime credentials refused (HTTP {status})")
        if status in RETRYABLE_STATUSES or status >= 500:  # noqa: PLR2004 - any 5xx
            return RetryLater(f"prime answered HTTP {status}", retry_after_seconds(headers, now))
        document = _document(body)
        if document is None:
            return RetryLater(f"prime answered HTTP {status} with a body that is not JSON")
        order = orjson.loads(call.body)["variables"]["order"]
        data = document.get("data")
        result = data.get("cancelOrder") if isinstance(data, dict) else None
        cancellation = result.get("cancellation") if isinstance(result, dict) else None
        if isinstance(cancellation, dict) and cancellation.get("id"):
            return Delivered(reference=str(cancellation["id"]), order_id=order.get("orderId"))
        return self._refusal(document, order, headers, now)

    def _refusal(
        self, document: dict[str, Any], order: dict[str, object], headers: Headers, now: datetime
    ) -> Outcome | FollowUp:
        errors = document.get("errors") or []
        if not errors:
            return RetryLater("prime answered without a cancellation or errors")
        kind, code, message = _classification(errors[0])
        if code in CONFIRM_CODES or kind in CONFIRM_TYPES:
            return FollowUp(self._call(ORDER_QUERY, {"order": order}), confirm_read)
        if kind in RETRY_TYPES:
            return RetryLater(f"prime: {kind}", retry_after_seconds(headers, now))
        if kind == "ResourceNotFoundError":
            return Rejected(f"prime: order not found ({message})")
        return Rejected(f"prime: {kind or 'error'} {code} {message}".strip())


def target_secret_envs(settings: PrimeTargetSettings) -> dict[str, str]:
    """The console app's client id and secret."""
    return {
        "client_id_env": settings.client_id_env,
        "client_secret_env": settings.client_secret_env,
    }


def make_target(settings: PrimeTargetSettings, secrets: Mapping[str, SecretStr]) -> TargetBuild:
    """The Buy with Prime target from `[targets.prime]` and its client credentials."""
    adapter = PrimeCancel(
        settings.api_url,
        settings.api_version,
        settings.business_product_id,
        settings.order_by,
        settings.alias_type,
        settings.cancellation_alias_type,
        {**DEFAULT_REASONS, **settings.reasons},
    )
    by = f"alias {settings.alias_type}" if settings.order_by == "alias" else "order id"
    summary = (
        f"cancelOrder at {settings.api_url} for store {settings.business_product_id}, order by"
        f" {by} from the order links; token from {settings.token_url} with"
        f" {settings.client_id_env}/{settings.client_secret_env} (set); timeout"
        f" {settings.timeout_s:g}s"
    )
    auth = TokenAuth(
        token_call(settings.token_url, secrets["client_id_env"], secrets["client_secret_env"]),
        read_token,
    )
    return TargetBuild(
        adapter, settings.timeout_s, link_platform="prime", summary=summary, auth=auth
    )


# --- source: Buy with Prime cancellation events in ------------------------------------------

SOURCE_QUERY = (
    "query Order($order: OrderIdentifierInput!) { order(orderIdentifier: $order) {"
    " id aliases { aliasId aliasType }"
    " packageInformation { summary { state } details { id state reason } }"
    " cancellations { details { id state reason requestedBy createdAt } } } }"
)
CANCELLATION_TYPES = frozenset(
    {"PACKAGE_DELIVERY_CANCELLED", "DELIVERY_CANCELLED", "ITEM_CANCELLED"}
)
RESOURCE = re.compile(r"^businessProduct/([^/]+)/order/([^/]+)")
TOKEN_AUDIENCE = "cancel-bridge/prime-webhooks"  # noqa: S105 - an audience, not a secret
WEBHOOK_TOKEN_LIFETIME = 900  # seconds: the bearer tokens the bridge issues to Prime
REASONS_IN: Mapping[str, CancelReason] = MappingProxyType(
    {
        "CUSTOMER_REQUESTED": CancelReason.CUSTOMER_REQUEST,
        "ORDERED_BY_MISTAKE": CancelReason.CUSTOMER_REQUEST,
        "INCORRECT_SHIPPING_ADDRESS": CancelReason.CUSTOMER_REQUEST,
        "ITEMS_ARRIVING_LATE": CancelReason.CUSTOMER_REQUEST,
        "UNFULFILLABLE": CancelReason.INVENTORY,
        "OUT_OF_STOCK": CancelReason.INVENTORY,
        "PAYMENT_ISSUE": CancelReason.PAYMENT_DECLINED,
    }
)


def _signing_key(secret: SecretStr) -> bytes:
    """A 32-byte HS256 key from the webhook secret (whatever its length)."""
    return hashlib.sha256(
        b"cancel-bridge/prime-webhook-tokens\x00" + secret.get_secret_value().encode()
    ).digest()


def issue_token(client_id: str, secret: SecretStr, now: datetime) -> str:
    """A bearer token for Prime's webhook calls (`POST /oauth/token`), signed with the secret."""
    issued = int(now.timestamp())
    claims = {
        "sub": client_id,
        "aud": TOKEN_AUDIENCE,
        "iat": issued,
        "exp": issued + WEBHOOK_TOKEN_LIFETIME,
    }
    return jwt.encode(claims, _signing_key(secret), algorithm="HS256")


def token_accepted(token: str, secrets: Sequence[SecretStr]) -> bool:
    """True if one of the secrets signed `token` and it has not expired."""
    for secret in secrets:
        try:
            jwt.decode(
                token,
                _signing_key(secret),
                algorithms=["HS256"],
                audience=TOKEN_AUDIENCE,
                options={"require": ["exp", "aud", "sub"]},
            )
        except jwt.PyJWTError:
            continue
        return True
    return False


def _event_from_order(  # noqa: PLR0913, PLR0917 - the webhook's facts, then the answer's
    shop: str,
    order_id: str,
    event: PrimeEvent,
    received_at: datetime,
    aliases: Mapping[str, str],
    status: int,
    headers: Headers,
    body: bytes,
) -> OrderCancelled | Ignored | Unavailable:
    del headers
    if status in RETRYABLE_STATUSES or status >= 500 or status in (401, 403):  # noqa: PLR2004
        return Unavailable(f"prime order API answered HTTP {status}")
    document = _document(body)
    if document is None:
        return Unavailable("prime order API answered with a body that is not JSON")
    data = document.get("data")
    raw = data.get("order") if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        kind, _, message = _classification((document.get("errors") or [None])[0])
        if kind == "ResourceNotFoundError":
            raise MalformedPayloadError(f"prime has no order {order_id}: {message}")
        return Unavailable(f"prime order API: {kind or 'no order in the answer'}")
    try:
        order = PrimeOrder.model_validate(raw)
    except ValidationError as exc:
        raise MalformedPayloadError(f"prime order: {exc.errors()[0]['msg']}") from None
    summary = order.packageInformation.summary if order.packageInformation else None
    if summary is None or summary.state != "CANCELLED":
        return Ignored("not every package of the order is cancelled (a partial cancellation)")
    done = order.cancellations.details if order.cancellations else []
    cancellation = next((c for c in done if c.state in ("SUCCESS", "PENDING")), None)
    packages = order.packageInformation.details if order.packageInformation else []
    source_reason = (cancellation.reason if cancellation else None) or next(
        (p.reason for p in packages if p.reason), None
    )
    linked = {
        aliases[alias.aliasType]: alias.aliasId
        for alias in order.aliases
        if alias.aliasType in aliases and alias.aliasId
    }
    try:
        return OrderCancelled.create(
            source=Source.PRIME,
            shop=shop,
            order_id=order_id,
            order_number=None,
            reason=REASONS_IN.get(source_reason or "", CancelReason.OTHER),
            source_reason=source_reason,
            cancelled_at=(
                parse_timestamp(cancellation.createdAt if cancellation else None)
                or parse_timestamp(event.eventTime)
                or received_at
            ),
            received_at=received_at,
            delivery_id=event.idempotencyKey or event.eventId,
            aliases=linked,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise MalformedPayloadError(f"{first['loc'][0]}: {first['msg']}") from None


@dataclass(frozen=True, slots=True)
class PrimeSource:
    """Buy with Prime events in: HTTP Basic or our bearer tokens; thin events, order fetched."""

    auth: Literal["basic", "oauth"]
    username: str
    api_url: str
    api_version: str
    token_auth: TokenAuth | None
    aliases: Mapping[str, str] = field(default_factory=dict)

    def verify(
        self, headers: Headers, body: bytes, secrets: Sequence[SecretStr], now: datetime
    ) -> None:
        """Basic credentials (the configured user and secret), or a token this bridge issued."""
        del body, now
        value = header(headers, "Authorization")
        if value is None:
            raise SignatureError("missing Authorization header")
        scheme, _, credentials = value.partition(" ")
        if self.auth == "oauth":
            if scheme.lower() != "bearer" or not token_accepted(credentials.strip(), secrets):
                raise SignatureError("the bearer token was not issued by this bridge, or expired")
            return
        if scheme.lower() != "basic":
            raise SignatureError("expected HTTP Basic credentials")
        try:
            user, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise SignatureError("HTTP Basic credentials are not base64 user:password") from None
        user_ok = hmac.compare_digest(user.encode(), self.username.encode())
        for secret in secrets:
            if (
                hmac.compare_digest(password.encode(), secret.get_secret_value().encode())
                and user_ok
            ):
                return
        raise SignatureError("HTTP Basic credentials do not match")

    def parse(
        self, headers: Headers, body: bytes, received_at: datetime
    ) -> OrderCancelled | Ignored | Lookup:
        """The event is thin: say which order to fetch; the answer builds the event."""
        del headers
        document = _document(body)
        if document is None:
            raise MalformedPayloadError("body is not a JSON object")
        kind = document.get("detail-type")
        if isinstance(document.get("detail"), dict):  # EventBridge envelope
            document = document["detail"]
        try:
            event = PrimeEvent.model_validate(document)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise MalformedPayloadError(
                f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
            ) from None
        kind = event.eventType or event.eventDescriptor or (kind if isinstance(kind, str) else None)
        if kind not in CANCELLATION_TYPES:
            return Ignored(f"event type {kind!r} is not a cancellation")
        found = next((m for r in event.resources if (m := RESOURCE.match(r))), None)
        if found is None:
            raise MalformedPayloadError("no businessProduct/<id>/order/<id> resource")
        shop, order_id = found.group(1), found.group(2)
        call = HttpCall(
            method="POST",
            url=self.api_url,
            headers={
                "Content-Type": "application/json",
                "Accept": "application/json",
                "x-api-version": self.api_version,
                "x-api-target-id": shop,
            },
            body=orjson.dumps(
                {"query": SOURCE_QUERY, "variables": {"order": {"orderId": order_id}}}
            ),
        )
        then = functools.partial(
            _event_from_order, shop, order_id, event, received_at, self.aliases
        )
        return Lookup(call, self.token_auth, then)


def source(options: SourceOptions) -> PrimeSource:
    """The registry's factory: Basic unless `auth = "oauth"`; the API from `[sources.prime.api]`."""
    api = options.api
    secrets = options.api_secrets
    token_auth = None
    if "client_id_env" in secrets and "client_secret_env" in secrets:
        token_auth = TokenAuth(
            token_call(
                api.get("token_url", TOKEN_URL),
                secrets["client_id_env"],
                secrets["client_secret_env"],
            ),
            read_token,
        )
    return PrimeSource(
        auth=options.auth or "basic",
        username=options.username or "",
        api_url=api.get("api_url", API_URL),
        api_version=api.get("api_version", API_VERSION),
        token_auth=token_auth,
        aliases=dict(options.aliases),
    )
