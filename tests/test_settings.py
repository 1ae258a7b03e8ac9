"""Settings: one TOML file, secrets from the variables it names, errors that name the key."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.cli.main import main
from bridge.settings import (
    DEFAULT_AMQP_URL,
    Config,
    ConfigError,
    load,
    parse_settings,
    read_settings,
    redact_url,
    resolve,
)
from contracts.events import Source
from handlers.registry import TARGETS

SECRET = "shpss_current_Qw7Ht2Lz9"
PREVIOUS = "shpss_previous_Vb3Nm8Kc4"
PASSWORD = "amqp-pw-Xy5Rt1"
AMQP_URL = f"amqp://bridge:{PASSWORD}@rabbit.internal:5672/orders"

GOOD_TOML = """\
[broker]
url_env = "BRIDGE_AMQP_URL"
confirm_timeout = 2.5
app_id = "cancel-bridge-test"

[receiver]
host = "::1"
port = 9090
max_body_bytes = 65536

[sources.shoplazza]
secret_env = "SHOPLAZZA_SECRET"
previous_secret_env = "SHOPLAZZA_PREVIOUS_SECRET"

[log]
level = "debug"
"""
MINIMAL: dict[str, object] = {"sources": {"shoplazza": {"secret_env": "SHOPLAZZA_SECRET"}}}
ENV = {
    "BRIDGE_AMQP_URL": AMQP_URL,
    "SHOPLAZZA_SECRET": SECRET,
    "SHOPLAZZA_PREVIOUS_SECRET": PREVIOUS,
}
SECRET_VALUES = (SECRET, PREVIOUS, PASSWORD)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def config_error(document: dict[str, object]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_settings(document)
    return caught.value


def assert_no_secret(text: str) -> None:
    for value in SECRET_VALUES:
        assert value not in text


def test_good_file_loads(tmp_path: Path) -> None:
    config = load(write(tmp_path, GOOD_TOML), ENV)
    settings = config.settings
    assert settings.broker.url_env == "BRIDGE_AMQP_URL"
    assert settings.broker.confirm_timeout == 2.5
    assert settings.broker.app_id == "cancel-bridge-test"
    assert settings.receiver.host == "::1"
    assert settings.receiver.port == 9090
    assert settings.receiver.max_body_bytes == 65536
    assert settings.log.level == "debug"
    assert config.amqp_url.get_secret_value() == AMQP_URL
    secrets = config.source_secrets[Source.SHOPLAZZA]
    assert [s.get_secret_value() for s in secrets] == [SECRET, PREVIOUS]  # current first


def test_defaults_fill_a_minimal_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[sources.shoplazza]\nsecret_env = "SHOPLAZZA_SECRET"\n')
    config = load(path, {"SHOPLAZZA_SECRET": SECRET})
    assert config.settings.receiver.port == 8080
    assert config.settings.broker.url_env == "AMQP_URL"
    assert config.settings.log.level == "info"
    assert config.amqp_url.get_secret_value() == DEFAULT_AMQP_URL


def test_settings_are_frozen() -> None:
    settings = parse_settings(MINIMAL)
    with pytest.raises(ValueError, match="frozen"):
        settings.receiver.port = 1  # type: ignore[misc]  # frozen model: mypy agrees


def test_secret_values_are_stripped() -> None:
    config = resolve(parse_settings(MINIMAL), {"SHOPLAZZA_SECRET": f"  {SECRET}\n"})
    assert config.source_secrets[Source.SHOPLAZZA][0].get_secret_value() == SECRET


# --- errors name the key -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("document", "key"),
    [
        ({**MINIMAL, "receiver": {"prot": 8080}}, "receiver.prot"),
        ({**MINIMAL, "broker": {"url": "amqp://x"}}, "broker.url"),
        ({**MINIMAL, "brokers": {}}, "brokers"),
        (
            {"sources": {"shoplazza": {"secret_env": "S", "secret_file": "/run/s"}}},
            "sources.shoplazza.secret_file",
        ),
    ],
)
def test_unknown_key_is_named(document: dict[str, object], key: str) -> None:
    error = config_error(document)
    assert error.key == key
    assert str(error).startswith(f"{key}: ")


def test_unknown_key_in_a_file_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD_TOML.replace("port = 9090", "prot = 9090"))
    with pytest.raises(ConfigError, match=r"^receiver\.prot: "):
        read_settings(path)


@pytest.mark.parametrize(
    ("document", "key", "value"),
    [
        ({**MINIMAL, "receiver": {"port": "eighty"}}, "receiver.port", "'eighty'"),
        ({**MINIMAL, "receiver": {"port": 70000}}, "receiver.port", "70000"),
        ({**MINIMAL, "broker": {"confirm_timeout": 0}}, "broker.confirm_timeout", "0"),
        ({**MINIMAL, "log": {"level": "verbose"}}, "log.level", "'verbose'"),
        ({**MINIMAL, "receiver": {"max_body_bytes": 10}}, "receiver.max_body_bytes", "10"),
        (
            {"sources": {"shoplazza": {"secret_env": "NOT-A-NAME"}}},
            "sources.shoplazza.secret_env",
            "'NOT-A-NAME'",
        ),
        ({**MINIMAL, "broker": {"url_env": "1BAD"}}, "broker.url_env", "'1BAD'"),
    ],
)
def test_bad_value_names_key_and_value(document: dict[str, object], key: str, value: str) -> None:
    error = config_error(document)
    assert error.key == key
    assert str(error).startswith(f"{key}: ")
    assert value in str(error)


def test_unknown_source_is_named() -> None:
    error = config_error({"sources": {"shopify": {"secret_env": "SHOPIFY_SECRET"}}})
    assert error.key == "sources.shopify"
    assert "shopify" in error.problem
    assert "shoplazza" in error.problem  # says what is allowed


def test_source_without_secret_env_is_named() -> None:
    error = config_error({"sources": {"shoplazza": {}}})
    assert error.key == "sources.shoplazza.secret_env"


def test_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as caught:
        read_settings(path)
    assert caught.value.key == str(path)
    assert "no such file" in caught.value.problem


def test_invalid_toml_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML") as caught:
        read_settings(write(tmp_path, "[receiver\nport = 1\n"))
    assert caught.value.key.endswith("bridge.toml")


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[log]\nlevel = "d\xe9bug"\n')
    with pytest.raises(ConfigError, match="cannot read"):
        read_settings(path)


# --- secrets -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "   "])
def test_missing_secret_names_the_key(value: str | None) -> None:
    env = {} if value is None else {"SHOPLAZZA_SECRET": value}
    with pytest.raises(ConfigError) as caught:
        resolve(parse_settings(MINIMAL), env)
    assert caught.value.key == "sources.shoplazza.secret_env"
    assert "sources.shoplazza.secret_env" in str(caught.value)
    assert "SHOPLAZZA_SECRET" in str(caught.value)  # which variable to set


def test_previous_secret_named_but_unset_is_fine(tmp_path: Path) -> None:
    config = load(write(tmp_path, GOOD_TOML), {**ENV, "SHOPLAZZA_PREVIOUS_SECRET": " "})
    secrets = config.source_secrets[Source.SHOPLAZZA]
    assert [s.get_secret_value() for s in secrets] == [SECRET]


def test_previous_secret_not_named_is_ignored() -> None:
    config = resolve(parse_settings(MINIMAL), ENV)
    assert len(config.source_secrets[Source.SHOPLAZZA]) == 1


@pytest.mark.parametrize(
    "url",
    [
        f"http://bridge:{PASSWORD}@rabbit.internal/",
        f"redis://bridge:{PASSWORD}@rabbit.internal/",
        f"bridge:{PASSWORD}@rabbit.internal",
        "rabbit.internal:5672",
    ],
)
def test_non_amqp_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        resolve(parse_settings(MINIMAL), {"SHOPLAZZA_SECRET": SECRET, "AMQP_URL": url})
    assert caught.value.key == "broker.url_env"
    assert "AMQP_URL" in str(caught.value)
    assert_no_secret(str(caught.value))


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (f"amqp://bridge:{PASSWORD}@rabbit.internal:notaport/", "port"),
        (f"amqp://bridge:{PASSWORD}@rabbit.internal:99999/", "port"),
        (f"amqp://bridge:{PASSWORD}@:5672/", "no host"),
        ("amqp:///", "no host"),
    ],
)
def test_a_broker_url_that_cannot_connect_is_refused(url: str, reason: str) -> None:
    """Found by a probe: `...:notaport/` passed check-config, then `run` never connected."""
    with pytest.raises(ConfigError) as caught:
        resolve(parse_settings(MINIMAL), {"SHOPLAZZA_SECRET": SECRET, "AMQP_URL": url})
    assert caught.value.key == "broker.url_env"
    assert "AMQP_URL is not a valid URL" in str(caught.value)
    assert reason in str(caught.value)
    assert_no_secret(str(caught.value))


def test_a_store_url_that_cannot_connect_is_refused() -> None:
    url = f"postgresql://bridge:{PASSWORD}@db.internal:notaport/cb"
    env = {"SHOPLAZZA_SECRET": SECRET, "CB_DB": url}
    with pytest.raises(ConfigError) as caught:
        resolve(parse_settings({**MINIMAL, "store": {"url_env": "CB_DB"}}), env)
    assert caught.value.key == "store.url_env"
    assert "CB_DB is not a valid URL" in str(caught.value)
    assert_no_secret(str(caught.value))


@pytest.mark.parametrize("scheme", ["amqp", "amqps", "AMQPS"])
def test_amqp_schemes_are_accepted(scheme: str) -> None:
    url = f"{scheme}://bridge:{PASSWORD}@rabbit.internal/"
    config = resolve(parse_settings(MINIMAL), {"SHOPLAZZA_SECRET": SECRET, "AMQP_URL": url})
    assert config.amqp_url.get_secret_value() == url


def test_no_sources_is_an_error() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve(parse_settings({}), ENV)
    assert caught.value.key == "sources"


def test_config_repr_hides_every_secret(tmp_path: Path) -> None:
    config = load(write(tmp_path, GOOD_TOML), ENV)
    assert isinstance(config, Config)
    assert_no_secret(repr(config))
    assert_no_secret(str(config))
    assert_no_secret(repr(config.source_secrets))
    assert_no_secret(config.amqp_url_redacted)
    assert config.amqp_url_redacted == "amqp://bridge:***@rabbit.internal:5672/orders"


def test_config_errors_never_carry_a_secret(tmp_path: Path) -> None:
    """Every resolve-time failure, with secrets planted everywhere, keeps them out of the text."""
    path = write(tmp_path, GOOD_TOML)
    broken_envs = [
        {**ENV, "SHOPLAZZA_SECRET": ""},
        {**ENV, "BRIDGE_AMQP_URL": f"https://bridge:{PASSWORD}@rabbit.internal/"},
    ]
    for env in broken_envs:
        with pytest.raises(ConfigError) as caught:
            load(path, env)
        assert_no_secret(str(caught.value))
        assert_no_secret(repr(caught.value))


# --- redact_url --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"amqp://bridge:{PASSWORD}@rabbit.internal:5672/orders",
            "amqp://bridge:***@rabbit.internal:5672/orders",
        ),
        (f"amqps://bridge:{PASSWORD}@rabbit.internal/", "amqps://bridge:***@rabbit.internal/"),
        ("amqp://bridge:p%40ss%2Fw0rd@rabbit.internal/", "amqp://bridge:***@rabbit.internal/"),
        ("amqp://guest@rabbit.internal/", "amqp://guest@rabbit.internal/"),
        ("amqp://rabbit.internal:5672/", "amqp://rabbit.internal:5672/"),
    ],
)
def test_redact_url_masks_the_password(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    "url", [f"amqp://bridge:{PASSWORD}@rabbit.internal:port/", f"amqp://bridge:{PASSWORD}@[::1/"]
)
def test_redact_url_never_echoes_an_unparseable_url(url: str) -> None:
    redacted = redact_url(url)
    assert PASSWORD not in redacted
    assert redacted == "<unparseable url>"


def test_inline_secret_under_an_unknown_key_is_not_echoed() -> None:
    """An operator who writes the secret itself into the file must not see it on stderr."""
    error = config_error({"sources": {"shoplazza": {"secret_env": "S", "secret": SECRET}}})
    assert error.key == "sources.shoplazza.secret"
    assert SECRET not in str(error)


def test_a_source_missing_a_required_option_fails_at_load() -> None:
    """Prime's thin events need the order API: refused at load, not with a 503 per webhook."""
    settings = parse_settings({"sources": {"prime": {"secret_env": "PRIME_SECRET"}}})
    with pytest.raises(ConfigError) as caught:
        resolve(settings, {"PRIME_SECRET": SECRET})
    assert caught.value.key == "sources.prime.username"
    settings = parse_settings(
        {"sources": {"prime": {"secret_env": "PRIME_SECRET", "username": "prime"}}}
    )
    with pytest.raises(ConfigError) as caught:
        resolve(settings, {"PRIME_SECRET": SECRET})
    assert caught.value.key == "sources.prime.api"
    settings = parse_settings(
        {
            "sources": {
                "prime": {
                    "secret_env": "PRIME_SECRET",
                    "username": "prime",
                    "api": {"client_id_env": "CID", "client_secret_env": "CSECRET"},
                }
            }
        }
    )
    with pytest.raises(ConfigError) as caught:
        resolve(settings, {"PRIME_SECRET": SECRET, "CID": "id"})
    assert caught.value.key == "sources.prime.api.client_secret_env"
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("value", [None, "", "short-token"])
def test_api_token_must_be_set_and_long_enough(value: str | None) -> None:
    settings = parse_settings(
        {"receiver": {"api_token_env": "API_TOKEN"}, "sources": {"shoplazza": {"secret_env": "S"}}}
    )
    env = {"S": "x"} if value is None else {"S": "x", "API_TOKEN": value}
    with pytest.raises(ConfigError) as caught:
        resolve(settings, env)
    assert caught.value.key == "receiver.api_token_env"
    assert "16+ characters" in caught.value.problem
    if value:
        assert value not in str(caught.value)


