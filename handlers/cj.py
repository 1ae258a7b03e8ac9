"""CJ Affiliate: decline the commission of a cancelled order (PLATFORMS.md section 4).

`cancelOrders` takes a list of cancel requests as GraphQL variables. CJ reports failures inside
HTTP 200 (`cancelOrders.errors`); texts are undocumented, so "already done" is recognised by
configurable substrings (default `already`, `locked`). `updateTime` may not be in the future:
min(cancelled_at, now - 60 s). Open-ended-locking trackers need `status: Declined`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Literal

import orjson
from pydantic import Field, SecretStr, ValidationError

from contracts.cj import CancelOrdersResponse, GraphQLError
from contracts.events import CancelReason, OrderCancelled
from handlers.base import (
    RETRYABLE_STATUSES,
    AlreadyDone,
    Delivered,
    EnvName,
    Headers,
    HttpCall,
    Outcome,
    Rejected,
    RetryLater,
    TargetBuild,
    TargetSettings,
    retry_after_seconds,
)

MUTATION = (
    "mutation CancelOrders($orders: [OrderCancelRequest!]!) {"
    " cancelOrders(cancelledOrders: $orders) {"
    " orders { submissionId orderId status } errors { message fields } } }"
)
CLOCK_MARGIN = timedelta(seconds=60)
HTTP_OK = 200

# Canonical reason -> CJ CorrectionReason (live-schema values; PLATFORMS.md section 6).
DEFAULT_REASONS: Mapping[CancelReason, str] = MappingProxyType(
    {
        CancelReason.CUSTOMER_REQUEST: "Other",
        CancelReason.FRAUD: "InvalidCreditCard",
        CancelReason.INVENTORY: "CannotShipSoldOut",
        CancelReason.PAYMENT_DECLINED: "InvalidCreditCard",
        CancelReason.DUPLICATE: "DuplicateOrder",
        CancelReason.OTHER: "Other",
    }
)


@dataclass(frozen=True, slots=True)
class CJTarget:
    """What the CJ adapter needs to know; `bridge/settings.py` builds it from `[targets.cj]`."""

    url: str
    enterprise_id: str
    action_tracker_id: int
    open_ended_locking: bool = True
    # `link`: CJ's order id comes from the order links (the worker looks it up).
    order_id_from: Literal["order_id", "order_number", "link"] = "order_id"
    reasons: Mapping[CancelReason, str] = field(default_factory=lambda: DEFAULT_REASONS)
    # "locked", not "lock": "required for open-ended locking" must not read as done.
    already_done_markers: tuple[str, ...] = ("already", "locked")


def update_time(event: OrderCancelled, now: datetime) -> str:
    """The cancellation time, never later than a minute before `now` (CJ refuses the future)."""
    moment = min(event.cancelled_at, now - CLOCK_MARGIN)
    return moment.isoformat().replace("+00:00", "Z")


def cancel_request(
    event: OrderCancelled, cfg: CJTarget, now: datetime, linked: str | None = None
) -> dict[str, object] | Rejected:
    """One `OrderCancelRequest` for `event`, or why it cannot be built.

    `linked` is CJ's order id from the order links, when `order_id_from` is `link`.
    """
    match cfg.order_id_from:
        case "order_number":
            order_id = event.order_number
        case "link":
            order_id = linked
        case _:
            order_id = event.order_id
    if not order_id:
        return Rejected(f"event has no {cfg.order_id_from} to name the order at CJ")
    request: dict[str, object] = {
        "enterpriseId": cfg.enterprise_id,
        "actionTrackerId": cfg.action_tracker_id,
        "orderId": order_id,
        "updateTime": update_time(event, now),
    }
    if reason := cfg.reasons.get(event.reason, ""):
        request["correctionReason"] = reason
    if cfg.open_ended_locking:
        request["status"] = "Declined"
    return request


def build_cancel(
    event: OrderCancelled,
    cfg: CJTarget,
    token: SecretStr,
    now: datetime,
    linked: str | None = None,
) -> HttpCall | Rejected:
    """The `cancelOrders` call for `event` (one order in the list), with the bearer token."""
    request = cancel_request(event, cfg, now, linked)
    if isinstance(request, Rejected):
        return request
    body = orjson.dumps({"query": MUTATION, "variables": {"orders": [request]}})
    return HttpCall(
        method="POST",
        url=cfg.url,
        headers={
            "Authorization": f"Bearer {token.get_secret_value()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        },
        body=body,
    )


def _messages(errors: list[GraphQLError]) -> str:
    return "; ".join(error.message or "(no message)" for error in errors)[:500]


def _classify(errors: list[GraphQLError], cfg: CJTarget) -> Outcome:
    """`cancelOrders.errors`: all "already cancelled/locked" is done; anything else is final."""
    markers = tuple(marker.lower() for marker in cfg.already_done_markers)
    refused = [e for e in errors if not any(m in e.message.lower() for m in markers)]
    if refused:
        return Rejected(f"cj: {_messages(refused)}")
    return AlreadyDone(f"cj: {_messages(errors)}")


def _by_status(status: int, headers: Headers, now: datetime) -> Outcome | None:
    if status in (401, 403):
        return Rejected(f"cj credentials refused (HTTP {status})")
    if status in RETRYABLE_STATUSES or status >= 500:  # noqa: PLR2004 - any 5xx
        return RetryLater(f"cj answered HTTP {status}", retry_after_seconds(headers, now))
    return None


def _by_result(answer: CancelOrdersResponse, cfg: CJTarget) -> Outcome:
    result = answer.data.cancelOrders if answer.data else None
    if result is None:
        return RetryLater("cj answered 200 without data.cancelOrders")
    if result.errors:
        return _classify(result.errors, cfg)
    submitted = [order.submissionId for order in result.orders or [] if order.submissionId]
    if not submitted:
        return RetryLater("cj answered 200 with neither orders nor errors")
    return Delivered(reference=submitted[0])


def interpret(status: int, headers: Headers, body: bytes, cfg: CJTarget, now: datetime) -> Outcome:
    """What CJ's answer means for this cancellation.

    401/403: credentials, final. 408/425/429/5xx: retry (honouring Retry-After). A 200 whose body
    is not CJ's JSON or has no result: retry. Top-level GraphQL errors: our request is wrong,
    final. `cancelOrders.errors`: texts with a marker ("already", "locked") are done, others final.
    """
    if (early := _by_status(status, headers, now)) is not None:
        return early
    try:
        answer = CancelOrdersResponse.model_validate_json(body)
    except ValidationError:
        if status == HTTP_OK:
            return RetryLater("cj answered 200 with a body that is not its JSON")
        return Rejected(f"cj answered HTTP {status}")
    if answer.errors:
        return Rejected(f"cj graphql: {_messages(answer.errors)}")
    if status != HTTP_OK:
        return Rejected(f"cj answered HTTP {status}")
    return _by_result(answer, cfg)


@dataclass(frozen=True, slots=True)
class CJAdapter:
    """`CJTarget` and the token, as the worker's `TargetAdapter`."""

    cfg: CJTarget
    token: SecretStr

    def build(
        self, event: OrderCancelled, now: datetime, order_id: str | None = None
    ) -> HttpCall | Rejected:
        """`build_cancel` with this adapter's settings and token (`order_id`: a linked id)."""
        return build_cancel(event, self.cfg, self.token, now, order_id)

    def interpret(
        self, call: HttpCall, status: int, headers: Headers, body: bytes, now: datetime
    ) -> Outcome:
        """`interpret` with this adapter's settings."""
        del call  # one call per cancellation: the answer says it all
        return interpret(status, headers, body, self.cfg, now)


