"""One frozen settings tree from one TOML file; secrets come from environment variables it names.

Each platform's sections are its own models (`<P>SourceSettings`, `<P>TargetSettings` in
`handlers/<platform>.py`); this module composes them from the registry. `[sources.<name>]` is
read in two steps: `parse_settings` checks every key against the keys some platform takes (a
typo is refused there), `resolve` against the platform's own model (another platform's key, or
one the platform needs, is refused there, naming it).

Durations are written with a unit: `"500ms"`, `"10s"`, `"5m"`, `"24h"`, `"7d"`
(`handlers.base.Seconds`, `Duration`). The old spellings are still read, and each one met is
listed in `Settings.deprecations` (`check-config` prints them): a bare number of seconds, and
the keys `timeout_s` (now `timeout`) and `echo_ttl_days` (now `echo_ttl`).

The errors of this layer, one tree:

    ConfigError          a configuration problem: `key` names it, `problem` says what is wrong;
                         never a secret's value (load, read_settings, parse_settings, resolve)
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType, UnionType
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    IPvAnyNetwork,
    PrivateAttr,
    SecretStr,
    ValidationError,
    create_model,
)
from pydantic.fields import FieldInfo
from yarl import URL

from contracts.events import Source
from handlers.base import (
    DURATION_READERS,
    EnvName,
    OldKey,
    Seconds,
    Section,
    SourceHandler,
    SourceSettings,
    WholeSeconds,
    bare_seconds,
    exact_duration,
    format_duration,
    is_bare_seconds,
)
from handlers.registry import SOURCES, TARGETS

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
# `[receiver] trusted_proxies` by default: a proxy on this host only.
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
# `[worker]`'s retry schedule (bridge/worker/retry.py reads it): seconds, the last repeats.
DEFAULT_DELAYS: tuple[float, ...] = (5, 30, 120, 600, 1800, 3600)  # then hourly
DEFAULT_TOTAL = 24 * 3600.0
MIN_API_TOKEN = 16
DAY = 86400.0


class BrokerSettings(Section):
    """`[broker]`: where and how events are published."""

    url_env: EnvName = "AMQP_URL"
    confirm_timeout: Seconds = Field(default=5.0, gt=0, le=60)
    connect_timeout: Seconds = Field(default=5.0, gt=0, le=60)
    reconnect_interval: Seconds = Field(default=1.0, gt=0, le=60)
    retry_after: WholeSeconds = Field(default=5, ge=1, le=3600)  # what 503 answers say
    app_id: str = Field(default="cancel-bridge", min_length=1, max_length=100, pattern=r"^[ -~]+$")


class ReceiverSettings(Section):
    """`[receiver]`: the HTTP listener."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    shutdown_timeout: Seconds = Field(default=10.0, gt=0, le=300)
    body_timeout: Seconds = Field(default=30.0, gt=0, le=300)
    # A connection that has not sent a whole request's headers by then (or sits idle between
    # requests that long) is closed.
    header_timeout: Seconds = Field(default=10.0, gt=0, le=300)
    # Connections held at once; past it (or past the open-file limit less a reserve) new ones
    # are answered 503 and closed.
    max_connections: int = Field(default=4096, ge=1, le=1_000_000)
    api_token_env: EnvName | None = None  # `/api/*` answers 401 to everyone while unset
    lookup_timeout: Seconds = Field(default=10.0, gt=0, le=60)  # thin webhooks: the order fetch
    processes: int = Field(default=1, ge=1, le=64)  # receiver processes sharing the port
    # While the broker is away, verified events are held in the store and answered 2xx; false:
    # answer 503 + Retry-After instead (the platform retries).
    spool: bool = True
    spool_max: int = Field(default=100_000, ge=1, le=100_000_000)  # when full: 503 again
    # The reverse proxies in front (addresses or networks): only from these peers are
    # X-Forwarded-For (the client the throttle counts) and X-Forwarded-Proto (HTTPS: Secure
    # cookies, HSTS) believed. Loopback only by default.
    trusted_proxies: tuple[IPvAnyNetwork, ...] = LOOPBACK


def _optional(fields: list[FieldInfo]) -> tuple[Any, None]:
    """One key of `[sources.<name>]` as parsed: any platform's spelling of it, or absent."""
    kinds = tuple(
        Annotated[(f.annotation, *f.metadata)] if f.metadata else f.annotation for f in fields
    )
    return Union[(*kinds, None)], None