def test_api_is_off_unless_a_token_variable_is_named() -> None:
    settings = parse_settings({"sources": {"shoplazza": {"secret_env": "S"}}})
    assert resolve(settings, {"S": "x", "API_TOKEN": "t" * 20}).api_token is None
    named = parse_settings(
        {"receiver": {"api_token_env": "API_TOKEN"}, "sources": {"shoplazza": {"secret_env": "S"}}}
    )
    token = resolve(named, {"S": "x", "API_TOKEN": " " + "t" * 20 + " "}).api_token
    assert token is not None
    assert token.get_secret_value() == "t" * 20


def test_a_platform_option_the_platform_does_not_take_is_named() -> None:
    settings = parse_settings({"sources": {"shoplazza": {"secret_env": "S", "algorithm": "sha1"}}})
    with pytest.raises(ConfigError) as caught:
        resolve(settings, {"S": "x"})
    assert caught.value.key == "sources.shoplazza.algorithm"


def test_occ_options_are_checked_and_used() -> None:
    error = config_error({"sources": {"occ": {"secret_env": "S", "algorithm": "md5"}}})
    assert error.key == "sources.occ.algorithm"
    settings = parse_settings(
        {"sources": {"occ": {"secret_env": "S", "algorithm": "sha256", "key_encoding": "raw"}}}
    )
    handler = resolve(settings, {"S": "x"}).source_handlers[Source.OCC]
    assert (handler.algorithm, handler.key_encoding) == ("sha256", "raw")  # type: ignore[attr-defined]