class CJSettings(TargetSettings):
    """`[targets.cj]`: decline CJ commissions with `cancelOrders`."""

    url: str = "https://tracking.api.cj.com/graphql"
    token_env: EnvName = "CJ_ACCESS_TOKEN"  # noqa: S105 - a variable name, not a token
    enterprise_id: str = Field(pattern=r"^[0-9]+$")
    action_tracker_id: int = Field(ge=0)
    open_ended_locking: bool = True
    order_id_from: Literal["order_id", "order_number", "link"] = "order_id"
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    reasons: dict[CancelReason, str] = Field(default_factory=dict)
    already_done_markers: tuple[str, ...] = ("already", "locked")


def secret_envs(settings: CJSettings) -> dict[str, str]:
    """The variables `[targets.cj]` names: the personal access token."""
    return {"token_env": settings.token_env}


def make(settings: CJSettings, secrets: Mapping[str, SecretStr]) -> TargetBuild:
    """The CJ adapter from `[targets.cj]` and its token."""
    cfg = CJTarget(
        url=settings.url,
        enterprise_id=settings.enterprise_id,
        action_tracker_id=settings.action_tracker_id,
        open_ended_locking=settings.open_ended_locking,
        order_id_from=settings.order_id_from,
        reasons={**DEFAULT_REASONS, **settings.reasons},
        already_done_markers=settings.already_done_markers,
    )
    summary = (
        f"POST {settings.url}; token from {settings.token_env} (set); enterprise"
        f" {settings.enterprise_id}, action tracker {settings.action_tracker_id}, orderId from"
        f" {settings.order_id_from}, status Declined:"
        f" {'yes' if settings.open_ended_locking else 'no'}, timeout {settings.timeout_s:g}s"
    )
    return TargetBuild(
        CJAdapter(cfg, secrets["token_env"]),
        settings.timeout_s,
        link_platform="cj" if settings.order_id_from == "link" else None,
        summary=summary,
    )