def _source_keys() -> dict[str, tuple[Any, None]]:
    found: dict[str, list[FieldInfo]] = {}
    for spec in SOURCES.values():
        for key in sorted(spec.options):
            found.setdefault(key, []).append(spec.settings.model_fields[key])
    return {key: _optional(fields) for key, fields in found.items()}


# `[sources.<name>]` as parsed: the keys every source has, and every platform's own keys
# (optional here); `resolve` then reads the section with the platform's model.
SourceSections: type[SourceSettings] = create_model(
    "SourceSections",
    __base__=SourceSettings,
    **_source_keys(),  # type: ignore[call-overload]
)
if TYPE_CHECKING:
    SourceSection = Any  # a platform's keys are its model's: `Config.source_settings`
else:
    SourceSection = SourceSections


# `[targets.<name>]`: one optional section per registered target, each the target's own model.
TargetsSettings: type[Section] = create_model(
    "TargetsSettings",
    __base__=Section,
    **{name: (spec.settings | None, None) for name, spec in TARGETS.items()},  # type: ignore[call-overload]
)


def _known_target(name: str) -> str:
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r} (known: {', '.join(sorted(TARGETS))})")
    return name


TargetRef = Annotated[str, AfterValidator(_known_target)]
if TYPE_CHECKING:
    TargetsModel = Section
else:
    TargetsModel = TargetsSettings


class WorkerSettings(Section):
    """`[worker]`: consuming, retrying and parking."""

    prefetch: int = Field(default=16, ge=1, le=1000)
    retry_delays: tuple[Seconds, ...] = Field(default=DEFAULT_DELAYS, min_length=1)
    retry_total: Seconds = Field(default=DEFAULT_TOTAL, gt=0)
    poison_attempts: int = Field(default=5, ge=1, le=1000)
    drain_timeout: Seconds = Field(default=10.0, gt=0, le=300)
    # A claim outlives the call's timeout by this much before another worker may take it over.
    lease_margin: Seconds = Field(default=30.0, gt=0, le=3600)
    # How long a target waits for an order link that is missing before parking (`no_link`).
    no_link_window: Seconds = Field(default=3600.0, gt=0)
    # How long a batch of claims waits for the other messages in hand (one store transaction).
    claim_linger: Seconds = Field(default=0.005, ge=0, le=1)


class StoreSettings(Section):
    """`[store]`: the state store. SQLite at `path` unless the `url_env` variable holds a URL."""

    OLD_KEYS = MappingProxyType({"echo_ttl_days": OldKey("echo_ttl", "d")})

    path: str = Field(default="cancel-bridge.db", min_length=1)
    url_env: EnvName | None = None
    # How long "we cancelled order X on platform P" suppresses P's echo of it.
    echo_ttl: Seconds = Field(default=7 * DAY, gt=0, le=365 * DAY)
    # How long the receiver's batch of arrivals waits for the other webhooks in flight.
    arrival_linger: Seconds = Field(default=0.005, ge=0, le=1)
    # How long a webhook waits for the store (its record, or the spool) before a 503.
    request_timeout: Seconds = Field(default=3.0, gt=0, le=60)


class LogSettings(Section):
    """`[log]`: structured JSON lines on standard output."""

    level: Literal["debug", "info", "warning", "error"] = "info"


class MetricsSettings(Section):
    """`[metrics]`: Prometheus metrics at `/metrics`, on the receiver's port and on `port`.

    `port` is a listener of their own: worker processes have no other, and receiver processes
    past the first listen on `port + slot`.
    """

    token_env: EnvName | None = None  # when set, `/metrics` wants `Authorization: Bearer` it
    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=1, le=65535)
    queue_interval: Seconds = Field(default=15.0, gt=0, le=3600)  # between depth reads


class TracingSettings(Section):
    """`[tracing]`: OpenTelemetry spans from webhook to target call (the `tracing` extra)."""

    enabled: bool = False
    exporter: Literal["otlp", "console"] = "otlp"  # OTLP over HTTP, or JSON on standard output
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    service_name: str = Field(default="cancel-bridge", min_length=1, max_length=100)
    sample_ratio: float = Field(default=1.0, ge=0, le=1)  # of new traces; a parent's choice wins