def test_targets_and_routes_come_from_the_registry() -> None:
    error = config_error(
        {"sources": {"shoplazza": {"secret_env": "S"}}, "routes": {"shoplazza": ["ebay"]}}
    )
    assert error.key == "routes.shoplazza.0"
    assert "unknown target 'ebay'" in error.problem
    assert "cj, occ, prime, shoplazza" in error.problem
    error = config_error(
        {"sources": {"shoplazza": {"secret_env": "S"}}, "targets": {"cj": {"action_tracker_id": 1}}}
    )
    assert error.key == "targets.cj.enterprise_id"
    error = config_error({"sources": {"shoplazza": {"secret_env": "S"}}, "targets": {"amazon": {}}})
    assert error.key == "targets.amazon"
    settings = parse_settings(
        {
            "sources": {"shoplazza": {"secret_env": "S"}},
            "targets": {"prime": {"business_product_id": "bp", "order_by": "alias"}},
        }
    )
    assert settings.targets.prime.order_by == "alias"  # type: ignore[attr-defined]


def test_the_grace_period_needs_a_time_zone_and_ends_the_previous_secret() -> None:
    error = config_error(
        {
            "sources": {
                "shoplazza": {"secret_env": "S", "previous_secret_until": "2026-12-01T00:00:00"}
            }
        }
    )
    assert error.key == "sources.shoplazza.previous_secret_until"
    settings = parse_settings(
        {
            "sources": {
                "shoplazza": {
                    "secret_env": "S",
                    "previous_secret_env": "OLD",
                    "previous_secret_until": "2026-12-01T00:00:00+01:00",
                }
            }
        }
    )
    config = resolve(settings, {"S": "new", "OLD": "old"})
    before = datetime(2026, 11, 30, 22, 59, tzinfo=UTC)
    after = datetime(2026, 11, 30, 23, 0, tzinfo=UTC)
    assert [s.get_secret_value() for s in config.secrets_now(Source.SHOPLAZZA, before)] == [
        "new",
        "old",
    ]
    assert [s.get_secret_value() for s in config.secrets_now(Source.SHOPLAZZA, after)] == ["new"]


