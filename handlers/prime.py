"""Amazon Buy with Prime (preview API, versions 2024-04-01 and 2024-11-01; PLATFORMS.md section 2).

Target: `cancelOrder` on the Buy with Prime GraphQL API, by order id or by an order alias (e.g.
`OMS_ORDER_ID`), with an `EXTERNAL_CANCELLATION_ID` alias set to the event id so a repeat is
recognisable. A bearer token from `POST /token` (client credentials, 15 minutes) is added by the
worker. `CancellationIneligible` (and `ConflictError`) read the order: a cancellation already
there is `AlreadyDone`, else `Rejected`.

Every document selects only fields the published schema of the configured `x-api-version` has
(`contracts/schemas/prime-<version>.graphql`, transcribed from
https://documents.buywithprime.amazon.com/bwp-api/docs/ ; tests/test_prime_contract.py): GraphQL
refuses a whole document for one unknown field. The versions differ where we touch them
(changelog-for-the-buy-with-prime-api-v2024-11-01): 2024-04-01 names the order inside
`cancelOrder(input:)` and calls the packages `deliveryInformation`; 2024-11-01 has
`cancelOrder(orderIdentifier:, input:)` and `packageInformation`. Cancellations on the order
(`CancellationDetails`) have no `id` in either; only the `cancelOrder` result does.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal, get_args

import jwt
import orjson
from pydantic import Field, SecretStr, ValidationError

from contracts.events import CancelReason, OrderCancelled, Platform, Source
from contracts.prime import PrimeEvent, PrimeOrder
from handlers.base import (
    AlreadyDone,
    Delivered,
    EnvName,
    FollowUp,
    Headers,
    HttpCall,
    Ignored,
    Lookup,
    MalformedPayloadError,
    OldKey,
    Outcome,
    Probe,
    Rejected,
    RetryLater,
    Seconds,
    Section,
    SignatureError,
    SourceSettings,
    TargetBuild,
    TargetSettings,
    Token,
    TokenAuth,
    Unavailable,
    client_credentials_call,
    graphql_post,
    header,
    parse_timestamp,
    read_access_token,
    retry_after_seconds,
    retryable,
)

API_URL = "https://api.buywithprime.amazon.com/graphql"
TOKEN_URL = "https://api.buywithprime.amazon.com/token"  # noqa: S105 - a URL
PrimeApiVersion = Literal["2024-04-01", "2024-11-01"]
API_VERSIONS: tuple[str, ...] = get_args(PrimeApiVersion)
API_VERSION: PrimeApiVersion = "2024-11-01"
TOKEN_LIFETIME = 900.0  # seconds: 15 minutes
# How the console app's client id and secret reach `POST /token` (RFC 6749 section 2.3.1): the
# docs say "exchange your API credentials" without showing the request; HTTP Basic is what
# RFC 6749 servers must support, Amazon's own sample app sends form fields. Configurable.
TokenClientAuth = Literal["basic", "form"]

_CANCELLATION = "cancellation { id state reason requestedBy aliases { aliasId aliasType } }"


@dataclass(frozen=True, slots=True)
class PrimeDocuments:
    """The GraphQL documents for one API version (see the module docstring)."""

    cancel: str  # the cancelOrder mutation
    order_in_input: bool  # 2024-04-01: the order is `input.orderIdentifier`, not an argument
    confirm: str  # the order read after CancellationIneligible / ConflictError
    source: str  # the order read that completes a thin webhook


def _order_query(packages: str, selection: str, cancellations: str, aliases: str = "") -> str:
    # `packages` may be a GraphQL alias (`packageInformation: deliveryInformation`) so that the
    # answer has the same shape in every version.
    return (
        "query Order($order: OrderIdentifierInput!) { order(orderIdentifier: $order) {"
        f" id{aliases} {packages} {{ summary {{ state }} details {{ {selection} }} }}"
        f" cancellations {{ details {{ {cancellations} }} }} }} }}"
    )


def _documents(packages: str, cancel: str, *, order_in_input: bool) -> PrimeDocuments:
    return PrimeDocuments(
        cancel=cancel,
        order_in_input=order_in_input,
        confirm=_order_query(packages, "id state", "state"),
        source=_order_query(
            packages,
            "id state reason",
            "state reason requestedBy createdAt",
            " aliases { aliasId aliasType }",
        ),
    )


DOCUMENTS: Mapping[str, PrimeDocuments] = MappingProxyType(
    {
        "2024-11-01": _documents(
            "packageInformation",
            "mutation CancelOrder($order: OrderIdentifierInput!, $input: CancelOrderInput) {"
            f" cancelOrder(orderIdentifier: $order, input: $input) {{ {_CANCELLATION} }} }}",
            order_in_input=False,
        ),
        "2024-04-01": _documents(
            "packageInformation: deliveryInformation",
            "mutation CancelOrder($input: CancelOrderInput!) {"
            f" cancelOrder(input: $input) {{ {_CANCELLATION} }} }}",
            order_in_input=True,
        ),
    }
)
CANCEL_MUTATION = DOCUMENTS[API_VERSION].cancel
ORDER_QUERY = DOCUMENTS[API_VERSION].confirm
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


def documents_for(api_version: str) -> PrimeDocuments:
    """The documents for `api_version`; a version without a transcribed schema is refused."""
    try:
        return DOCUMENTS[api_version]
    except KeyError:
        raise ValueError(
            f"unknown Buy with Prime API version {api_version!r} (known: {', '.join(API_VERSIONS)})"
        ) from None


class PrimeTargetSettings(TargetSettings):
    """`[targets.prime]`: cancel orders through the Buy with Prime API."""

    OLD_KEYS = MappingProxyType({"timeout_s": OldKey("timeout")})

    api_url: str = API_URL
    token_url: str = TOKEN_URL
    api_version: PrimeApiVersion = API_VERSION
    token_client_auth: TokenClientAuth = "basic"  # noqa: S105 - a mode, not a secret
    client_id_env: EnvName = "PRIME_CLIENT_ID"
    client_secret_env: EnvName = "PRIME_CLIENT_SECRET"  # noqa: S105 - a variable name
    business_product_id: str = Field(min_length=1)  # x-api-target-id: the store
    order_by: Literal["order_id", "alias"] = "order_id"  # what the linked id is
    alias_type: str = Field(default="OMS_ORDER_ID", min_length=1)  # with order_by = "alias"
    cancellation_alias_type: str = Field(default="EXTERNAL_CANCELLATION_ID", min_length=1)
    timeout: Seconds = Field(default=10.0, gt=0, le=300)  # per call
    reasons: dict[CancelReason, PrimeReason] = Field(default_factory=dict)
    # An order of this store that `check-config --online` reads (never cancels) to show that
    # the order queries hold against the live API; unset, only the token is checked.
    test_order_id: str | None = Field(default=None, min_length=1)


def token_call(
    url: str, client_id: SecretStr, client_secret: SecretStr, client_auth: TokenClientAuth = "basic"
) -> HttpCall:
    """OAuth 2.0 client credentials (RFC 6749 section 4.4).

    The client authenticates by HTTP Basic (`basic`, RFC 6749 section 2.3.1's must-support) or
    by `client_id`/`client_secret` form fields (`form`). Buy with Prime's authentication page
    (https://documents.buywithprime.amazon.com/bwp-api/docs/authenticate-to-the-buy-with-prime-api)
    does not show which: `token_client_auth` chooses.
    """
    if client_auth == "form":
        form = urllib.parse.urlencode(
            {
                "grant_type": "client_credentials",
                "client_id": client_id.get_secret_value(),
                "client_secret": client_secret.get_secret_value(),
            }
        )
        return HttpCall(
            method="POST",
            url=url,
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
            body=form.encode(),
        )
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
    """(type, code, message) of one GraphQL error.

    Prime documents `extensions.classification` as an object `{type, code, details, errorType,
    errorCode}` (https://documents.buywithprime.amazon.com/bwp-api/docs/order-mutations-cancelorder,
    types in troubleshoot-order-errors); graphql-java servers put a plain string there
    (`"classification": "ValidationError"`), e.g. for a document the schema refuses. Both count.
    """
    if not isinstance(error, dict):
        return "", "", ""
    extensions = error.get("extensions")
    extensions = extensions if isinstance(extensions, dict) else {}
    found = extensions.get("classification")
    if isinstance(found, str):
        kind, code = found, extensions.get("code", "")
    elif isinstance(found, dict):
        kind, code = found.get("type", ""), found.get("code", "")
    else:
        kind, code = "", ""
    return str(kind or ""), str(code or ""), str(error.get("message", ""))[:300]


def _first_error(document: Mapping[str, Any]) -> Any:  # noqa: ANN401 - JSON
    errors = document.get("errors")
    return errors[0] if isinstance(errors, list) and errors else None


def _document(body: bytes) -> dict[str, Any] | None:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None


def full_cancellation(order: PrimeOrder) -> tuple[bool, str]:
    """Whether every package of the order is cancelled, and what says so (or why not).

    `packageInformation.summary.state` is `CANCELLED` when "all package deliveries are
    canceled" (docs order-objects-packageinformationsummary): a summary decides. Without one,
    the packages in `details` decide: every one `CANCELLED`. Only an order that lists no package
    at all is decided by a `SUCCESS`/`PENDING` cancellation: a merchant's cancelOrder "currently
    only supports entire order cancellation" (order-objects-cancelorderinput), but a shopper's or
    Prime's cancellation may cover some items only (`PACKAGE_DELIVERY_CANCELLED` fires for "one
    or more items"), so it never outweighs a package that is not cancelled. Pages under
    https://documents.buywithprime.amazon.com/bwp-api/docs/.
    """
    info = order.packageInformation
    summary = info.summary.state if info is not None and info.summary is not None else None
    packages = sorted({str(package.state) for package in info.details}) if info else []
    done = order.cancellations.details if order.cancellations is not None else []
    cancellation = next((c.state for c in done if c.state in DONE_CANCELLATION_STATES), None)
    if summary is not None:
        full = summary == "CANCELLED"
        why = f"the package summary is {summary}"
    elif packages == ["CANCELLED"]:
        full, why = True, "every package is CANCELLED (no package summary)"
    elif packages:
        full, why = False, f"no package summary, packages {', '.join(packages)}"
    elif cancellation is not None:
        full, why = True, f"a {cancellation} cancellation and no package listed (no summary)"
    else:
        full, why = False, "no package summary, no packages"
    if full:
        return True, why
    if summary is None and not packages:
        return False, f"{why} and no live cancellation: nothing says the order is cancelled"
    return False, f"{why}: not every package is cancelled (a partial cancellation)"


def _readable_order(document: Mapping[str, Any]) -> PrimeOrder | None:
    data = document.get("data")
    raw = data.get("order") if isinstance(data, dict) else None
    try:
        return PrimeOrder.model_validate(raw) if isinstance(raw, dict) else None
    except ValidationError:
        return None


def confirm_read(status: int, headers: Headers, body: bytes, now: datetime) -> Outcome:
    """The order after `CancellationIneligible`: a cancellation there already means done.

    Done when a cancellation is `PENDING` or `SUCCESS`, or every package is cancelled
    (`full_cancellation`); an order read refused by Prime is `Rejected` unless retryable.
    """
    if retryable(status):
        return RetryLater(f"prime answered HTTP {status}", retry_after_seconds(headers, now))
    document = _document(body)
    if document is None:
        return RetryLater("prime order read: the answer is not JSON")
    order = _readable_order(document)
    if order is None:
        kind, code, message = _classification(_first_error(document))
        if kind in RETRY_TYPES:
            return RetryLater(f"prime order read: {kind}")
        return Rejected(f"prime order read failed: {kind or code or 'no order'} {message}".strip())
    states = {c.state for c in (order.cancellations.details if order.cancellations else [])}
    if states & DONE_CANCELLATION_STATES or full_cancellation(order)[0]:
        return AlreadyDone(f"prime: order {order.id} already has a cancellation")
    return Rejected(f"prime: order {order.id} cannot be cancelled (not eligible)")


def _api_call(url: str, version: str, target_id: str, query: str, variables: object) -> HttpCall:
    """A GraphQL call: bearer token added by the worker or the receiver's lookups."""
    return graphql_post(
        url, query, variables, {"x-api-version": version, "x-api-target-id": target_id}
    )


def _sent_order(call: HttpCall) -> dict[str, Any]:
    """The order identifier a cancelOrder call named (an argument, or inside `input`)."""
    variables = orjson.loads(call.body)["variables"]
    found = variables.get("order") or variables["input"]["orderIdentifier"]
    return found if isinstance(found, dict) else {}


@dataclass(frozen=True, slots=True)
class PrimeTarget:
    """The Buy with Prime target (the worker adds the bearer token)."""

    api_url: str
    api_version: str
    business_product_id: str
    order_by: Literal["order_id", "alias"] = "order_id"
    alias_type: str = "OMS_ORDER_ID"
    cancellation_alias_type: str = "EXTERNAL_CANCELLATION_ID"
    reasons: Mapping[CancelReason, str] = field(default_factory=lambda: DEFAULT_REASONS)

    def __post_init__(self) -> None:
        documents_for(self.api_version)  # refuse a version with no transcribed schema

    def _identifier(self, order_id: str) -> dict[str, object]:
        if self.order_by == "alias":
            return {"alias": {"aliasId": order_id, "aliasType": self.alias_type}}
        return {"orderId": order_id}

    def _call(self, query: str, variables: dict[str, object]) -> HttpCall:
        return _api_call(self.api_url, self.api_version, self.business_product_id, query, variables)

    def build(
        self, event: OrderCancelled, now: datetime, order_id: str | None = None
    ) -> HttpCall | Rejected:
        """`cancelOrder` for the linked order, tagged with the event id.

        2024-11-01: `cancelOrder(orderIdentifier:, input:)`; 2024-04-01: `cancelOrder(input:)`
        with `input.orderIdentifier`
        (https://documents.buywithprime.amazon.com/bwp-api/docs/order-mutations-cancelorder and
        .../bwp-api/v2024-04-01/docs/order-mutations-cancelorder). `reason` is the
        CancellationReasonInput enum, sent in `variables` as its name.
        """
        del now
        if order_id is None:
            return Rejected("no Buy with Prime order is linked to this cancellation")
        documents = documents_for(self.api_version)
        alias = {"aliasId": str(event.event_id), "aliasType": self.cancellation_alias_type}
        request: dict[str, object] = {
            "aliases": [alias],
            "reason": self.reasons.get(event.reason, "OTHER"),
        }
        if documents.order_in_input:
            return self._call(
                documents.cancel,
                {"input": {"orderIdentifier": self._identifier(order_id)} | request},
            )
        return self._call(documents.cancel, {"order": self._identifier(order_id), "input": request})

    def interpret(
        self, call: HttpCall, status: int, headers: Headers, body: bytes, now: datetime
    ) -> Outcome | FollowUp:
        """Errors come as GraphQL `errors[].extensions.classification`; see PLATFORMS.md 2."""
        if status in (401, 403):
            return Rejected(f"prime credentials refused (HTTP {status})")
        if retryable(status):
            return RetryLater(f"prime answered HTTP {status}", retry_after_seconds(headers, now))
        document = _document(body)
        if document is None:
            return RetryLater(f"prime answered HTTP {status} with a body that is not JSON")
        order = _sent_order(call)
        data = document.get("data")
        result = data.get("cancelOrder") if isinstance(data, dict) else None
        cancellation = result.get("cancellation") if isinstance(result, dict) else None
        if isinstance(cancellation, dict) and cancellation.get("id"):
            return Delivered(reference=str(cancellation["id"]), order_id=order.get("orderId"))
        return self._refusal(document, order, headers, now)

    def _refusal(
        self, document: dict[str, Any], order: dict[str, object], headers: Headers, now: datetime
    ) -> Outcome | FollowUp:
        error = _first_error(document)
        if error is None:
            return RetryLater("prime answered without a cancellation or errors")
        kind, code, message = _classification(error)
        if code in CONFIRM_CODES or kind in CONFIRM_TYPES:
            confirm = documents_for(self.api_version).confirm
            return FollowUp(self._call(confirm, {"order": order}), confirm_read)
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
    adapter = PrimeTarget(
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
        f"cancelOrder (API {settings.api_version}) at {settings.api_url} for store"
        f" {settings.business_product_id}, order by {by} from the order links; token from"
        f" {settings.token_url} ({settings.token_client_auth} client authentication) with"
        f" {settings.client_id_env}/{settings.client_secret_env} (set); timeout"
        f" {settings.timeout:g}s"
    )
    auth = TokenAuth(
        token_call(
            settings.token_url,
            secrets["client_id_env"],
            secrets["client_secret_env"],
            settings.token_client_auth,
        ),
        read_token,
    )
    return TargetBuild(adapter, settings.timeout, link_platform="prime", summary=summary, auth=auth)


def _read_test_order(status: int, headers: Headers, body: bytes) -> str | Rejected | RetryLater:
    """`check-config --online`: the test order's read must come back as an order."""
    del headers
    if status in (401, 403):
        return Rejected(f"prime order read: credentials refused (HTTP {status})")
    if retryable(status):
        return RetryLater(f"prime order read: HTTP {status}")
    document = _document(body)
    if document is None:
        return Rejected(f"prime order read: HTTP {status} with a body that is not JSON")
    order = _readable_order(document)
    if order is None:
        kind, code, message = _classification(_first_error(document))
        return Rejected(f"prime order read refused: {kind or code or 'no order'} {message}".strip())
    return f"order {order.id} read"


def target_probes(
    settings: PrimeTargetSettings, secrets: Mapping[str, SecretStr], now: datetime
) -> tuple[Probe, ...]:
    """Harmless calls: both order queries for `test_order_id` (a read; nothing is cancelled).

    Prime documents no introspection, so the queries are shown to hold by running them; the
    token endpoint is checked before them (the target's `auth`).
    """
    del secrets, now
    if settings.test_order_id is None:
        return ()
    documents = documents_for(settings.api_version)
    variables = {"order": {"orderId": settings.test_order_id}}
    return tuple(
        Probe(
            f"prime {what}",
            _api_call(
                settings.api_url,
                settings.api_version,
                settings.business_product_id,
                query,
                variables,
            ),
            _read_test_order,
            bearer=True,
        )
        for what, query in (("confirm-read", documents.confirm), ("order read", documents.source))
    )


# --- source: Buy with Prime cancellation events in ------------------------------------------

SOURCE_QUERY = DOCUMENTS[API_VERSION].source
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
    """The event from the order read; see `full_cancellation` for what counts as cancelled."""
    del headers
    if retryable(status) or status in (401, 403):
        return Unavailable(f"prime order API answered HTTP {status}")
    document = _document(body)
    if document is None:
        return Unavailable("prime order API answered with a body that is not JSON")
    data = document.get("data")
    raw = data.get("order") if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        kind, code, message = _classification(_first_error(document))
        if kind == "ResourceNotFoundError":
            raise MalformedPayloadError(f"prime has no order {order_id}: {message}")
        # A refused document (ValidationError) is our bug or a version mismatch: Prime sends the
        # event again later, after the fix, rather than it being dropped.
        why = " ".join(part for part in (kind, code, message) if part)
        return Unavailable(f"prime order API: {why or 'no order in the answer'}")
    try:
        order = PrimeOrder.model_validate(raw)
    except ValidationError as exc:
        raise MalformedPayloadError(f"prime order: {exc.errors()[0]['msg']}") from None
    full, why = full_cancellation(order)
    if not full:
        return Ignored(f"prime order {order_id}: {why}")
    done = order.cancellations.details if order.cancellations else []
    cancellation = next((c for c in done if c.state in ("SUCCESS", "PENDING")), None)
    packages = order.packageInformation.details if order.packageInformation else []
    source_reason = (cancellation.reason if cancellation else None) or next(
        (p.reason for p in packages if p.reason), None
    )
    linked = {
        aliases[alias.aliasType]: alias.aliasId
        for alias in order.aliases
        if alias.aliasType is not None and alias.aliasType in aliases and alias.aliasId
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

    def __post_init__(self) -> None:
        documents_for(self.api_version)  # refuse a version with no transcribed schema

    def online_probes(self) -> tuple[TokenAuth | None, tuple[Probe, ...]]:
        """The token endpoint of `[sources.prime.api]`; the order query is the target's probe.

        The order read needs an order and its store, which only an event names: with
        `[targets.prime] test_order_id` the same query is run by the target's probes.
        """
        return self.token_auth, ()

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
        call = _api_call(
            self.api_url,
            self.api_version,
            shop,
            documents_for(self.api_version).source,
            {"order": {"orderId": order_id}},
        )
        then = functools.partial(
            _event_from_order, shop, order_id, event, received_at, self.aliases
        )
        return Lookup(call, self.token_auth, then)


class PrimeApiSettings(Section):
    """`[sources.prime.api]`: the order API a thin event is completed from."""

    client_id_env: EnvName
    client_secret_env: EnvName
    api_url: str = API_URL
    token_url: str = TOKEN_URL
    api_version: PrimeApiVersion = API_VERSION  # a version whose schema we transcribed
    token_client_auth: TokenClientAuth = "basic"  # noqa: S105 - Basic, or form fields


class PrimeSourceSettings(SourceSettings):
    """`[sources.prime]`: Buy with Prime events in, completed by a read of the order."""

    auth: Literal["basic", "oauth"] = "basic"  # how Prime authenticates to us
    username: str = Field(min_length=1)  # the HTTP Basic user, or the OAuth client id
    aliases: dict[str, Platform] = Field(default_factory=dict)  # alias type -> platform
    api: PrimeApiSettings


def source_secret_envs(settings: PrimeSourceSettings) -> dict[str, str]:
    """The order API's client id and secret (`[sources.prime.api]`)."""
    return {
        "api.client_id_env": settings.api.client_id_env,
        "api.client_secret_env": settings.api.client_secret_env,
    }


def make_source(settings: PrimeSourceSettings, secrets: Mapping[str, SecretStr]) -> PrimeSource:
    """The Prime source from `[sources.prime]`: Basic unless `auth = "oauth"`."""
    api = settings.api
    token_auth = TokenAuth(
        token_call(
            api.token_url,
            secrets["api.client_id_env"],
            secrets["api.client_secret_env"],
            api.token_client_auth,
        ),
        read_token,
    )
    return PrimeSource(
        auth=settings.auth,
        username=settings.username,
        api_url=api.api_url,
        api_version=api.api_version,
        token_auth=token_auth,
        aliases=dict(settings.aliases),
    )