class BackstopSettings(Section):
    """`[backstop]`: polling the platforms for cancellations whose webhook never came."""

    # How often `run` polls each source it can list (Shoplazza: [targets.shoplazza] shops with
    # their tokens; OCC: [targets.occ] with its application key); "0s": never
    # (`cancel-bridge backstop` by hand or from cron).
    interval: Seconds = Field(default=15 * 60.0, ge=0, le=DAY)
    # Each poll starts this long before the last one's watermark (the later of its start and the
    # newest update it listed): bounds that may not be inclusive, clocks that differ.
    overlap: Seconds = Field(default=10 * 60.0, ge=0, le=DAY)
    # The first poll, with no watermark in the store yet, looks this far back.
    first_window: Seconds = Field(default=DAY, gt=0, le=60 * DAY)
    # OCC, when the tenant refuses a query by lastModifiedDate: the cancelled orders submitted
    # this far back are listed on every poll (a sliding window; the store says what is new).
    occ_lookback: Seconds = Field(default=14 * DAY, gt=0, le=60 * DAY)


class Settings(Section):
    """The whole file."""

    broker: BrokerSettings = BrokerSettings()
    receiver: ReceiverSettings = ReceiverSettings()
    sources: dict[Source, SourceSection] = Field(default_factory=dict)
    targets: TargetsModel = Field(default_factory=TargetsSettings)
    routes: dict[Source, tuple[TargetRef, ...]] = Field(default_factory=dict)
    worker: WorkerSettings = WorkerSettings()
    store: StoreSettings = StoreSettings()
    log: LogSettings = LogSettings()
    metrics: MetricsSettings = MetricsSettings()
    tracing: TracingSettings = TracingSettings()
    backstop: BackstopSettings = BackstopSettings()
    _deprecations: tuple[str, ...] = PrivateAttr(default=())

    @property
    def deprecations(self) -> tuple[str, ...]:
        """One line per old spelling the file used (still read), naming key and new spelling."""
        return self._deprecations

    def routed_sources(self, target: str) -> tuple[Source, ...]:
        """The sources whose cancellations `[routes]` sends to `target`."""
        return tuple(source for source, targets in self.routes.items() if target in targets)

    def targets_in_use(self) -> tuple[str, ...]:
        """Targets some route sends to, in a stable order."""
        return tuple(sorted({target for targets in self.routes.values() for target in targets}))


# Old key -> its new name, in every section that renamed one.
_RENAMING: tuple[type[Section], ...] = (StoreSettings, *(s.settings for s in TARGETS.values()))
_RENAMED: Mapping[str, str] = MappingProxyType(
    {old: key.new for model in _RENAMING for old, key in model.OLD_KEYS.items()}
)


class ConfigError(Exception):
    """A configuration problem, naming the key it is about. Never carries a secret value."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


@dataclass(frozen=True, slots=True)
class Config:
    """Settings plus the secrets resolved from the environment."""

    settings: Settings
    amqp_url: SecretStr
    source_secrets: Mapping[Source, tuple[SecretStr, ...]]
    # Per target: its secrets by the configuration key that names their variable.
    target_secrets: Mapping[str, Mapping[str, SecretStr]] = field(default_factory=dict)
    store_url: SecretStr = field(default_factory=lambda: SecretStr("cancel-bridge.db"))
    api_token: SecretStr | None = None
    metrics_token: SecretStr | None = None
    source_handlers: Mapping[Source, SourceHandler] = field(default_factory=dict)
    # Each source's section as its platform's own model reads it (`<P>SourceSettings`).
    source_settings: Mapping[Source, SourceSettings] = field(default_factory=dict)

    def secrets_now(self, source: Source, now: datetime) -> tuple[SecretStr, ...]:
        """`source`'s secrets accepted at `now`: the previous one only until its grace ends."""
        secrets = self.source_secrets[source]
        until = self.settings.sources[source].previous_secret_until
        if until is not None and now >= until.astimezone(UTC):
            return secrets[:1]
        return secrets

    @property
    def amqp_url_redacted(self) -> str:
        """The broker URL(s) with passwords masked, for output."""
        return ", ".join(redact_url(url) for url in broker_urls(self.amqp_url.get_secret_value()))