# --- one way to write a duration; the old spellings still read, and named -----------------------

CJ_SECTION = {
    "enterprise_id": "1234567",
    "action_tracker_id": 987654,
    "open_ended_locking": True,
    "order_id_from": "order_id",
}
NEW_SPELLING = """\
[broker]
confirm_timeout = "2500ms"
connect_timeout = "5s"
reconnect_interval = "200ms"
retry_after = "7s"
[receiver]
shutdown_timeout = "10s"
body_timeout = "30s"
lookup_timeout = "10s"
[sources.shoplazza]
secret_env = "SHOPLAZZA_SECRET"
[targets.cj]
enterprise_id = "1234567"
action_tracker_id = 987654
open_ended_locking = true
order_id_from = "order_id"
timeout = "10s"
reconcile_window = "24h"
[routes]
shoplazza = ["cj"]
[worker]
retry_delays = ["5s", "30s", "2m", "10m", "30m", "1h"]
retry_total = "1d"
drain_timeout = "10s"
lease_margin = "30s"
no_link_window = "1h"
[store]
echo_ttl = "7d"
[metrics]
queue_interval = "15s"
"""


def test_durations_are_written_with_a_unit(tmp_path: Path) -> None:
    """Durations such as 500ms, 10s, 24h or 7d are read as seconds; nothing is deprecated."""
    env = {"SHOPLAZZA_SECRET": SECRET, "CJ_ACCESS_TOKEN": "cj-token"}
    settings = load(write(tmp_path, NEW_SPELLING), env).settings
    assert settings.deprecations == ()
    assert (settings.broker.confirm_timeout, settings.broker.reconnect_interval) == (2.5, 0.2)
    assert settings.broker.retry_after == 7
    assert settings.receiver.body_timeout == 30.0
    assert settings.worker.retry_delays == (5.0, 30.0, 120.0, 600.0, 1800.0, 3600.0)
    assert (settings.worker.retry_total, settings.worker.no_link_window) == (86400.0, 3600.0)
    assert settings.store.echo_ttl == 7 * 86400.0
    assert settings.metrics.queue_interval == 15.0
    assert settings.targets.cj.timeout == 10.0  # type: ignore[attr-defined]


