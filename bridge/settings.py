"""One frozen settings tree from one TOML file; secrets come from environment variables it names."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, get_args

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    create_model,
)
from yarl import URL

from contracts.events import Platform, Source
from handlers.base import (
    EnvName,
    KeyEncoding,
    SignatureAlgorithm,
    SourceHandler,
    SourceOptions,
)
from handlers.prime import PrimeApiVersion, TokenClientAuth
from handlers.registry import SOURCES, TARGETS

DEFAULT_AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
# `[worker]`'s retry schedule (bridge/worker/retry.py reads it): seconds, the last repeats.
DEFAULT_DELAYS: tuple[float, ...] = (5, 30, 120, 600, 1800, 3600)  # then hourly
DEFAULT_TOTAL = 24 * 3600.0
MIN_API_TOKEN = 16


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BrokerSettings(_Section):
    """`[broker]`: where and how events are published."""

    url_env: EnvName = "AMQP_URL"
    confirm_timeout: float = Field(default=5.0, gt=0, le=60)
    connect_timeout: float = Field(default=5.0, gt=0, le=60)
    reconnect_interval: float = Field(default=1.0, gt=0, le=60)
    retry_after: int = Field(default=5, ge=1, le=3600)
    app_id: str = Field(default="cancel-bridge", min_length=1, max_length=100, pattern=r"^[ -~]+$")


class ReceiverSettings(_Section):
    """`[receiver]`: the HTTP listener."""

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    shutdown_timeout: float = Field(default=10.0, gt=0, le=300)
    body_timeout: float = Field(default=30.0, gt=0, le=300)
    api_token_env: EnvName | None = None  # `/api/*` answers 401 to everyone while unset
    lookup_timeout: float = Field(default=10.0, gt=0, le=60)  # thin webhooks: the order fetch
    processes: int = Field(default=1, ge=1, le=64)  # receiver processes sharing the port


class SourceApiSettings(_Section):
    """`[sources.<name>.api]`: the platform API a thin webhook is completed from (Prime)."""

    client_id_env: EnvName
    client_secret_env: EnvName
    api_url: str | None = None
    token_url: str | None = None
    api_version: PrimeApiVersion | None = None  # a version whose schema we transcribed
    token_client_auth: TokenClientAuth | None = None  # Prime: Basic (default) or form fields


class SourceSettings(_Section):
    """`[sources.<name>]`: a platform that sends webhooks."""

    secret_env: EnvName
    previous_secret_env: EnvName | None = None
    # The end of a rotation's grace period: after it the previous secret is refused.
    previous_secret_until: AwareDatetime | None = None
    # Platform options (only where the platform takes them; OCC does).
    algorithm: SignatureAlgorithm | None = None  # HMAC digest; OCC default sha512
    key_encoding: KeyEncoding | None = None  # how the secret becomes the key; OCC default base64
    auth: Literal["basic", "oauth"] | None = None  # Prime: how it authenticates to us
    username: str | None = Field(default=None, min_length=1)  # Prime: Basic user / client id
    aliases: dict[str, Platform] = Field(default_factory=dict)  # Prime: alias type -> platform
    api: SourceApiSettings | None = None  # Prime: the order API


# `[targets.<name>]`: one optional section per registered target, each the target's own model.
TargetsSettings: type[_Section] = create_model(
    "TargetsSettings",
    __base__=_Section,
    **{name: (spec.settings | None, None) for name, spec in TARGETS.items()},  # type: ignore[call-overload]
)


def _known_target(name: str) -> str:
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r} (known: {', '.join(sorted(TARGETS))})")
    return name


TargetRef = Annotated[str, AfterValidator(_known_target)]
if TYPE_CHECKING:
    TargetsModel = _Section
else:
    TargetsModel = TargetsSettings


class WorkerSettings(_Section):
    """`[worker]`: consuming, retrying and parking."""

    prefetch: int = Field(default=16, ge=1, le=1000)
    retry_delays: tuple[float, ...] = Field(default=DEFAULT_DELAYS, min_length=1)
    retry_total: float = Field(default=DEFAULT_TOTAL, gt=0)
    poison_attempts: int = Field(default=5, ge=1, le=1000)
    drain_timeout: float = Field(default=10.0, gt=0, le=300)
    # A claim outlives the call's timeout by this much before another worker may take it over.
    lease_margin: float = Field(default=30.0, gt=0, le=3600)
    # How long a target waits for an order link that is missing before parking (`no_link`).
    no_link_window: float = Field(default=3600.0, gt=0)


class StoreSettings(_Section):
    """`[store]`: the state store. SQLite at `path` unless the `url_env` variable holds a URL."""

    path: str = Field(default="cancel-bridge.db", min_length=1)
    url_env: EnvName | None = None
    echo_ttl_days: float = Field(default=7.0, gt=0, le=365)


class LogSettings(_Section):
    """`[log]`: structured JSON lines on standard output."""

    level: Literal["debug", "info", "warning", "error"] = "info"


class MetricsSettings(_Section):
    """`[metrics]`: Prometheus metrics at `/metrics`, on the receiver's port and on `port`.

    `port` is a listener of their own: worker processes have no other, and receiver processes
    past the first listen on `port + slot`.
    """

    token_env: EnvName | None = None  # when set, `/metrics` wants `Authorization: Bearer` it
    host: str = "127.0.0.1"
    port: int | None = Field(default=None, ge=1, le=65535)
    queue_interval: float = Field(default=15.0, gt=0, le=3600)  # seconds between depth reads


class TracingSettings(_Section):
    """`[tracing]`: OpenTelemetry spans from webhook to target call (the `tracing` extra)."""

    enabled: bool = False
    exporter: Literal["otlp", "console"] = "otlp"  # OTLP over HTTP, or JSON on standard output
    endpoint: str = "http://127.0.0.1:4318/v1/traces"
    service_name: str = Field(default="cancel-bridge", min_length=1, max_length=100)
    sample_ratio: float = Field(default=1.0, ge=0, le=1)  # of new traces; a parent's choice wins


class Settings(_Section):
    """The whole file."""

    broker: BrokerSettings = BrokerSettings()
    receiver: ReceiverSettings = ReceiverSettings()
    sources: dict[Source, SourceSettings] = Field(default_factory=dict)
    targets: TargetsModel = Field(default_factory=TargetsSettings)
    routes: dict[Source, tuple[TargetRef, ...]] = Field(default_factory=dict)
    worker: WorkerSettings = WorkerSettings()
    store: StoreSettings = StoreSettings()
    log: LogSettings = LogSettings()
    metrics: MetricsSettings = MetricsSettings()
    tracing: TracingSettings = TracingSettings()

    def routed_sources(self, target: str) -> tuple[Source, ...]:
        """The sources whose cancellations `[routes]` sends to `target`."""
        return tuple(source for source, targets in self.routes.items() if target in targets)

    def targets_in_use(self) -> tuple[str, ...]:
        """Targets some route sends to, in a stable order."""
        return tuple(sorted({target for targets in self.routes.values() for target in targets}))


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

    def secrets_now(self, source: Source, now: datetime) -> tuple[SecretStr, ...]:
        """`source`'s secrets accepted at `now`: the previous one only until its grace ends."""
        secrets = self.source_secrets[source]
        until = self.settings.sources[source].previous_secret_until
        if until is not None and now >= until.astimezone(UTC):
            return secrets[:1]
        return secrets

    @property
    def amqp_url_redacted(self) -> str:
        """The broker URL with its password masked, for output."""
        return redact_url(self.amqp_url.get_secret_value())


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


