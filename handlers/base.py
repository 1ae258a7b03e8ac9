"""What every platform module shares: header access, rejections, the protocols, settings bases.

A platform module `handlers/<platform>.py` names its parts alike (the registry lists them):

- source: `<P>Source` (verify, parse), settings `<P>SourceSettings`, `make_source(settings,
  secrets)`, `source_secret_envs(settings)`;
- target: `<P>Target` (build, interpret), settings `<P>TargetSettings`, `make_target(settings,
  secrets) -> TargetBuild`, `target_secret_envs(settings)`, `target_probes(settings, secrets,
  now)`.

The errors a handler raises, one tree (outcomes of target calls are values, never errors):

    HandlerError                  a handler's input is unusable
    +-- WebhookError              the receiver refuses the webhook: `status` (4xx), `code`
    |   +-- SignatureError        401 `bad_signature`: missing or wrong signature
    +-- MalformedPayloadError     authentic, but no event can be built: quarantined (200)

Durations in settings are written one way, as text with a unit (`"500ms"`, `"10s"`, `"5m"`,
`"24h"`, `"7d"`): `Seconds` (a float of seconds) and `Duration` (a `timedelta`) read it. A bare
number of seconds is still read (the old spelling); `check-config` names it as deprecated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Literal, Protocol, runtime_checkable

import orjson
from graphql import get_introspection_query
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    model_validator,
)

from contracts.events import OrderCancelled

# Header mappings must look names up case-insensitively (aiohttp's CIMultiDictProxy does).
Headers = Mapping[str, str]


class HandlerError(Exception):
    """A handler's input is unusable (see the tree in the module docstring)."""


class WebhookError(HandlerError):
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


class UnknownShopError(WebhookError):
    """Correctly signed, for a shop outside the source's allowlist (`[sources.<name>] shops`)."""

    status = 401
    code = "unknown_shop"


class MalformedPayloadError(HandlerError):
    """Correctly signed, but not an event we can build: the body goes to quarantine."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Ignored:
    """A verified webhook that is not a cancellation: acknowledged, nothing published."""

    reason: str


# A configuration key that names an environment variable (secrets are never in the file).
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


# --- durations in settings and on the command line ---------------------------------------------

_DURATION_PART = re.compile(r"(\d{1,9})(ms|s|m|h|d|w)")
_UNIT_SECONDS: Mapping[str, float] = MappingProxyType(
    {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
)
MAX_DURATION = timedelta(days=3660)


def parse_duration(text: str) -> timedelta:
    """`24h`, `90m`, `7d`, `30s`, `500ms`, `2w`, or parts added up (`1h30m`, `2s500ms`).

    Whole numbers only. ValueError otherwise (a bare number has no unit: not a duration here).
    """
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION_PART.findall(compact)
    if not compact or "".join(number + unit for number, unit in parts) != compact:
        raise ValueError(
            f"{text[:40]!r} is not a duration: a number and a unit (ms, s, m, h, d, w), e.g. 24h"
        )
    seconds = sum(int(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(f"{text[:40]!r} is longer than {MAX_DURATION.days} days")
    return timedelta(seconds=seconds)


def format_duration(span: timedelta | float) -> str:
    """`span` (a timedelta or seconds) as `parse_duration` reads it: `1d`, `90m`, `500ms`.

    Whole seconds are written in their largest whole unit, fractions in milliseconds (`2500ms`,
    rounded to the millisecond).
    """
    total = span.total_seconds() if isinstance(span, timedelta) else float(span)
    if total == int(total):
        seconds = int(total)
        for unit in ("w", "d", "h", "m"):
            size = int(_UNIT_SECONDS[unit])
            if seconds and seconds % size == 0:
                return f"{seconds // size}{unit}"
        return f"{seconds}s"
    return f"{round(total * 1000)}ms"


_PLAIN_NUMBER = re.compile(r"\s*[0-9]{1,12}(\.[0-9]{1,9})?\s*")


def bare_seconds(value: object) -> float | None:
    """The old spelling of a duration as seconds, else None.

    A number without a unit, or one in a string (lax parsing read `"5"` as 5 before durations
    had units).
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.isascii() and _PLAIN_NUMBER.fullmatch(value):
        return float(value)
    return None