def test_the_old_spellings_still_read_the_same() -> None:
    """Bare numbers of seconds and the `_s`/`_days` keys give the same settings."""
    old = parse_settings(
        {
            **MINIMAL,
            "broker": {"confirm_timeout": 2.5, "retry_after": 7},
            "worker": {"retry_delays": [5, 30], "retry_total": 86400},
            "store": {"echo_ttl_days": 7},
            "targets": {"cj": {**CJ_SECTION, "timeout_s": 10, "reconcile_window": 86400}},
        }
    )
    new = parse_settings(
        {
            **MINIMAL,
            "broker": {"confirm_timeout": "2500ms", "retry_after": "7s"},
            "worker": {"retry_delays": ["5s", "30s"], "retry_total": "1d"},
            "store": {"echo_ttl": "7d"},
            "targets": {"cj": {**CJ_SECTION, "timeout": "10s", "reconcile_window": "24h"}},
        }
    )
    assert old.model_dump() == new.model_dump()
    assert new.deprecations == ()


def test_each_old_spelling_is_one_deprecation_line_naming_key_and_new_spelling() -> None:
    settings = parse_settings(
        {
            **MINIMAL,
            "broker": {"confirm_timeout": 2.5, "reconnect_interval": "1s"},
            "worker": {"retry_delays": [0.5, "1s", 30]},
            "store": {"echo_ttl_days": 2},
            "targets": {"cj": {**CJ_SECTION, "timeout_s": 10, "reconcile_grace": 3600}},
        }
    )
    assert settings.deprecations == (
        'deprecated: broker.confirm_timeout = 2.5: write confirm_timeout = "2500ms"',
        (
            "deprecated: worker.retry_delays = [0.5, '1s', 30]:"
            ' write retry_delays = ["500ms", "1s", "30s"]'
        ),
        'deprecated: store.echo_ttl_days = 2: write echo_ttl = "2d"',
        'deprecated: targets.cj.timeout_s = 10: write timeout = "10s"',
        'deprecated: targets.cj.reconcile_grace = 3600: write reconcile_grace = "1h"',
    )