def parse_settings(document: Mapping[str, object]) -> Settings:
    """Validate a decoded TOML document; errors name the first offending key."""
    try:
        return Settings.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        problem = first["msg"]
        if first["type"] == "missing" and (explained := _field_help(first["loc"])):
            problem = f"required, no default: {explained}"
        # Echo the value only where it helps (wrong type or range): an unknown key may hold a
        # secret pasted into the file by mistake, and naming the key is enough there.
        if first["type"] not in ("missing", "extra_forbidden") and not isinstance(
            first.get("input"), dict | list
        ):
            problem = f"{problem} (got {first['input']!r})"
        raise ConfigError(_key(first["loc"]), problem) from None


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


def _secrets(name: Source, src: SourceSettings, env: Mapping[str, str]) -> tuple[SecretStr, ...]:
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
        return SecretStr(url)
    return SecretStr(store.path)


def _source_handlers(settings: Settings, env: Mapping[str, str]) -> dict[Source, SourceHandler]:
    """Each configured source's handler, made with its options; unknown ones are refused."""
    handlers: dict[Source, SourceHandler] = {}
    for name, src in settings.sources.items():
        spec = SOURCES.get(name)
        if spec is None:
            supported = ", ".join(sorted(source.value for source in SOURCES))
            raise ConfigError(
                f"sources.{name.value}", f"not supported yet (supported: {supported})"
            )
        for option in OPTIONS:
            given = getattr(src, option)
            if given and option not in spec.options:
                raise ConfigError(
                    f"sources.{name.value}.{option}", f"{name.value} has no such option"
                )
            if not given and option in spec.required:
                raise ConfigError(f"sources.{name.value}.{option}", f"{name.value} needs it")
        handlers[name] = spec.make(_options(name, src, env))
    return handlers


OPTIONS = ("algorithm", "key_encoding", "auth", "username", "aliases", "api")


def _options(name: Source, src: SourceSettings, env: Mapping[str, str]) -> SourceOptions:
    api: dict[str, str] = {}
    api_secrets: dict[str, SecretStr] = {}
    if src.api is not None:
        api = {
            key: value
            for key in ("api_url", "token_url", "api_version", "token_client_auth")
            if (value := getattr(src.api, key)) is not None
        }
        for key in ("client_id_env", "client_secret_env"):
            variable = getattr(src.api, key)
            value = env.get(variable, "").strip()
            if not value:
                raise ConfigError(
                    f"sources.{name.value}.api.{key}",
                    f"environment variable {variable} is not set or empty",
                )
            api_secrets[key] = SecretStr(value)
    return SourceOptions(
        algorithm=src.algorithm,
        key_encoding=src.key_encoding,
        auth=src.auth,
        username=src.username,
        aliases=dict(src.aliases),
        api=api,
        api_secrets=api_secrets,
    )


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
            secrets: dict[str, SecretStr] = {}
            for key, name in TARGETS[target].secret_envs(section).items():
                value = env.get(name, "").strip()
                if not value:
                    raise ConfigError(
                        f"targets.{target}.{key}",
                        f"environment variable {name} is not set or empty",
                    )
                secrets[key] = SecretStr(value)
            found[target] = secrets
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
    scheme = url.partition("://")[0].lower()
    if scheme not in ("amqp", "amqps"):
        raise ConfigError(
            "broker.url_env", f"{settings.broker.url_env} must be an amqp:// or amqps:// URL"
        )
    if not settings.sources and not settings.routes:
        raise ConfigError("sources", "nothing to do: add a [sources.<name>] or [routes] section")
    return Config(
        source_handlers=_source_handlers(settings, env),
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