def broker_urls(text: str) -> list[str]:
    """The broker URLs of `text` in order (several nodes of one cluster: comma-separated).

    The publisher and each worker use the first that answers and move on when theirs is lost
    (`amqp.publisher.open_robust`); one-off tools use the first.
    """
    return [part.strip() for part in text.split(",") if part.strip()]


def first_url(text: str) -> str:
    """The first of `text`'s broker URLs (the whole text when it names one)."""
    urls = broker_urls(text)
    return urls[0] if urls else text


def redact_url(url: str) -> str:
    """`url` with any password replaced by `***`."""
    try:
        parsed = URL(url)
    except (ValueError, TypeError):
        return "<unparseable url>"
    if parsed.password is not None:
        parsed = parsed.with_password("***")
    return str(parsed)


def _key(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc if part != "[key]") or "<root>"


def _field_help(loc: tuple[int | str, ...]) -> str | None:
    """The `description` of the settings field at `loc`, if it has one (says what to set)."""
    model: type[BaseModel] = Settings
    found = None
    for part in loc:
        fields = model.model_fields
        if not isinstance(part, str) or part not in fields:
            continue  # a dict key (a source's name) or a list index: same model below
        found = fields[part]
        models = [
            arg
            for arg in (found.annotation, *get_args(found.annotation))  # X, X | None, dict[K, X]
            if isinstance(arg, type) and issubclass(arg, BaseModel)
        ]
        model = models[0] if models else model
    return found.description if found is not None else None


def _problem(exc: ValidationError, prefix: tuple[int | str, ...] = ()) -> ConfigError:
    """The first error, naming its key; the value is echoed only where it helps."""
    first = exc.errors()[0]
    loc = (*prefix, *first["loc"])
    problem = first["msg"]
    if first["type"] == "missing" and (explained := _field_help(loc)):
        problem = f"required, no default: {explained}"
    # Echo the value only where it helps (wrong type or range): an unknown key may hold a
    # secret pasted into the file by mistake, and naming the key is enough there.
    if first["type"] not in ("missing", "extra_forbidden") and not isinstance(
        first.get("input"), dict | list
    ):
        problem = f"{problem} (got {first['input']!r})"
    return ConfigError(_key(loc), problem)


def _as_written(error: ConfigError, document: Mapping[str, object]) -> ConfigError:
    """`error` naming the old key (`timeout_s`) where the file wrote that, not the new one."""
    *path, last = error.key.split(".")
    section: object = document
    for part in path:
        section = section.get(part) if isinstance(section, Mapping) else None
    if not isinstance(section, Mapping) or last in section:
        return error
    old = next((k for k in section if _RENAMED.get(k) == last), None)
    return error if old is None else ConfigError(".".join((*path, old)), error.problem)


def parse_settings(document: Mapping[str, object]) -> Settings:
    """Validate a decoded TOML document; errors name the first offending key (as written)."""
    try:
        settings = Settings.model_validate(document)
    except ValidationError as exc:
        raise _as_written(_problem(exc), document) from None
    settings._deprecations = tuple(_old_spellings(Settings, document, ""))  # noqa: SLF001 - ours
    return settings


# --- old spellings: still read, each one named -------------------------------------------------


def _is_duration(annotation: object, metadata: Sequence[object] = ()) -> bool:
    """Whether a field reads a duration (`Seconds`, `Duration`, maybe optional)."""
    if any(getattr(m, "func", None) in DURATION_READERS for m in metadata):
        return True
    if get_origin(annotation) is Annotated:
        return _is_duration(None, getattr(annotation, "__metadata__", ()))
    if get_origin(annotation) in (Union, UnionType):
        return any(_is_duration(arg) for arg in get_args(annotation))
    return False


