"""The `cancel-bridge` command line: schema, check-config, and refusing to start."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from bridge.cli.main import main
from contracts.schema import SCHEMA_ID, event_json_schema
from tests.harness.stores import scratch_store

ROOT = Path(__file__).resolve().parents[1]
SECRET_ENV = "CB_TEST_SHOPLAZZA_SECRET"
PREVIOUS_ENV = "CB_TEST_SHOPLAZZA_PREVIOUS"
SECRET = "shpss_cli_Pq9Wz4Mx7"
PREVIOUS = "shpss_cli_old_Lk2Jh6Ty3"
PASSWORD = "amqp-cli-pw-Vc8Bn5"
AMQP_URL = f"amqp://bridge:{PASSWORD}@rabbit.internal:5672/orders"
SUBPROCESS_TIMEOUT = 30.0


def config_text(port: int = 8080) -> str:
    return (
        f'[store]\npath = "{scratch_store()}"\n'
        f'[receiver]\nhost = "127.0.0.1"\nport = {port}\n\n'
        f'[sources.shoplazza]\nsecret_env = "{SECRET_ENV}"\n'
        f'previous_secret_env = "{PREVIOUS_ENV}"\n'
    )


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(config_text(), encoding="utf-8")
    return path


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets and broker URL planted in the process environment; no default config path."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setenv(PREVIOUS_ENV, PREVIOUS)
    monkeypatch.setenv("AMQP_URL", AMQP_URL)
    monkeypatch.delenv("BRIDGE_CONFIG", raising=False)


def assert_no_secret(text: str) -> None:
    for value in (SECRET, PREVIOUS, PASSWORD):
        assert value not in text


def subprocess_env(**extra: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k != "BRIDGE_CONFIG"}
    return {**environ, SECRET_ENV: SECRET, PREVIOUS_ENV: PREVIOUS, **extra}


def run_module(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed argv: this interpreter running our own module
        [sys.executable, "-m", "bridge", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )


def test_schema_prints_the_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    out, err = capsys.readouterr()
    printed = orjson.loads(out)
    assert printed == event_json_schema()
    assert printed["$id"] == SCHEMA_ID
    assert err == ""


@pytest.mark.usefixtures("env")
def test_check_config_succeeds_without_printing_secrets(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check-config", "--config", str(config_path)]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"configuration OK: {config_path}")
    assert "amqp://bridge:***@rabbit.internal:5672/orders" in out
    assert SECRET_ENV in out  # names the variable...
    assert_no_secret(out + err)  # ...never its value
    assert err == ""


@pytest.mark.usefixtures("env")
def test_check_config_warns_while_any_occ_site_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`x-ccsite` is not signed either: without `sites`, check-config says so (exit 0)."""
    monkeypatch.setenv("OCC_WEBHOOK_SECRET", "b2NjLWNsaS1zZWNyZXQ=")
    config = tmp_path / "occ.toml"
    config.write_text('[sources.occ]\nsecret_env = "OCC_WEBHOOK_SECRET"\n', encoding="utf-8")
    assert main(["check-config", "--config", str(config)]) == 0
    warned = [x for x in capsys.readouterr().out.splitlines() if "sources.occ.sites" in x]
    assert len(warned) == 1
    assert warned[0].startswith("warning: sources.occ.sites is not set")
    with config.open("a") as more:
        more.write('sites = ["siteUS"]\n')
    assert main(["check-config", "--config", str(config)]) == 0
    assert "sources.occ.sites" not in capsys.readouterr().out


