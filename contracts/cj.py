"""CJ Affiliate `cancelOrders` GraphQL answers (PLATFORMS.md section 4)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


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
    original: bool | None = None  # false on corrections (a reversal, a decline)
    originalActionId: str | None = None  # noqa: N815 - ties corrections to their sale
    # PENDING, ACCEPTED, DECLINED ("validated that an order has been fully corrected": the one
    # sign of a decline), AUTOMATED (not open-ended locking).
    validationStatus: str | None = None  # noqa: N815 - CJ's field name
    postingDate: str | None = None  # noqa: N815 - CJ's field name


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