def is_bare_seconds(value: object) -> bool:
    """True for the old spelling of a duration: a number of seconds without a unit."""
    return bare_seconds(value) is not None


def _to_timedelta(value: object) -> object:
    if not isinstance(value, str):
        return value
    seconds = bare_seconds(value)
    return parse_duration(value) if seconds is None else timedelta(seconds=seconds)


def _to_seconds(value: object) -> object:
    if not isinstance(value, str):
        return value
    seconds = bare_seconds(value)
    return parse_duration(value).total_seconds() if seconds is None else seconds


def exact_duration(seconds: float) -> str | None:
    """`format_duration(seconds)` when it reads back as exactly `seconds`, else None."""
    text = format_duration(seconds)
    try:
        return text if parse_duration(text).total_seconds() == seconds else None
    except ValueError:
        return None


# A duration in a settings file: `"24h"`, `"90m"` (or, deprecated, a number of seconds).
Duration = Annotated[timedelta, BeforeValidator(_to_timedelta)]
# The same spelling, kept as a float of seconds (timeouts, intervals, delays).
Seconds = Annotated[float, BeforeValidator(_to_seconds)]
# The same spelling, kept as whole seconds (`Retry-After` values).
WholeSeconds = Annotated[int, BeforeValidator(_to_seconds)]
DURATION_READERS = (_to_timedelta, _to_seconds)  # how a settings walker recognises them


@dataclass(frozen=True, slots=True)
class OldKey:
    """A key's old name, still read: its number (in `unit`) becomes the duration `new`."""

    new: str
    unit: Literal["s", "d"] = "s"


