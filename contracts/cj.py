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
    """One accepted cancellation: CJ's `submissionId` is our reference for it."""

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