@pytest.mark.usefixtures("env")
def test_check_config_warns_while_any_shoplazza_shop_is_taken(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shop header is not signed: without `shops`, check-config says so (exit 0)."""
    assert main(["check-config", "--config", str(config_path)]) == 0
    warned = [x for x in capsys.readouterr().out.splitlines() if "sources.shoplazza.shops" in x]
    assert len(warned) == 1
    assert warned[0].startswith("warning: sources.shoplazza.shops is not set")
    with config_path.open("a") as config:
        config.write('shops = ["demo.myshoplaza.com"]\n')
    assert main(["check-config", "--config", str(config_path)]) == 0
    assert "sources.shoplazza.shops" not in capsys.readouterr().out


@pytest.mark.usefixtures("env")
def test_check_config_reads_the_path_from_bridge_config(
    config_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BRIDGE_CONFIG", str(config_path))
    assert main(["check-config"]) == 0
    assert str(config_path) in capsys.readouterr().out


@pytest.mark.usefixtures("env")
def test_no_config_is_one_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1
    assert "--config" in err
    assert "BRIDGE_CONFIG" in err


@pytest.mark.usefixtures("env")
def test_absent_config_file_is_one_line_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere.toml"
    assert main(["check-config", "--config", str(missing)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1
    assert str(missing) in err
    assert "no such file" in err


@pytest.mark.usefixtures("env")
def test_missing_secret_exits_1(
    config_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(SECRET_ENV)
    assert main(["check-config", "--config", str(config_path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1
    assert "sources.shoplazza.secret_env" in err
    assert SECRET_ENV in err
    assert_no_secret(err)


@pytest.mark.usefixtures("env")
def test_run_refuses_a_bad_config_before_starting(
    config_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AMQP_URL", f"https://bridge:{PASSWORD}@rabbit.internal/")
    assert main(["run", "--config", str(config_path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1
    assert "broker.url_env" in err
    assert_no_secret(err)


def test_module_entry_point_runs_check_config(config_path: Path) -> None:
    """`python -m bridge` is the console script."""
    result = run_module(
        "check-config", "--config", str(config_path), env=subprocess_env(AMQP_URL=AMQP_URL)
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("configuration OK")
    assert_no_secret(result.stdout + result.stderr)


def test_run_fails_fast_when_the_port_is_taken(tmp_path: Path) -> None:
    """A taken port is one line on stderr and a non-zero exit, not a hang or a traceback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        path = tmp_path / "bridge.toml"
        path.write_text(config_text(port), encoding="utf-8")
        amqp_url = os.environ.get("AMQP_URL") or "amqp://guest:guest@127.0.0.1:5672/"
        result = run_module("run", "--config", str(path), env=subprocess_env(AMQP_URL=amqp_url))
    assert result.returncode != 0
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot listen" in lines[0]
    assert str(port) in lines[0]
    assert_no_secret(result.stdout + result.stderr)


def test_check_config_describes_targets_without_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "targets.toml"
    path.write_text(
        '[sources.shoplazza]\nsecret_env = "SHOPLAZZA_CLIENT_SECRET"\n'
        '[targets.cj]\nenterprise_id = "1234567"\naction_tracker_id = 987654\n'
        'open_ended_locking = true\norder_id_from = "order_id"\n'
        '[routes]\nshoplazza = ["cj"]\n'
    )
    monkeypatch.setenv("SHOPLAZZA_CLIENT_SECRET", "shoplazza-secret-value")
    monkeypatch.setenv("CJ_ACCESS_TOKEN", "cj-token-value-zz9")
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "queue cancel-bridge.cj <- order.cancelled.shoplazza" in out
    assert "token from CJ_ACCESS_TOKEN (set)" in out
    assert "cj-token-value-zz9" not in out
    assert "shoplazza-secret-value" not in out


@pytest.mark.parametrize(
    ("left_out", "explains"),
    [
        ("open_ended_locking", ("open-ended locking", "status Declined", "account manager")),
        ("order_id_from", ("CJ tracking tag", '"order_number"')),
    ],
)
def test_a_cj_target_without_a_tracker_fact_is_refused_with_what_it_means(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    left_out: str,
    explains: tuple[str, ...],
) -> None:
    """No default for facts only the tracker's setup knows: one line says what to set."""
    keys = {"open_ended_locking": "true", "order_id_from": '"order_id"'}
    del keys[left_out]
    path = tmp_path / "cj.toml"
    path.write_text(
        '[sources.shoplazza]\nsecret_env = "SHOPLAZZA_CLIENT_SECRET"\n'
        '[targets.cj]\nenterprise_id = "1234567"\naction_tracker_id = 987654\n'
        + "".join(f"{key} = {value}\n" for key, value in keys.items())
        + '[routes]\nshoplazza = ["cj"]\n'
    )
    monkeypatch.setenv("SHOPLAZZA_CLIENT_SECRET", "shoplazza-secret-value")
    monkeypatch.setenv("CJ_ACCESS_TOKEN", "cj-token-value-zz9")
    assert main(["check-config", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert f"targets.cj.{left_out}: required, no default" in err
    for words in explains:
        assert words in err


def test_route_to_an_unconfigured_target_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "routes.toml"
    path.write_text('[routes]\nshoplazza = ["cj"]\n')
    monkeypatch.setenv("CJ_ACCESS_TOKEN", "x")
    assert main(["check-config", "--config", str(path)]) == 1
    assert "routes.shoplazza" in capsys.readouterr().err


PLATFORM_TARGETS = """\
[sources.shoplazza]
secret_env = "S"
[sources.occ]
secret_env = "O"
algorithm = "sha256"
[targets.shoplazza]
default_shop = "demo.myshoplaza.com"
[targets.shoplazza.shops."demo.myshoplaza.com"]
token_env = "SL_TOKEN"
[targets.occ]
base_url = "https://admin.example.com"
default_site = "siteUS"
[routes]
shoplazza = ["occ"]
occ = ["shoplazza"]
"""


def test_check_config_describes_platform_targets_and_flags_missing_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "platforms.toml"
    path.write_text(PLATFORM_TARGETS)
    secrets = {
        "S": "s-secret-1",
        "O": "o-secret-2",
        "SL_TOKEN": "sl-token-3",
        "OCC_APP_KEY": "occ-4",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "occ: POST /webhooks/occ" in out
    assert "each signature header's own algorithm" in out
    assert "base64 key" in out
    assert "queue cancel-bridge.occ <- order.cancelled.shoplazza" in out
    assert "queue cancel-bridge.shoplazza <- order.cancelled.occ" in out
    assert "default store demo.myshoplaza.com; at most 2 calls/s per store" in out
    assert "logs in with the key from OCC_APP_KEY (set)" in out
    assert not any(value in out for value in secrets.values())

    monkeypatch.delenv("OCC_APP_KEY")
    assert main(["check-config", "--config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "targets.occ.app_key_env: environment variable OCC_APP_KEY is not set" in err

    monkeypatch.setenv("OCC_APP_KEY", secrets["OCC_APP_KEY"])
    path.write_text(PLATFORM_TARGETS.replace('occ = ["shoplazza"]', 'occ = ["occ"]'))
    assert main(["check-config", "--config", str(path)]) == 1
    assert "routes.occ: a source is never routed to itself" in capsys.readouterr().err


@pytest.mark.usefixtures("env")
def test_backstop_and_subscriptions_say_what_they_need(
    config_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No store access, no webhook_url, a window of nothing: a clear line, no traceback."""
    path = str(config_path)
    assert main(["backstop", "--source", "shoplazza", "--config", path]) == 1
    assert "[targets.shoplazza] shops" in capsys.readouterr().err
    assert main(["backstop", "--source", "shoplazza", "--since", "0s", "--config", path]) == 2
    assert "--since must be more than 0" in capsys.readouterr().err
    assert main(["subscriptions", "check", "--source", "shoplazza", "--config", path]) == 2
    assert "webhook_url" in capsys.readouterr().err
