"""CJ Affiliate: decline the commission of a cancelled order (PLATFORMS.md section 4).

`cancelOrders` takes a list of cancel requests as GraphQL variables: one order per call
(`build_cancel`, `interpret`), or many (`build_cancels`, `interpret_cancels`: the worker's batch
hook, `[targets.cj] batch_size`), each order's answer attributed by the `orderId` CJ echoes and
sent again alone where it cannot be (docs/platforms/assumptions.md#cj-batch). CJ reports
failures inside HTTP 200 (`cancelOrders.errors`); texts are undocumented, so "already done" is
recognised by configurable substrings (default `already`, `locked`). `updateTime` may not be in
the future: min(cancelled_at, now - 60 s). `status: Declined` is sent only for trackers with
open-ended locking (seeds/cj-cancel-orders-parameters.txt: "conditional"); CJ silently does not
process a status sent for other trackers, so the setting has no default.

CJ validates an accepted cancellation later, and a failure there is silent: the only trace of a
success is in the Commission Detail API (`advertiserCommissions`), where it leaves a reversal and
a cancellation record for the order (zero amounts; `validationStatus` DECLINED on open-ended
trackers, AUTOMATED on others: `is_decline`). `commissions_call` and `read_commissions` are the
sans-I/O half of reconciling against it (`bridge/reconcile/reconciler.py` makes the calls).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, ValidationError, model_validator

from contracts.cj import (
    AdvertiserCommissions,
    CancelledOrder,
    CancelOrdersResponse,
    CancelOrdersResult,
    CommissionRecord,
    CommissionsResponse,
    GraphQLError,
)
from contracts.events import CancelReason, OrderCancelled, Source
from contracts.timestamps import utc_z
from handlers.base import (
    AlreadyDone,
    BatchCall,
    Delivered,
    Duration,
    EnvName,
    Headers,
    HttpCall,
    OldKey,
    Outcome,
    Probe,
    Rejected,
    RetryLater,
    Seconds,
    TargetBuild,
    TargetSettings,
    Unattributed,
    format_duration,
    graphql_post,
    introspection_call,
    read_introspection,
    retry_after_seconds,
    retryable,
)

MUTATION = (
    "mutation CancelOrders($orders: [OrderCancelRequest!]!) {"
    " cancelOrders(cancelledOrders: $orders) {"
    " orders { submissionId orderId status } errors { message fields } } }"
)
CLOCK_MARGIN = timedelta(seconds=60)
# Batching (`[targets.cj] batch_size`, `batch_linger`), off unless set: with it, a failure of
# the whole call (5xx, timeout, 429) is every order's in it. CJ takes up to 10,000 orders per
# submission (docs.cj.com/docs/restatements-api; PLATFORMS.md section 4). 50 (recommended)
# amortises a call's fixed cost (a round trip, CJ's parsing and validation of the document)
# over many orders, while an answer naming no order costs at most 50 calls alone; 20 ms is little
# beside a call's round trip and far below any webhook deadline, and the worker sends sooner
# when no message it holds can still join (`bridge/worker/batch_call.py`).
MAX_BATCH = 10_000
BATCH_SIZE = 50
BATCH_LINGER = 0.02
HTTP_OK = 200

OrderIdFrom = Literal["order_id", "order_number", "link"]
# What check-config says when a `[targets.cj]` lacks one of the keys that have no default.
OPEN_ENDED_LOCKING_HELP = (
    "true if the action tracker uses open-ended locking (cancelOrders then sends status"
    " Declined, as CJ requires there), false if not (CJ accepts a status sent for other trackers"
    " and then silently does not process it); ask your CJ account manager or see the tracker's"
    " locking settings in CJ Account Manager"
)
ORDER_ID_FROM_HELP = (
    '"order_id", "order_number" or "link": the id the storefront\'s CJ tracking tag reported as'
    ' the order id, the only id CJ knows the order by ("link": from the order links API)'
)

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
class CJCancelConfig:
    """What the CJ adapter needs to know; `bridge/settings.py` builds it from `[targets.cj]`."""

    url: str
    enterprise_id: str
    action_tracker_id: int
    # No defaults: the tracker's setup decides both (see `CJTargetSettings`).
    open_ended_locking: bool
    # `link`: CJ's order id comes from the order links (the worker looks it up).
    order_id_from: OrderIdFrom
    reasons: Mapping[CancelReason, str] = field(default_factory=lambda: DEFAULT_REASONS)
    # "locked", not "lock": "required for open-ended locking" must not read as done.
    already_done_markers: tuple[str, ...] = ("already", "locked")
    # Orders per `cancelOrders` call, and how long the worker waits to fill one (seconds).
    batch_size: int = 1
    batch_linger: float = BATCH_LINGER


def update_time(event: OrderCancelled, now: datetime) -> str:
    """The cancellation time, never later than a minute before `now` (CJ refuses the future)."""
    moment = min(event.cancelled_at, now - CLOCK_MARGIN)
    return utc_z(moment)


def order_id_for(
    event: OrderCancelled, cfg: CJCancelConfig, linked: str | None = None
) -> str | None:
    """The id CJ knows `event`'s order by (`order_id_from`); None when the event lacks it.

    `linked` is CJ's order id from the order links, when `order_id_from` is `link`.
    """
    match cfg.order_id_from:
        case "order_number":
            return event.order_number
        case "link":
            return linked
        case _:
            return event.order_id


def graphql_call(url: str, token: SecretStr, query: str, variables: object) -> HttpCall:
    """A POST of one GraphQL document to CJ, with the personal access token."""
    return graphql_post(
        url, query, variables, {"Authorization": f"Bearer {token.get_secret_value()}"}
    )


def cancel_request(
    event: OrderCancelled, cfg: CJCancelConfig, now: datetime, linked: str | None = None
) -> dict[str, object] | Rejected:
    """One `OrderCancelRequest` for `event`, or why it cannot be built.

    `linked` is CJ's order id from the order links, when `order_id_from` is `link`.
    """
    order_id = order_id_for(event, cfg, linked)
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
    cfg: CJCancelConfig,
    token: SecretStr,
    now: datetime,
    linked: str | None = None,
) -> HttpCall | Rejected:
    """The `cancelOrders` call for `event` (one order in the list), with the bearer token."""
    request = cancel_request(event, cfg, now, linked)
    if isinstance(request, Rejected):
        return request
    return graphql_call(cfg.url, token, MUTATION, {"orders": [request]})


def build_cancels(
    items: Sequence[tuple[OrderCancelled, str | None]],
    cfg: CJCancelConfig,
    token: SecretStr,
    now: datetime,
) -> BatchCall:
    """One `cancelOrders` call for many cancellations: a request per item, in the list.

    `items` are events and their linked CJ order ids (`order_id_from = "link"`). An item no
    request can be built for is refused (as `build_cancel` would); the call carries the others,
    in order, and `keys` are their CJ order ids (what `interpret_cancels` attributes by).
    """
    requests: list[dict[str, object]] = []
    sent: list[int] = []
    keys: list[str] = []
    refused: dict[int, Rejected] = {}
    for index, (event, linked) in enumerate(items):
        request = cancel_request(event, cfg, now, linked)
        if isinstance(request, Rejected):
            refused[index] = request
            continue
        requests.append(request)
        sent.append(index)
        keys.append(str(request["orderId"]))
    call = graphql_call(cfg.url, token, MUTATION, {"orders": requests}) if requests else None
    return BatchCall(call, tuple(sent), tuple(keys), refused)


def interpret_cancels(  # noqa: PLR0911, PLR0913, PLR0917 - `interpret`'s, plus the orders
    status: int,
    headers: Headers,
    body: bytes,
    keys: Sequence[str],
    cfg: CJCancelConfig,
    now: datetime,
) -> tuple[Outcome | Unattributed, ...]:
    """What CJ's answer to a `cancelOrders` of the orders `keys` means for each, in order.

    One order: `interpret`, as when sent alone. Several: what concerns the whole request
    applies to each (401/403: credentials; 408/425/429/5xx: retry; a 200 that is not CJ's JSON
    or has no `data.cancelOrders`: retry). What one order may have caused is not blamed on the
    others: top-level GraphQL errors (a value CJ refuses) or another status leave every order
    `Unattributed`, to be sent again alone. Otherwise each order is settled by `attribute`.
    """
    count = len(keys)
    if count == 1:
        return (interpret(status, headers, body, cfg, now),)
    if (early := _by_status(status, headers, now)) is not None:
        return (early,) * count
    try:
        answer = CancelOrdersResponse.model_validate_json(body)
    except ValidationError:
        if status == HTTP_OK:
            return (RetryLater("cj answered 200 with a body that is not its JSON"),) * count
        return (Unattributed(f"cj answered HTTP {status} to {count} orders"),) * count
    if answer.errors:
        why = f"cj graphql refused {count} orders together: {_messages(answer.errors)}"
        return (Unattributed(why),) * count
    if status != HTTP_OK:
        return (Unattributed(f"cj answered HTTP {status} to {count} orders"),) * count
    result = answer.data.cancelOrders if answer.data else None
    if result is None:
        return (RetryLater("cj answered 200 without data.cancelOrders"),) * count
    return attribute(result, keys, cfg)


def attribute(
    result: CancelOrdersResult, keys: Sequence[str], cfg: CJCancelConfig
) -> tuple[Outcome | Unattributed, ...]:
    """Each order's outcome from `cancelOrders` of several orders (`keys`), in order.

    CJ publishes neither whether `orders` echoes each `orderId` as sent (the live schema makes
    `orderId` non-null; CJ's example does not select it) nor which order an entry of `errors`
    concerns (`{message, fields}` only). So (docs/platforms/assumptions.md#cj-batch):

    - an order named by exactly one entry of `orders`, with a `submissionId`, is Delivered with
      it (an order sent twice in one call cannot be told apart: both are sent again alone);
    - when no entry names an order, `errors` is empty and there are as many entries, each with
      a `submissionId`, as orders, every order was accepted: Delivered, without a reference
      (CJ does not say the entries come in the request's order);
    - the orders no entry names, when `errors` came back (assumed: an order CJ does not accept
      has an error): one such order has them all, read as if it was sent alone; several, as
      many as the errors, get the errors' outcome when every error reads alike (all "already
      done" by `already_done_markers`: AlreadyDone; one text, not done: Rejected with it);
    - any other order is `Unattributed`: sent again alone, its own answer settles it (one CJ
      had accepted answers "already": AlreadyDone).
    """
    entries = result.orders or []
    sent = Counter(keys)
    named = Counter(entry.orderId for entry in entries if entry.orderId is not None)
    by_id: dict[str, CancelledOrder] = {
        entry.orderId: entry for entry in entries if entry.orderId is not None
    }
    anonymous = not named and not result.errors and len(entries) == len(keys)
    if anonymous and all(entry.submissionId for entry in entries):
        return (Delivered(),) * len(keys)
    outcomes: list[Outcome | None] = []
    for key in keys:
        entry = by_id.get(key)
        if entry is not None and entry.submissionId and sent[key] == 1 and named[key] == 1:
            outcomes.append(Delivered(reference=entry.submissionId))
        else:
            outcomes.append(None)
    left = [key for key, outcome in zip(keys, outcomes, strict=True) if outcome is None]
    # Elimination holds only if every order left was sent once and named by no entry.
    alike = all(sent[key] == 1 and not named[key] for key in left)
    shared = _shared_outcome(result.errors or [], len(left), cfg) if left and alike else None
    why = (
        f"cj answered errors that name no order: {_messages(result.errors)}"
        if result.errors
        else "cj's answer does not name this order"
    )
    return tuple(
        (shared or Unattributed(why)) if outcome is None else outcome for outcome in outcomes
    )


def _shared_outcome(
    errors: list[GraphQLError], unnamed: int, cfg: CJCancelConfig
) -> Outcome | None:
    """What `errors` mean for each of `unnamed` orders no entry named, if it is the same for all.

    One order: the errors are its own. Several: one error each, all "already done", or all the
    same text (an order CJ does not accept is assumed to have an error, one per order here).
    """
    if not errors:
        return None
    if unnamed == 1:
        return _classify(errors, cfg)
    if len(errors) != unnamed:
        return None
    if len({error.message for error in errors}) == 1:
        return _classify(errors[:1], cfg)
    outcome = _classify(errors, cfg)
    return outcome if isinstance(outcome, AlreadyDone) else None


def _messages(errors: list[GraphQLError]) -> str:
    return "; ".join(error.message or "(no message)" for error in errors)[:500]


def _classify(errors: list[GraphQLError], cfg: CJCancelConfig) -> Outcome:
    """`cancelOrders.errors`: all "already cancelled/locked" is done; anything else is final."""
    markers = tuple(marker.lower() for marker in cfg.already_done_markers)
    refused = [e for e in errors if not any(m in e.message.lower() for m in markers)]
    if refused:
        return Rejected(f"cj: {_messages(refused)}")
    return AlreadyDone(f"cj: {_messages(errors)}")


def _by_status(status: int, headers: Headers, now: datetime) -> Outcome | None:
    if status in (401, 403):
        return Rejected(f"cj credentials refused (HTTP {status})")
    if retryable(status):
        return RetryLater(f"cj answered HTTP {status}", retry_after_seconds(headers, now))
    return None


def _by_result(answer: CancelOrdersResponse, cfg: CJCancelConfig) -> Outcome:
    result = answer.data.cancelOrders if answer.data else None
    if result is None:
        return RetryLater("cj answered 200 without data.cancelOrders")
    if result.errors:
        return _classify(result.errors, cfg)
    submitted = [order.submissionId for order in result.orders or [] if order.submissionId]
    if not submitted:
        return RetryLater("cj answered 200 with neither orders nor errors")
    return Delivered(reference=submitted[0])


def interpret(
    status: int, headers: Headers, body: bytes, cfg: CJCancelConfig, now: datetime
) -> Outcome:
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
class CJTarget:
    """`CJCancelConfig` and the token, as the worker's `TargetAdapter`."""

    cfg: CJCancelConfig
    token: SecretStr

    def build(
        self, event: OrderCancelled, now: datetime, order_id: str | None = None
    ) -> HttpCall | Rejected:
        """`build_cancel` with this adapter's settings and token (`order_id`: a linked id)."""
        return build_cancel(event, self.cfg, self.token, now, order_id)

    def order_key(self, event: OrderCancelled, order_id: str | None) -> str | None:
        """CJ's orderId for `event` (`order_id_from`; `order_id`: a linked id): one decline each."""
        return order_id_for(event, self.cfg, order_id)

    def interpret(
        self, call: HttpCall, status: int, headers: Headers, body: bytes, now: datetime
    ) -> Outcome:
        """`interpret` with this adapter's settings."""
        del call  # one call per cancellation: the answer says it all
        return interpret(status, headers, body, self.cfg, now)

    # The batch hook (`handlers.base.BatchingTarget`): `cancelOrders` takes a list.

    @property
    def batch_size(self) -> int:
        """Orders per call (`[targets.cj] batch_size`)."""
        return self.cfg.batch_size

    @property
    def batch_linger(self) -> float:
        """Seconds to wait for a fuller call (`[targets.cj] batch_linger`)."""
        return self.cfg.batch_linger

    def build_many(
        self, items: Sequence[tuple[OrderCancelled, str | None]], now: datetime
    ) -> BatchCall:
        """`build_cancels` with this adapter's settings and token."""
        return build_cancels(items, self.cfg, self.token, now)

    def interpret_many(
        self, batch: BatchCall, status: int, headers: Headers, body: bytes, now: datetime
    ) -> tuple[Outcome | Unattributed, ...]:
        """`interpret_cancels` for the orders `batch` carries."""
        return interpret_cancels(status, headers, body, batch.keys, self.cfg, now)


# --- reconciliation: what CJ's Commission Detail API recorded ---------------------------------

COMMISSIONS_URL = "https://commissions.api.cj.com/query"
# Published (contracts/schemas/cj-commissions.graphql; docs.cj.com/docs/commissiondetail-api-
# advertiser): a POST with a JSON body `{"query", "variables"}` and the personal access token as
# a bearer; `forAdvertisers: [String!]!` takes advertiser CIDs (company ids, which need not be
# the enterprise id `cancelOrders` takes); the date arguments are Strings, "Datetime in UTC ISO
# 8601 format". Assumed: the arguments are filters combined with AND, so `sinceCommissionId`
# pages within a posting window.
COMMISSIONS_QUERY = (
    "query Commissions($advertisers: [String!]!, $since: String, $before: String,"
    " $after: String) {"
    " advertiserCommissions(forAdvertisers: $advertisers, sincePostingDate: $since,"
    " beforePostingDate: $before, sinceCommissionId: $after) {"
    " count limit maxCommissionId payloadComplete records {"
    " commissionId orderId advertiserId actionStatus actionType correctionReason original"
    " originalActionId validationStatus postingDate saleAmountAdvCurrency"
    " advCommissionAmountAdvCurrency pubCommissionAmountPubCurrency cjFeeAdvCurrency } } }"
)
DECLINED = "DECLINED"
QUERY = "cj commission query"  # how outcomes name it


@dataclass(frozen=True, slots=True)
class CJCommissions:
    """Where and for whom to read commission records (`[targets.cj]` `commissions_url`, ...)."""

    url: str
    advertiser_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CommissionsPage:
    """One page of commission records; `after` continues the query (None: that was all)."""

    records: tuple[CommissionRecord, ...]
    after: str | None = None


def _instant(moment: datetime) -> str:
    return utc_z(moment, "seconds")


def commissions_call(
    cfg: CJCommissions,
    token: SecretStr,
    since: datetime,
    before: datetime,
    after: str | None = None,
) -> HttpCall:
    """The `advertiserCommissions` query for records posted in [since, before).

    `after` is the previous page's `maxCommissionId` (CJ's `sinceCommissionId` cursor).
    """
    variables: dict[str, object] = {
        "advertisers": list(cfg.advertiser_ids),
        "since": _instant(since),
        "before": _instant(before),
    }
    if after is not None:
        variables["after"] = after
    return graphql_call(cfg.url, token, COMMISSIONS_QUERY, variables)


def _commissions_by_status(
    status: int, headers: Headers, now: datetime
) -> RetryLater | Rejected | None:
    if status in (401, 403):
        return Rejected(f"{QUERY}: credentials refused (HTTP {status})")
    if retryable(status):
        return RetryLater(f"{QUERY} answered HTTP {status}", retry_after_seconds(headers, now))
    return None


def _page(result: AdvertiserCommissions | None) -> CommissionsPage | RetryLater | Rejected:
    if result is None:
        return RetryLater(f"{QUERY} answered 200 without data.advertiserCommissions")
    records = tuple(result.records or ())
    if result.payloadComplete is not False:  # the schema says non-null; absent ends it too
        return CommissionsPage(records)
    if not result.maxCommissionId:
        return Rejected(f"{QUERY}: more records, but no maxCommissionId to page on")
    return CommissionsPage(records, result.maxCommissionId)


def read_commissions(
    status: int, headers: Headers, body: bytes, now: datetime
) -> CommissionsPage | RetryLater | Rejected:
    """What the commission query's answer says: a page of records, or why there is none.

    401/403: credentials, final. 408/425/429/5xx: retry later (honouring Retry-After). A 200
    whose body is not CJ's JSON or has no result: retry. GraphQL `errors` (they come with HTTP
    200: an advertiser id the token may not read, a bad argument): final. `payloadComplete`
    false continues from `maxCommissionId`; without one the query cannot go on: final.
    """
    if (early := _commissions_by_status(status, headers, now)) is not None:
        return early
    try:
        answer = CommissionsResponse.model_validate_json(body)
    except ValidationError:
        if status == HTTP_OK:
            return RetryLater(f"{QUERY} answered 200 with a body that is not its JSON")
        return Rejected(f"{QUERY} answered HTTP {status}")
    if answer.errors:
        return Rejected(f"{QUERY}: {_messages(answer.errors)}")
    if status != HTTP_OK:
        return Rejected(f"{QUERY} answered HTTP {status}")
    return _page(answer.data.advertiserCommissions if answer.data else None)


def is_decline(record: CommissionRecord) -> bool:
    """Whether `record` shows the order declined: CJ processed a cancellation of it.

    The rule: a non-original record (`original` false) that is either
    - `validationStatus` DECLINED, or
    - a record whose sale amount (`saleAmountAdvCurrency`) and publisher commission
      (`pubCommissionAmountPubCurrency`) are both given and zero, and whose advertiser
      commission and CJ fee (`advCommissionAmountAdvCurrency`, `cjFeeAdvCurrency`) are zero
      where given: the cancellation record.

    Sources:
    - Schema (CJ's live introspection, contracts/schemas/cj-commissions.graphql): `original` is
      "'0' indicating a non-original or corrected transaction"; `ValidationStatus` DECLINED is
      "Advertiser has validated that an order has been fully corrected", AUTOMATED "Order is not
      open ended locking method". A tracker without open-ended locking gets no `status` in
      `cancelOrders` and no DECLINED in its records, so its declines show by amounts alone.
    - https://docs.cj.com/docs/cancellations: a processed cancellation adjusts "the sale
      amount, item quantities, publisher commission, and CJ fee to '0'"; open-ended orders need
      `status: Declined`.
    - https://docs.cj.com/docs/restatements: "For every restatement that successfully processes,
      Commission Detail reports will include two new records ... one as a full reversal of the
      prior state, and one representing the new state of the order"; on open-ended trackers a
      restatement moves the order to Accepted (Pending or Accepted in a third-party guide, never
      Declined). https://docs.cj.com/docs/restatements-api: a successful cancellation, like a
      restatement, is "a new line item for that order".

    So neither restatement record counts: the reversal is the prior state negated (non-zero),
    the new state is the restated, non-zero amount. A `correctionReason` alone proves nothing:
    every correction has one ("the reason the transaction was corrected"), and `restateOrders`
    takes one too.

    Assumed, as CJ does not publish it: a reversal's amounts are the prior state's negated
    (the `-` of the `DecimalNumber` pattern; a CJ partner's guide, https://vivnetworks.com/sk/
    ?p=470, shows a corrected order's sale amount negative in the Commission Detail report),
    and the cancellation's own record carries the zeros (not only the order's net). A
    third-party guide (GitHub api-evangelist/cj-affiliate, skills/cj-affiliate-reconcile-
    commissions.md) calls a restatement's reversal "a zero record fully reversing the order":
    if CJ gave that record zero amounts, a restatement would read as a decline here (check
    against live records before relying on non-open-ended reconciliation). A restatement to an
    amount of 0 reads as a decline, rightly: nothing is paid on it either. Records without
    amounts (not selected, or null) prove nothing unless DECLINED.

    The rule does not depend on the tracker's `open_ended_locking`: DECLINED occurs on
    open-ended trackers only and the zeroed record on both; a wrong setting leaves no records at
    all (CJ does not process the request), so the setting could not tell more, and a delivery is
    judged by what CJ recorded, not by today's setting.
    """
    if record.original is not False:
        return False
    if (record.validationStatus or "").upper() == DECLINED:
        return True
    return _zeroed(record)


def _zeroed(record: CommissionRecord) -> bool:
    """Sale amount and publisher commission given and zero; the fee and total zero if given."""
    sale, commission = record.saleAmountAdvCurrency, record.pubCommissionAmountPubCurrency
    if sale is None or commission is None:
        return False
    rest = (record.advCommissionAmountAdvCurrency, record.cjFeeAdvCurrency)
    return sale == 0 and commission == 0 and all(amount in (None, 0) for amount in rest)


def declined_orders(records: Iterable[CommissionRecord]) -> frozenset[str]:
    """The order ids that have a decline among `records`."""
    return frozenset(r.orderId for r in records if r.orderId and is_decline(r))


MAX_WINDOW = timedelta(days=31)  # CJ's commission queries span a month at most (assumed)
MIN_EVERY = timedelta(minutes=1)
CompanyId = Annotated[str, Field(pattern=r"^[0-9]+$")]


class CJTargetSettings(TargetSettings):
    """`[targets.cj]`: decline CJ commissions with `cancelOrders`."""

    OLD_KEYS = MappingProxyType({"timeout_s": OldKey("timeout")})

    url: str = "https://tracking.api.cj.com/graphql"
    token_env: EnvName = "CJ_ACCESS_TOKEN"  # noqa: S105 - a variable name, not a token
    enterprise_id: str = Field(pattern=r"^[0-9]+$")
    action_tracker_id: int = Field(ge=0)
    # Required: a wrong guess either way means CJ silently keeps paying the commission.
    open_ended_locking: bool = Field(description=OPEN_ENDED_LOCKING_HELP)
    order_id_from: OrderIdFrom = Field(description=ORDER_ID_FROM_HELP)
    timeout: Seconds = Field(default=10.0, gt=0, le=300)  # per call
    reasons: dict[CancelReason, str] = Field(default_factory=dict)
    already_done_markers: tuple[str, ...] = ("already", "locked")
    # Orders per cancelOrders call (1: each alone), and the wait to fill a call.
    batch_size: int = Field(default=1, ge=1, le=MAX_BATCH)
    batch_linger: Seconds = Field(default=BATCH_LINGER, ge=0, le=1.0)
    # Reconciliation (`cancel-bridge reconcile cj`, and on a schedule inside `run`).
    commissions_url: str = COMMISSIONS_URL
    advertiser_ids: tuple[CompanyId, ...] = ()  # CJ company ids (CIDs) to read records of
    reconcile_every: Duration | None = None  # off while unset
    reconcile_window: Duration = timedelta(hours=24)
    reconcile_grace: Duration = timedelta(hours=2)  # CJ validates within an hour or more
    reconcile_requeue: bool = False
    reconcile_max_requeues: int = Field(default=3, ge=1, le=100)

    @model_validator(mode="after")
    def _reconcile_settings(self) -> Self:
        if self.reconcile_every is not None:
            if self.reconcile_every < MIN_EVERY:
                raise ValueError("reconcile_every: at least 1m")
            if not self.advertiser_ids:
                raise ValueError(
                    "reconcile_every needs advertiser_ids: the CJ company ids (CIDs) whose"
                    " commission records show the declines"
                )
        if not timedelta(0) < self.reconcile_window <= MAX_WINDOW:
            raise ValueError(f"reconcile_window: more than 0 and at most {MAX_WINDOW.days}d")
        if self.reconcile_grace >= self.reconcile_window:
            raise ValueError("reconcile_grace must be shorter than reconcile_window")
        every = self.reconcile_every
        if every is not None and every > self.reconcile_window - self.reconcile_grace:
            # A delivery still in its grace period at one run must still be in the window at
            # the next, or it is never checked.
            raise ValueError(
                "reconcile_every must be at most reconcile_window minus reconcile_grace:"
                " deliveries would age out of the window unchecked"
            )
        return self


def commissions(settings: CJTargetSettings) -> CJCommissions:
    """Where reconciliation reads CJ's commission records, from `[targets.cj]`."""
    return CJCommissions(settings.commissions_url, settings.advertiser_ids)


def _describe_reconcile(settings: CJTargetSettings) -> str:
    every = settings.reconcile_every
    if every is None:
        return "reconcile: on demand"
    return (
        f"reconcile every {format_duration(every)} over"
        f" {format_duration(settings.reconcile_window)} (grace"
        f" {format_duration(settings.reconcile_grace)}) from {settings.commissions_url},"
        f" requeue: {'yes' if settings.reconcile_requeue else 'no'}"
    )


def _describe_batching(settings: CJTargetSettings) -> str:
    if settings.batch_size == 1:
        return "one order per call"
    return (
        f"up to {settings.batch_size} orders per call"
        f" (linger {format_duration(settings.batch_linger)})"
    )


def target_secret_envs(settings: CJTargetSettings) -> dict[str, str]:
    """The variables `[targets.cj]` names: the personal access token."""
    return {"token_env": settings.token_env}


def cancel_config(settings: CJTargetSettings) -> CJCancelConfig:
    """What the adapter needs to know, from `[targets.cj]`."""
    return CJCancelConfig(
        url=settings.url,
        enterprise_id=settings.enterprise_id,
        action_tracker_id=settings.action_tracker_id,
        open_ended_locking=settings.open_ended_locking,
        order_id_from=settings.order_id_from,
        reasons={**DEFAULT_REASONS, **settings.reasons},
        already_done_markers=settings.already_done_markers,
        batch_size=settings.batch_size,
        batch_linger=settings.batch_linger,
    )


def make_target(settings: CJTargetSettings, secrets: Mapping[str, SecretStr]) -> TargetBuild:
    """The CJ adapter from `[targets.cj]` and its token."""
    cfg = cancel_config(settings)
    summary = (
        f"POST {settings.url}; token from {settings.token_env} (set); enterprise"
        f" {settings.enterprise_id}, action tracker {settings.action_tracker_id}, orderId from"
        f" {settings.order_id_from}, status Declined:"
        f" {'yes' if settings.open_ended_locking else 'no'}, timeout {settings.timeout:g}s,"
        f" {_describe_batching(settings)};"
        f" {_describe_reconcile(settings)}"
    )
    return TargetBuild(
        CJTarget(cfg, secrets["token_env"]),
        settings.timeout,
        link_platform="cj" if settings.order_id_from == "link" else None,
        summary=summary,
    )


# --- check-config --online ---------------------------------------------------------------------

PROBE_ORDER = "cancel-bridge-probe"  # never sent to be cancelled: only validated


def _probe_event(reason: CancelReason, now: datetime) -> OrderCancelled:
    return OrderCancelled.create(
        source=Source.SHOPLAZZA,
        shop="probe.example",
        order_id=PROBE_ORDER,
        order_number=PROBE_ORDER,
        reason=reason,
        source_reason=None,
        cancelled_at=now,
        received_at=now,
        delivery_id=None,
    )


def target_probes(
    settings: CJTargetSettings, secrets: Mapping[str, SecretStr], now: datetime
) -> tuple[Probe, ...]:
    """Harmless calls that show the wire holds; nothing is cancelled.

    `cancelOrders` as configured (one request per canonical reason, so every configured
    correction reason is checked against CJ's enum) is validated against the schema CJ's tracking
    endpoint serves by introspection without credentials. With `advertiser_ids`, the last hour of
    commission records is read with the token: the token and the commission query both hold.
    """
    cfg = cancel_config(settings)
    requests = [
        request
        for reason in CancelReason
        if not isinstance(
            request := cancel_request(_probe_event(reason, now), cfg, now, PROBE_ORDER), Rejected
        )
    ]
    found = [
        Probe(
            "cj tracking schema",
            introspection_call(settings.url),
            read_introspection("cj tracking api"),
            documents=((MUTATION, {"orders": requests}),),
        )
    ]
    if settings.advertiser_ids:

        def read(status: int, headers: Headers, body: bytes) -> str | RetryLater | Rejected:
            page = read_commissions(status, headers, body, now)
            if isinstance(page, CommissionsPage):
                return f"commission records read ({len(page.records)} in the last hour)"
            return page

        call = commissions_call(
            commissions(settings), secrets["token_env"], now - timedelta(hours=1), now
        )
        found.append(Probe("cj commission read", call, read))
    return tuple(found)
