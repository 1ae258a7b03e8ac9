"""What every platform module shares: header access, rejections and the Source protocol."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from pydantic import SecretStr

from contracts.events import OrderCancelled

# Header mappings must look names up case-insensitively (aiohttp's CIMultiDictProxy does).
Headers = Mapping[str, str]


class WebhookError(Exception):
    """A webhook the receiver must refuse; `status` is the HTTP answer, `code` names why."""

    status: int = 400
    code: str = "bad_request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class SignatureError(WebhookError):
    """Missing or wrong signature. The detail never says anything about the secret."""

    status = 401
    code = "bad_signature"


class MalformedPayloadError(Exception):
    """Correctly signed, but not an event we can build: the body goes to quarantine."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Ignored:
    """A verified webhook that is not a cancellation: acknowledged, nothing published."""

    reason: str


class SourceHandler(Protocol):
    """A platform that sends cancellations (a module in `handlers/`)."""

    def verify(
        self, headers: Headers, body: bytes, secrets: Sequence[SecretStr], now: datetime
    ) -> None:
        """Raise `SignatureError` unless the raw body is authentic."""

    def parse(
        self, headers: Headers, body: bytes, received_at: datetime
    ) -> OrderCancelled | Ignored:
        """Build the canonical event; raise `MalformedPayloadError` when it cannot."""


def clean_text(value: str) -> str:
    """`value` as valid Unicode: bytes that were not UTF-8 become U+FFFD.

    aiohttp decodes header bytes with `surrogateescape`; such strings cannot be hashed into an
    event id, serialised to JSON or written into AMQP headers, so they are repaired here.
    """
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def header(headers: Headers, name: str) -> str | None:
    """A header's value, valid Unicode, stripped of blanks; None when absent or blank."""
    value = headers.get(name)
    if value is None:
        return None
    value = clean_text(value).strip()
    return value or None


def parse_timestamp(text: str | None) -> datetime | None:
    """An ISO 8601 / RFC 3339 timestamp in UTC; None when absent or unreadable.

    A timestamp without an offset is taken as UTC. Unreadable values are treated as absent so
    that the caller falls back to the next candidate rather than losing the cancellation.
    """
    if not text or not (text := text.strip()):
        return None
    try:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # e.g. "0001-01-01T00:00:00+08:00" leaves the calendar
        return None
