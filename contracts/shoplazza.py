"""Shoplazza webhook payload: the Order object of the app's webhook API version."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_validator


def _id_text(value: str | int | None) -> str | None:
    """Ids and numbers arrive as strings or JSON numbers; the event carries strings."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


class ShoplazzaOrder(BaseModel):
    """The fields of a Shoplazza Order the bridge reads; every other field is ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    number: str | None = None
    status: str | None = None
    cancel_reason: str | None = None
    cancelled_at: str | None = None
    canceled_at: str | None = None  # spelling of the 2022-01 API; 2025-06 says cancelled_at
    updated_at: str | None = None
    financial_status: str | None = None
    fulfillment_status: str | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _order_id(cls, value: object) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError("order id must be a string or an integer")  # noqa: TRY004 - pydantic wants ValueError
        text = _id_text(value)
        if text is None:
            raise ValueError("order id is empty")
        return text

    @field_validator("number", mode="before")
    @classmethod
    def _order_number(cls, value: object) -> str | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError("order number must be a string or an integer")  # noqa: TRY004 - pydantic wants ValueError
        return _id_text(value)


def unwrap_order(document: object) -> object:
    """Third-party senders wrap the order as `{"order": {...}}`; Shoplazza sends it bare."""
    if isinstance(document, dict) and "id" not in document:
        inner = document.get("order")
        if isinstance(inner, dict):
            return inner
    return document


def error_text(document: object) -> str:
    """An error answer's message as one short text; "" when the body has none.

    Shoplazza answers `{"errors": ["..."]}` or `{"error": "..."}` in 2022-01
    (https://shoplazza.dev/reference/openapi2022-01ordersidcancel) and `{"code": "...",
    "message": "..."}` in 2025-06 and later
    (https://www.shoplazza.dev/v2025.06/reference/order-delete-v2025-06).
    """
    if not isinstance(document, dict):
        return ""
    found = document.get("errors") or document.get("error")
    if isinstance(found, list):
        return "; ".join(str(item) for item in found)[:300]
    if isinstance(found, str):
        return found[:300]
    code, message = document.get("code"), document.get("message")
    code_text = str(code) if isinstance(code, str | int) and not isinstance(code, bool) else ""
    message_text = message if isinstance(message, str) else ""
    if code_text and message_text:
        return f"{code_text}: {message_text}"[:300]
    return (message_text or code_text)[:300]