def _models(annotation: object) -> list[type[BaseModel]]:
    """The settings models a field holds: itself, in an optional, or a dict's values."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = get_origin(annotation)
    if origin in (Union, UnionType):
        return [model for arg in get_args(annotation) for model in _models(arg)]
    if origin is dict:
        return _models(get_args(annotation)[1])
    return []


def _spelled(value: object) -> str:
    seconds = bare_seconds(value)
    if seconds is None:
        return repr(value)
    if (exact := exact_duration(seconds)) is not None:
        return f'"{exact}"'
    return f'"{format_duration(seconds)}" or near it ({value!r} has no exact spelling)'


def _old_spellings(model: type[BaseModel], document: object, path: str) -> Iterator[str]:
    """A line per old spelling in `document` (a section read by `model`), at `path`."""
    if not isinstance(document, Mapping):
        return
    old_keys: Mapping[str, OldKey] = getattr(model, "OLD_KEYS", {})
    for key, value in document.items():
        where = f"{path}{key}"
        if key in old_keys:
            new = old_keys[key]
            days = bare_seconds(value) if new.unit == "d" else None
            spelled = value if days is None else days * 86400
            yield f"deprecated: {where} = {value!r}: write {new.new} = {_spelled(spelled)}"
            continue
        found = model.model_fields.get(key)
        if found is None:
            continue
        yield from _old_field(found, value, where)


def _old_field(found: FieldInfo, value: object, where: str) -> Iterator[str]:
    key = where.rpartition(".")[2]
    if _is_duration(found.annotation, found.metadata) and is_bare_seconds(value):
        yield f"deprecated: {where} = {value!r}: write {key} = {_spelled(value)}"
        return
    if get_origin(found.annotation) is tuple and isinstance(value, list):
        if _is_duration(get_args(found.annotation)[0]) and any(map(is_bare_seconds, value)):
            new = ", ".join(f'"{v}"' if isinstance(v, str) else _spelled(v) for v in value)
            yield f"deprecated: {where} = {value!r}: write {key} = [{new}]"
        return
    models = _models(found.annotation)
    if not models or not isinstance(value, Mapping):
        return
    if get_origin(found.annotation) is dict:
        for name, entry in value.items():
            for model in models:
                yield from _old_spellings(model, entry, f"{where}.{name}.")
        return
    for model in models:
        yield from _old_spellings(model, value, f"{where}.")


def read_settings(path: Path) -> Settings:
    """Read and validate the TOML file at `path`."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"cannot read: {exc}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    return parse_settings(document)


def _secrets(name: Source, src: SourceSection, env: Mapping[str, str]) -> tuple[SecretStr, ...]:
    current = env.get(src.secret_env, "")
    if not current.strip():
        raise ConfigError(
            f"sources.{name.value}.secret_env",
            f"environment variable {src.secret_env} is not set or empty",
        )
    found = [SecretStr(current.strip())]
    if src.previous_secret_env and (previous := env.get(src.previous_secret_env, "").strip()):
        found.append(SecretStr(previous))
    return tuple(found)


def _store_url(store: StoreSettings, env: Mapping[str, str]) -> SecretStr:
    if store.url_env and (url := env.get(store.url_env, "").strip()):
        if not url.startswith(("postgresql://", "postgres://", "sqlite:///")):
            raise ConfigError(
                "store.url_env", f"{store.url_env} must be a postgresql:// or sqlite:/// URL"
            )
        if not url.startswith("sqlite:///"):
            _check_url(url, "store.url_env", store.url_env)
        return SecretStr(url)
    return SecretStr(store.path)


def _check_url(url: str, key: str, name: str) -> None:
    """A server URL that will connect: parseable, a host, a port that is a number.

    The error names the variable and what is wrong, never the URL (it may hold a password).
    """
    try:
        parsed = URL(url)
        port = parsed.port
    except ValueError as exc:
        port_trouble = "port" in str(exc).lower()
        reason = "the port is not a number from 1 to 65535" if port_trouble else "unparsable"
        raise ConfigError(key, f"{name} is not a valid URL ({reason})") from None
    if not parsed.host:
        raise ConfigError(key, f"{name} is not a valid URL (no host)")
    if port is not None and not 0 < port < 65536:  # noqa: PLR2004 - TCP's port range
        raise ConfigError(key, f"{name} is not a valid URL (port {port})")


def _secrets_named(
    prefix: str, envs: Mapping[str, str], env: Mapping[str, str]
) -> dict[str, SecretStr]:
    """Each variable a section names (key -> variable), set; a missing one names its key."""
    secrets: dict[str, SecretStr] = {}
    for key, name in envs.items():
        value = env.get(name, "").strip()
        if not value:
            raise ConfigError(f"{prefix}.{key}", f"environment variable {name} is not set or empty")
        secrets[key] = SecretStr(value)
    return secrets