class Section(BaseModel):
    """A settings section: frozen, unknown keys refused.

    `OLD_KEYS` (old name -> `OldKey`) are still read: renamed, their number of `unit`s turned
    into seconds. Giving the old and the new name together is refused.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    OLD_KEYS: ClassVar[Mapping[str, OldKey]] = MappingProxyType({})

    @model_validator(mode="before")
    @classmethod
    def _read_old_keys(cls, data: object) -> object:
        if not cls.OLD_KEYS or not isinstance(data, dict) or not set(data) & set(cls.OLD_KEYS):
            return data
        renamed = dict(data)
        for old, key in cls.OLD_KEYS.items():
            if old not in renamed:
                continue
            if key.new in renamed:
                raise ValueError(f"{old} and {key.new} both given: keep {key.new} only")
            value = renamed.pop(old)
            if (seconds := bare_seconds(value)) is not None:
                value = seconds * _UNIT_SECONDS[key.unit]
            renamed[key.new] = value
        return renamed


class SourceSettings(Section):
    """A `[sources.<name>]` section: the webhook secrets every source has.

    A platform's model (`<P>SourceSettings` in its module) adds its own keys.
    """

    secret_env: EnvName
    previous_secret_env: EnvName | None = None
    # The end of a rotation's grace period: after it the previous secret is refused.
    previous_secret_until: AwareDatetime | None = None


class SourceHandler(Protocol):
    """A platform that sends cancellations (`<P>Source` in a module in `handlers/`)."""

    def verify(
        self, headers: Headers, body: bytes, secrets: Sequence[SecretStr], now: datetime
    ) -> None:
        """Raise `SignatureError` unless the raw body is authentic."""

    def parse(
        self, headers: Headers, body: bytes, received_at: datetime
    ) -> OrderCancelled | Ignored | Lookup:
        """Build the canonical event (or say which call completes it).

        Raise `MalformedPayloadError` when it cannot be built.
        """


@dataclass(frozen=True, slots=True)
class Unavailable:
    """The platform could not be asked now: the webhook gets 503 and is sent again later."""

    reason: str


@dataclass(frozen=True, slots=True)
class Lookup:
    """A thin webhook: make `call` (with `auth`'s token) and `then` builds the event from it."""

    call: HttpCall
    auth: TokenAuth | None
    then: Callable[[int, Headers, bytes], OrderCancelled | Ignored | Unavailable]


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """A registry line for a source: its section, secrets (key -> variable) and factory.

    The webhook secrets (`secret_env`, `previous_secret_env`) every source has are read by the
    bridge; `secret_envs` names the platform's others (e.g. its API's client credentials).
    """

    settings: type[SourceSettings]
    secret_envs: Callable[[Any], Mapping[str, str]]
    make: Callable[[Any, Mapping[str, SecretStr]], SourceHandler]

    @property
    def options(self) -> frozenset[str]:
        """The platform's own keys in its section, besides those every source has."""
        return frozenset(self.settings.model_fields) - frozenset(SourceSettings.model_fields)


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


# --- targets: what a worker asks of a platform, and what the answer means -------------------


@dataclass(frozen=True, slots=True)
class HttpCall:
    """One HTTP request a target adapter wants made; the executor in `bridge/` makes it."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes
    # Calls sharing a pace key share the target's rate limit (e.g. a Shoplazza store).
    pace_key: str | None = None


@dataclass(frozen=True, slots=True)
class Delivered:
    """The target accepted the cancellation; `reference` is its id for it (if it gives one)."""

    reference: str | None = None
    order_id: str | None = None  # the target's own order id, where it has one (echo records)


@dataclass(frozen=True, slots=True)
class AlreadyDone:
    """The target says the order is already cancelled (or can no longer change): success."""

    detail: str


@dataclass(frozen=True, slots=True)
class RetryLater:
    """A transient failure; `after` is the target's own Retry-After in seconds, if it sent one."""

    reason: str
    after: float | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A permanent failure: retrying cannot help; the message is parked with `reason`."""

    reason: str


Outcome = Delivered | AlreadyDone | RetryLater | Rejected


@dataclass(frozen=True, slots=True)
class FollowUp:
    """The answer means nothing yet: make `call`, and `then` says what its answer means.

    A confirm-read is one: "wrong state" is settled by reading the order.
    """

    call: HttpCall
    then: Callable[[int, Headers, bytes, datetime], Outcome | FollowUp]


RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
SERVER_ERRORS = 500


def retryable(status: int) -> bool:
    """Whether an answer with `status` may go otherwise later: 408, 425, 429 and any 5xx."""
    return status in RETRYABLE_STATUSES or status >= SERVER_ERRORS


def retry_after_seconds(headers: Headers, now: datetime) -> float | None:
    """`Retry-After` as seconds from `now` (delta-seconds or an HTTP date); None if absent/bad."""
    value = header(headers, "Retry-After")
    if value is None:
        return None
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max((moment - now).total_seconds(), 0.0)


class TargetAdapter(Protocol):
    """A platform the bridge propagates cancellations to, configured and holding its secret."""

    def build(
        self, event: OrderCancelled, now: datetime, order_id: str | None = None
    ) -> HttpCall | Rejected:
        """The cancel call for `event`, or why there cannot be one."""

    def interpret(
        self, call: HttpCall, status: int, headers: Headers, body: bytes, now: datetime
    ) -> Outcome | FollowUp:
        """What the platform's answer to `call` means (or which call settles it)."""


@runtime_checkable
class NamesOrders(Protocol):
    """A target that knows an order by something other than its linked order id (CJ's orderId).

    The worker binds each claim to this name: one effect per (target, name), whatever the
    event id (`bridge/store/effects.py`). Targets without it are named by the linked order.
    """

    def order_key(self, event: OrderCancelled, order_id: str | None) -> str | None:
        """The name the target knows `event`'s order by (`order_id`: a linked id), if any."""


# --- the optional batch hook: one call carrying many cancellations ----------------------------


@dataclass(frozen=True, slots=True)
class Unattributed:
    """A batched answer does not say what became of this cancellation: send it alone."""

    reason: str


@dataclass(frozen=True, slots=True)
class BatchCall:
    """One call carrying several cancellations (`BatchingTarget.build_many`).

    `sent` are the indexes (into the items given) of the cancellations the call carries, in the
    call's order, and `keys` the platform's name for each (e.g. CJ's orderId); `refused` the
    items no call can be built for, and why. `call` is None when every item was refused.
    """

    call: HttpCall | None
    sent: tuple[int, ...] = ()
    keys: tuple[str, ...] = ()
    refused: Mapping[int, Rejected] = field(default_factory=dict)


@runtime_checkable
class BatchingTarget(Protocol):
    """A target whose cancel call takes a list (CJ's `cancelOrders`): it opts in with these.

    The worker gathers up to `batch_size` claimed cancellations, waiting `batch_linger` seconds
    at most for more, makes one call, and settles each from `interpret_many`; an `Unattributed`
    one is sent again alone (`TargetAdapter.build`). `batch_size` 1 turns batching off.
    """

    @property
    def batch_size(self) -> int:
        """At most this many cancellations per call."""

    @property
    def batch_linger(self) -> float:
        """Seconds to wait for more cancellations before a call that is not full is made."""

    def build_many(
        self, items: Sequence[tuple[OrderCancelled, str | None]], now: datetime
    ) -> BatchCall:
        """One call for `items` (each an event and its linked order id, if any)."""

    def interpret_many(
        self, batch: BatchCall, status: int, headers: Headers, body: bytes, now: datetime
    ) -> tuple[Outcome | Unattributed, ...]:
        """What the answer to `batch.call` means for each cancellation in `batch.sent`, in order."""


@dataclass(frozen=True, slots=True)
class Token:
    """A bearer token and how long it lasts."""

    value: SecretStr
    expires_in: float  # seconds


@dataclass(frozen=True, slots=True)
class TokenAuth:
    """How a target gets its short-lived bearer token (OAuth client credentials and the like).

    The worker makes `request`, reads the answer with `read`, keeps the token until shortly
    before it expires (one fetch at a time), adds `Authorization: Bearer ...` to every call, and
    on a 401 fetches a new one once before the answer counts.
    """

    request: HttpCall
    read: Callable[[int, Headers, bytes], Token | RetryLater | Rejected]


def client_credentials_call(url: str, authorization: str) -> HttpCall:
    """An OAuth 2.0 client-credentials token request; `authorization` proves who asks."""
    return HttpCall(
        method="POST",
        url=url,
        headers={
            "Authorization": authorization,
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "application/json",
        },
        body=b"grant_type=client_credentials",
    )


MAX_TOKEN_SECONDS = 86400.0  # a longer claimed lifetime is held to a day (refreshed early anyway)


def read_access_token(
    status: int,
    body: bytes,
    *,
    who: str,
    refused: frozenset[int],
    lifetime: float,
) -> Token | RetryLater | Rejected:
    """An OAuth-style token answer: `access_token`, `expires_in` (else `lifetime` seconds).

    `who` names the endpoint in outcomes ("occ login"); `refused` statuses mean credentials.
    """
    if status in refused:
        return Rejected(f"{who} refused the credentials (HTTP {status})")
    if retryable(status):
        return RetryLater(f"{who} answered HTTP {status}")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return RetryLater(f"{who} answered with a body that is not JSON")
    token = document.get("access_token") if isinstance(document, dict) else None
    if status != 200 or not isinstance(token, str) or not token:  # noqa: PLR2004
        return Rejected(f"{who} answered HTTP {status} without an access_token")
    return Token(SecretStr(token), _seconds(document.get("expires_in")) or lifetime)


def _seconds(value: object) -> float | None:
    """`expires_in` as a positive number of seconds (at most a day), else None.

    RFC 6749 makes it a number; some servers quote it, so ASCII digits in a string count too.
    """
    if isinstance(value, str) and value.isascii() and value.strip().isdigit():
        value = int(value[:9])  # more digits than a day has seconds are capped below anyway
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        return None
    return min(float(value), MAX_TOKEN_SECONDS)


ProbeRead = Callable[[int, Headers, bytes], str | Rejected | RetryLater]


@dataclass(frozen=True, slots=True)
class Probe:
    """One harmless call `check-config --online` makes to see whether the wire holds.

    `read` turns the answer into what it showed (a short text), or why the wire does not hold.
    `bearer`: the call carries the target's token (`TargetBuild.auth`), fetched first. With
    `documents`, the answer is a GraphQL introspection result and every (query, variables) pair
    must validate against the schema it describes (the live schema, not our transcription).
    Nothing a probe does changes anything at the platform.
    """

    what: str
    call: HttpCall
    read: ProbeRead
    bearer: bool = False
    documents: tuple[tuple[str, object], ...] = ()


@runtime_checkable
class ApiSource(Protocol):
    """A source that calls its platform's API itself (thin webhooks completed by a read)."""

    def online_probes(self) -> tuple[TokenAuth | None, tuple[Probe, ...]]:
        """For `check-config --online`: its token endpoint (if any), then harmless calls."""


INTROSPECTION_QUERY = get_introspection_query(descriptions=False)


def graphql_post(
    url: str, query: str, variables: object = None, headers: Mapping[str, str] | None = None
) -> HttpCall:
    """One GraphQL document POSTed as JSON `{"query", "variables"}` (GraphQL over HTTP)."""
    document = {"query": query} if variables is None else {"query": query, "variables": variables}
    return HttpCall(
        method="POST",
        url=url,
        headers={
            "Content-Type": "application/json",
            "Accept": "application/json",
            **(headers or {}),
        },
        body=orjson.dumps(document),
    )


def introspection_call(url: str) -> HttpCall:
    """The standard introspection query (no credentials: it is for endpoints that serve it so)."""
    return graphql_post(url, INTROSPECTION_QUERY)


def read_introspection(who: str) -> ProbeRead:
    """A reader for an introspection answer: HTTP 200 with `data.__schema`."""

    def read(status: int, headers: Headers, body: bytes) -> str | Rejected | RetryLater:
        del headers
        if retryable(status):
            return RetryLater(f"{who} answered HTTP {status}")
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return Rejected(f"{who} answered HTTP {status} with a body that is not JSON")
        data = document.get("data") if isinstance(document, dict) else None
        if status != 200 or not isinstance(data, dict) or "__schema" not in data:  # noqa: PLR2004
            return Rejected(f"{who} serves no introspection (HTTP {status})")
        return f"{who} schema read"

    return read


class TargetSettings(Section):
    """A `[targets.<name>]` section: frozen, unknown keys refused (`<P>TargetSettings`)."""


@dataclass(frozen=True, slots=True)
class TargetBuild:
    """What a target's settings and secrets make: the adapter and how the worker drives it."""

    adapter: TargetAdapter
    timeout: float  # seconds per call
    link_platform: str | None = None  # order links hold the target's order id under this name
    rate: float | None = None  # calls per second per `HttpCall.pace_key`
    summary: str = ""  # one line for `check-config`, no secret in it
    auth: TokenAuth | None = None  # a bearer token the worker fetches and adds to every call


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """A registry line for a target: its section, secrets (key -> variable) and factory."""

    settings: type[TargetSettings]
    secret_envs: Callable[[Any], Mapping[str, str]]
    make: Callable[[Any, Mapping[str, SecretStr]], TargetBuild]
    # Harmless calls for `check-config --online` (section, secrets, now); the token endpoint,
    # where `make` gives one, is checked before them.
    probes: Callable[[Any, Mapping[str, SecretStr], datetime], tuple[Probe, ...]] | None = None
    # Reconciliation: the platform's own records can show a delivery silently undone later
    # (CJ); `run` then compares them on a schedule (`bridge/reconcile/`).
    reconciles: bool = False
