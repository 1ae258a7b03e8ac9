"""Oracle Commerce Cloud's Cancel Order webhook payload (PLATFORMS.md section 3).

The body is unpublished; Order Submit's is `{site, order}`, so the bridge reads `order.id`,
`order.siteId`, `order.state`, `order.cancelReason` and `order.lastModifiedDate`, and the
top-level `site` (an id, or an object with one). Everything else is ignored.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("must be a string or an integer")  # noqa: TRY004 - pydantic wants ValueError
    return str(value).strip() or None


class OCCOrder(BaseModel):
    """The fields of an OCC order the bridge reads."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    siteId: str | None = None  # noqa: N815 - OCC's field name
    state: str | None = None
    cancelReason: str | None = None  # noqa: N815 - OCC's field name
    lastModifiedDate: str | None = None  # noqa: N815 - OCC's field name

    @field_validator("id", mode="before")
    @classmethod
    def _order_id(cls, value: object) -> str:
        text = _text(value)
        if text is None:
            raise ValueError("order id is empty")
        return text

    @field_validator("siteId", "cancelReason", mode="before")
    @classmethod
    def _optional_text(cls, value: object) -> str | None:
        return _text(value)


class OCCWebhook(BaseModel):
    """`{site, order}`: the site as an id or as `{"id": ...}`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    order: OCCOrder
    site: str | None = None

    @field_validator("site", mode="before")
    @classmethod
    def _site(cls, value: object) -> str | None:
        if isinstance(value, dict):
            value = value.get("id")
        return _text(value)
