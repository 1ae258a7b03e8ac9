"""Buy with Prime payloads: the (thin) webhook event, and the order as the GraphQL API returns it.

The webhook body may come bare or inside an EventBridge envelope (`detail-type`, `detail`). The
event type is `eventType` or `eventDescriptor`. PLATFORMS.md section 2.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field


class _Lenient(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


def _present(value: object) -> object:
    """A GraphQL list as sent: `null` is no items, and `null` items are left out.

    The schema makes these lists and their items nullable (`[Alias]`, `[CancellationDetails]`,
    `[PackageInformationDetails]`), so a valid answer may hold either.
    """
    if value is None:
        return []
    if isinstance(value, list):
        return [item for item in value if item is not None]
    return value


T = TypeVar("T")
NullableList = Annotated[list[T], BeforeValidator(_present)]


class PrimeEvent(_Lenient):
    """The webhook event; `data` is not read (the order is fetched instead)."""

    eventId: str | None = None  # noqa: N815 - Prime's field names
    idempotencyKey: str | None = None  # noqa: N815
    eventType: str | None = None  # noqa: N815
    eventDescriptor: str | None = None  # noqa: N815
    resources: list[str] = Field(default_factory=list)
    eventTime: str | None = None  # noqa: N815


class Alias(_Lenient):
    """An order alias, e.g. `{"aliasId": "1001", "aliasType": "OMS_ORDER_ID"}`."""

    aliasId: str | None = None  # noqa: N815 - nullable in the schema: skipped when absent
    aliasType: str | None = None  # noqa: N815


class PackageSummary(_Lenient):
    """The order's packages at a glance."""

    state: str | None = None


class PackageDetail(_Lenient):
    """One package: its state and, once cancelled, why."""

    id: str | None = None
    state: str | None = None
    reason: str | None = None


class PackageInformation(_Lenient):
    """`packageInformation` (2024-11-01), or 2024-04-01's `deliveryInformation` read under it."""

    summary: PackageSummary | None = None
    details: NullableList[PackageDetail] = Field(default_factory=list)


class Cancellation(_Lenient):
    """One cancellation of the order (`CancellationDetails`: it has no `id`, in any version).

    https://documents.buywithprime.amazon.com/bwp-api/docs/order-objects-cancellationdetails
    """

    state: str | None = None
    reason: str | None = None
    requestedBy: str | None = None  # noqa: N815
    createdAt: str | None = None  # noqa: N815


class Cancellations(_Lenient):
    """`cancellations`."""

    details: NullableList[Cancellation] = Field(default_factory=list)


class PrimeOrder(_Lenient):
    """The order query's answer (`data.order`)."""

    id: str
    aliases: NullableList[Alias] = Field(default_factory=list)
    packageInformation: PackageInformation | None = None  # noqa: N815
    cancellations: Cancellations | None = None