@pytest.mark.parametrize(
    ("document", "key"),
    [
        ({**MINIMAL, "store": {"echo_ttl_days": 0}}, "store.echo_ttl_days"),
        ({**MINIMAL, "store": {"echo_ttl": "0s"}}, "store.echo_ttl"),
        ({**MINIMAL, "targets": {"cj": {**CJ_SECTION, "timeout_s": 0}}}, "targets.cj.timeout_s"),
        ({**MINIMAL, "targets": {"cj": {**CJ_SECTION, "timeout": "0s"}}}, "targets.cj.timeout"),
        ({**MINIMAL, "worker": {"retry_delays": ["5 min"]}}, "worker.retry_delays.0"),
        ({**MINIMAL, "broker": {"confirm_timeout": "1.5s"}}, "broker.confirm_timeout"),
        ({**MINIMAL, "broker": {"retry_after": "1500ms"}}, "broker.retry_after"),
    ],
)
def test_a_bad_duration_names_the_key_as_written(document: dict[str, object], key: str) -> None:
    assert config_error(document).key == key


def test_an_old_and_a_new_key_together_are_refused() -> None:
    error = config_error(
        {**MINIMAL, "targets": {"cj": {**CJ_SECTION, "timeout_s": 10, "timeout": "10s"}}}
    )
    assert error.key == "targets.cj"
    assert "timeout_s and timeout both given" in error.problem


def test_check_config_prints_the_deprecations_and_succeeds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path,
        "[broker]\nconfirm_timeout = 2\n[store]\necho_ttl_days = 7\n"
        '[sources.shoplazza]\nsecret_env = "SHOPLAZZA_SECRET"\n',
    )
    monkeypatch.setenv("SHOPLAZZA_SECRET", SECRET)
    monkeypatch.delenv("BRIDGE_CONFIG", raising=False)
    assert main(["check-config", "--config", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"configuration OK: {path}")
    assert [line for line in out.splitlines() if line.startswith("deprecated:")] == [
        'deprecated: broker.confirm_timeout = 2: write confirm_timeout = "2s"',
        'deprecated: store.echo_ttl_days = 7: write echo_ttl = "1w"',
    ]
    assert "echoes kept 7 days" in out
    assert err == ""


def test_reconciliation_is_a_capability_targets_declare() -> None:
    """`run` schedules reconciliation for targets whose registry line says so (CJ's)."""
    assert [name for name, spec in TARGETS.items() if spec.reconciles] == ["cj"]


def test_several_broker_nodes_are_each_checked_and_shown_masked() -> None:
    nodes = f"amqp://bridge:{PASSWORD}@rabbit-1:5672/,amqps://bridge:{PASSWORD}@rabbit-2/"
    config = resolve(parse_settings(MINIMAL), {"SHOPLAZZA_SECRET": SECRET, "AMQP_URL": nodes})
    assert config.amqp_url.get_secret_value() == nodes
    assert config.amqp_url_redacted == (
        "amqp://bridge:***@rabbit-1:5672/, amqps://bridge:***@rabbit-2/"
    )
    bad = f"amqp://bridge:{PASSWORD}@rabbit-1:5672/,http://rabbit-2/"
    with pytest.raises(ConfigError) as caught:
        resolve(parse_settings(MINIMAL), {"SHOPLAZZA_SECRET": SECRET, "AMQP_URL": bad})
    assert caught.value.key == "broker.url_env"
    assert_no_secret(str(caught.value))
