"""The canonical `OrderCancelled` event, schema version 1: the body every subscriber reads.

Renaming or removing a field is a new schema version; adding an optional one is compatible.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

import orjson
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

SCHEMA_VERSION: Literal[1] = 1
EVENT_TYPE: Literal["order.cancelled"] = "order.cancelled"

# Bounds keep every event within what AMQP headers and downstream APIs carry (an id also travels
# in the `ce-subject` header; AMQP properties must fit in one frame).
MAX_ID = 255
MAX_TEXT = 1024
# Ids are stored and looked up as text, and PostgreSQL text cannot hold a NUL.
NO_NUL = r"^[^\x00]*$"

MAX_ALIASES = 16
# Every platform an order can have an id on: the sources, and CJ (a target only).
Platform = Literal["shoplazza", "prime", "occ", "cj"]
PLATFORMS: tuple[Platform, ...] = ("shoplazza", "prime", "occ", "cj")

# Fixed forever: changing it changes every event id, and with them all de-duplication.
EVENT_NAMESPACE = uuid.UUID("5b3c8a1e-2f6d-5e7a-9c4b-0d1e2f3a4b5c")


class Source(StrEnum):
    """Platforms that send cancellations; also the last routing-key segment."""

    SHOPLAZZA = "shoplazza"
    PRIME = "prime"
    OCC = "occ"


class CancelReason(StrEnum):
    """Canonical cancellation reasons; each platform's own value travels in `source_reason`."""

    CUSTOMER_REQUEST = "customer_request"
    FRAUD = "fraud"
    INVENTORY = "inventory"
    PAYMENT_DECLINED = "payment_declined"
    DUPLICATE = "duplicate"
    OTHER = "other"


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must carry a time zone")
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_require_utc)]


def event_id_for(source: Source, shop: str, order_id: str) -> uuid.UUID:
    """UUIDv5 of (source, shop, order id): every redelivery of one cancellation gets one id.

    The parts are joined with a NUL byte, which none of them can contain, so
    ("a", "b/c") and ("a/b", "c") never collide.
    """
    return uuid.uuid5(EVENT_NAMESPACE, f"{source.value}\x00{shop}\x00{order_id}")


class OrderCancelled(BaseModel):
    """An order was cancelled on `source`; published as JSON on exchange `orders`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = Field(default=SCHEMA_VERSION, description="Body schema version.")
    event_id: uuid.UUID = Field(description="UUIDv5 of (source, shop, order_id); stable per order.")
    type: Literal["order.cancelled"] = Field(default=EVENT_TYPE, description="Event type.")
    source: Source = Field(description="Platform the cancellation came from.")
    shop: str = Field(
        min_length=1,
        max_length=MAX_ID,
        pattern=NO_NUL,
        description="Store identity on the source platform.",
    )
    order_id: str = Field(
        min_length=1,
        max_length=MAX_ID,
        pattern=NO_NUL,
        description="The source platform's order id.",
    )
    order_number: str | None = Field(
        max_length=MAX_ID, description="Human-facing order number, if the source has one."
    )
    reason: CancelReason = Field(description="Canonical cancellation reason.")
    source_reason: str | None = Field(
        max_length=MAX_TEXT, description="The platform's own reason text or code."
    )
    cancelled_at: UtcDatetime = Field(description="When the order was cancelled (RFC 3339, UTC).")
    received_at: UtcDatetime = Field(description="When the bridge received it (RFC 3339, UTC).")
    delivery_id: str | None = Field(
        max_length=MAX_ID, description="The platform's delivery or de-duplication id."
    )
    aliases: dict[
        Platform, Annotated[str, Field(min_length=1, max_length=MAX_ID, pattern=NO_NUL)]
    ] = Field(
        default_factory=dict,
        max_length=MAX_ALIASES,
        description=(
            'This order\'s ids on other platforms, by platform name (e.g. {"cj": "1001"}),'
            " when the source tells them. Empty when it does not."
        ),
    )

    @classmethod
    def create(  # noqa: PLR0913 - one argument per field the caller must decide
        cls,
        *,
        source: Source,
        shop: str,
        order_id: str,
        order_number: str | None,
        reason: CancelReason,
        source_reason: str | None,
        cancelled_at: datetime,
        received_at: datetime,
        delivery_id: str | None,
        aliases: dict[str, str] | None = None,
    ) -> OrderCancelled:
        """Build an event, deriving its id from (source, shop, order id)."""
        return cls(
            event_id=event_id_for(source, shop, order_id),
            source=source,
            shop=shop,
            order_id=order_id,
            order_number=order_number,
            reason=reason,
            source_reason=source_reason,
            cancelled_at=cancelled_at,
            received_at=received_at,
            delivery_id=delivery_id,
            aliases=aliases or {},
        )

    def to_json(self) -> bytes:
        """The wire body: compact JSON, timestamps as RFC 3339 with `Z`."""
        return orjson.dumps(self.model_dump(), option=orjson.OPT_UTC_Z)

    @classmethod
    def from_json(cls, body: bytes) -> OrderCancelled:
        """Parse a wire body (what a subscriber does)."""
        return cls.model_validate_json(body)
