"""CJ Affiliate `cancelOrders` GraphQL answers (PLATFORMS.md section 4)."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict


class _Lenient(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class GraphQLError(_Lenient):
    """A GraphQL error: top level (schema, enum) or inside `cancelOrders.errors`."""

    message: str = ""
    fields: list[str] | None = None


class CancelledOrder(_Lenient):
    """One accepted cancellation (`OrderCancellation`): its `submissionId` is our reference."""

    submissionId: str | None = None  # noqa: N815 - CJ's field name
    orderId: str | None = None  # noqa: N815 - CJ's field name
    status: str | None = None


class CancelOrdersResult(_Lenient):
    """`data.cancelOrders`: accepted orders, or errors (with HTTP 200)."""

    orders: list[CancelledOrder] | None = None
    errors: list[GraphQLError] | None = None


class CancelOrdersData(_Lenient):
    """`data` of the mutation's answer."""

    cancelOrders: CancelOrdersResult | None = None  # noqa: N815 - CJ's field name


class CancelOrdersResponse(_Lenient):
    """The whole answer body."""

    data: CancelOrdersData | None = None
    errors: list[GraphQLError] | None = None


# --- Commission Detail (`advertiserCommissions`, https://commissions.api.cj.com/query) ---------


def _decimal_or_none(value: object) -> Decimal | None:
    """A `DecimalNumber` (a JSON string such as "-12.50"), or None when it is not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


# CJ's `DecimalNumber` scalar; anything else reads as absent rather than failing the page.
Amount = Annotated[Decimal | None, BeforeValidator(_decimal_or_none)]


class CommissionRecord(_Lenient):
    """One commission record. A cancellation that CJ validated leaves two non-original ones.

    Field names and meanings follow CJ's Commission Detail schema (`AdvertiserCommission`, as
    transcribed in `contracts/schemas/cj-commissions.graphql`); only what reconciliation reads
    is modelled, everything else is ignored. The schema makes most of them non-null; they stay
    optional here so one odd record cannot fail a whole page.
    """

    commissionId: str | None = None  # noqa: N815 - CJ's field name
    orderId: str | None = None  # noqa: N815 - CJ's field name
    advertiserId: str | None = None  # noqa: N815 - CJ's field name
    actionStatus: str | None = None  # noqa: N815 - new, extended, locked, closed
    actionType: str | None = None  # noqa: N815 - sim_sale, item_sale, ...
    # Set on corrections only (INVALID_CREDIT_CARD, ..., OTHER_REASON).
    correctionReason: str | None = None  # noqa: N815 - CJ's field name
    original: bool | None = None  # false on corrections (reversal, cancellation, restated state)
    originalActionId: str | None = None  # noqa: N815 - ties corrections to their sale
    # PENDING, ACCEPTED, DECLINED ("validated that an order has been fully corrected": an
    # open-ended tracker's decline), AUTOMATED ("Order is not open ended locking method": every
    # record of other trackers, a cancellation's too).
    validationStatus: str | None = None  # noqa: N815 - CJ's field name
    postingDate: str | None = None  # noqa: N815 - CJ's field name
    # Amounts (`DecimalNumber`): positive on a sale, zero on a cancellation (CJ: "adjust the
    # sale amount, ..., publisher commission, and CJ fee to '0'"), negated on a reversal
    # (assumed; see `handlers.cj.is_decline`).
    saleAmountAdvCurrency: Amount = None  # noqa: N815 - CJ's field name
    advCommissionAmountAdvCurrency: Amount = None  # noqa: N815 - publisher commission + CJ fee
    pubCommissionAmountPubCurrency: Amount = None  # noqa: N815 - CJ's field name
    cjFeeAdvCurrency: Amount = None  # noqa: N815 - CJ's field name


class AdvertiserCommissions(_Lenient):
    """`data.advertiserCommissions`: one page of records.

    `payloadComplete` false: more records match; ask again with `maxCommissionId` as
    `sinceCommissionId`.
    """

    count: int | None = None
    limit: int | None = None
    maxCommissionId: str | None = None  # noqa: N815 - CJ's field name
    payloadComplete: bool | None = None  # noqa: N815 - CJ's field name
    records: list[CommissionRecord] | None = None


class CommissionsData(_Lenient):
    """`data` of the commission query's answer."""

    advertiserCommissions: AdvertiserCommissions | None = None  # noqa: N815 - CJ's field name


class CommissionsResponse(_Lenient):
    """The commission query's whole answer body (GraphQL: `errors` may come with HTTP 200)."""

    data: CommissionsData | None = None
    errors: list[GraphQLError] | None = None