def _platform_section(name: Source, section: SourceSettings) -> SourceSettings:
    """`section` read by its platform's own model: another platform's key is refused."""
    spec = SOURCES.get(name)
    if spec is None:
        supported = ", ".join(sorted(source.value for source in SOURCES))
        raise ConfigError(f"sources.{name.value}", f"not supported yet (supported: {supported})")
    given = section.model_dump(exclude_unset=True)
    fields = spec.settings.model_fields
    # An option left empty (`aliases = {}`) says nothing: another platform's empty key passes,
    # as it always did; one with a value is refused below.
    given = {k: v for k, v in given.items() if k in fields or v not in (None, {}, [], ())}
    try:
        return spec.settings.model_validate(given)
    except ValidationError as exc:
        first = exc.errors()[0]
        key = _key(("sources", name.value, *first["loc"]))
        if first["type"] == "extra_forbidden":
            raise ConfigError(key, f"{name.value} has no such option") from None
        if first["type"] == "missing":
            raise ConfigError(key, f"{name.value} needs it") from None
        raise _problem(exc, ("sources", name.value)) from None


def _sources(
    settings: Settings, env: Mapping[str, str]
) -> tuple[dict[Source, SourceSettings], dict[Source, SourceHandler]]:
    """Each configured source's own settings and its handler; unknown ones are refused."""
    sections: dict[Source, SourceSettings] = {}
    handlers: dict[Source, SourceHandler] = {}
    for name, section in settings.sources.items():
        own = _platform_section(name, section)
        spec = SOURCES[name]
        secrets = _secrets_named(f"sources.{name.value}", spec.secret_envs(own), env)
        sections[name] = own
        handlers[name] = spec.make(own, secrets)
    return sections, handlers


def _target_secrets(settings: Settings, env: Mapping[str, str]) -> dict[str, dict[str, SecretStr]]:
    """Every routed target's secrets; a missing section or variable names its key."""
    found: dict[str, dict[str, SecretStr]] = {}
    for source, targets in settings.routes.items():
        for target in targets:
            if target == source.value:
                raise ConfigError(f"routes.{source.value}", "a source is never routed to itself")
            section = getattr(settings.targets, target)
            if section is None:
                raise ConfigError(
                    f"routes.{source.value}", f"target {target!r} has no [targets.{target}] section"
                )
            envs = TARGETS[target].secret_envs(section)
            found[target] = _secrets_named(f"targets.{target}", envs, env)
    return found


def _token(key: str, name: str | None, env: Mapping[str, str]) -> SecretStr | None:
    """The bearer token in variable `name` (configured at `key`), or None when not configured."""
    if name is None:
        return None
    value = env.get(name, "").strip()
    if len(value) < MIN_API_TOKEN:
        raise ConfigError(
            key, f"environment variable {name} must hold a token of {MIN_API_TOKEN}+ characters"
        )
    return SecretStr(value)


def resolve(settings: Settings, env: Mapping[str, str]) -> Config:
    """Look up every secret the settings name; a missing one is a `ConfigError`."""
    url = env.get(settings.broker.url_env, "").strip() or DEFAULT_AMQP_URL
    for node in broker_urls(url) or [url]:  # several nodes of one cluster: comma-separated
        scheme = node.partition("://")[0].lower()
        if scheme not in ("amqp", "amqps"):
            raise ConfigError(
                "broker.url_env", f"{settings.broker.url_env} must be an amqp:// or amqps:// URL"
            )
        _check_url(node, "broker.url_env", settings.broker.url_env)
    if not settings.sources and not settings.routes:
        raise ConfigError("sources", "nothing to do: add a [sources.<name>] or [routes] section")
    source_settings, source_handlers = _sources(settings, env)
    return Config(
        source_handlers=source_handlers,
        source_settings=source_settings,
        settings=settings,
        api_token=_token("receiver.api_token_env", settings.receiver.api_token_env, env),
        metrics_token=_token("metrics.token_env", settings.metrics.token_env, env),
        amqp_url=SecretStr(url),
        source_secrets={name: _secrets(name, src, env) for name, src in settings.sources.items()},
        target_secrets=_target_secrets(settings, env),
        store_url=_store_url(settings.store, env),
    )


def load(path: Path, env: Mapping[str, str]) -> Config:
    """Read, validate and resolve the configuration: everything `run` needs before connecting."""
    return resolve(read_settings(path), env)
