"""compose.yaml, without Docker: valid Compose, and everything it names exists and agrees.

The file is checked against the Compose Specification's JSON Schema (vendored in `tests/data/`,
as `docker compose config` checks it), then against the repository: the configuration it mounts
loads with the environment it gives, every environment variable that configuration names is
passed through, and its ports, paths and timeouts match the Dockerfile's and the config's.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from bridge.settings import parse_settings, resolve
from tests.harness import dockerfile

ROOT = Path(__file__).parent.parent
COMPOSE = ROOT / "compose.yaml"
SCHEMA = Path(__file__).parent / "data" / "compose-spec.json"
SCHEMA_SHA256 = "46b7d35f19dd93a05f8fea530291bf84d881c1791ec167ecf0e6fb94e639d496"

_VARIABLE = re.compile(r"\$(?:\$|\{(?P<braced>[^}]+)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: `$$`, `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`,
    `${VAR:?error}`, `${VAR?error}` (a required variable missing fails the test).
    """  # noqa: D205

    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        if bare := match["bare"]:
            return env.get(bare, "")
        expression = match["braced"]
        name, operator, rest = re.match(r"([A-Za-z_]\w*)(:?[-?+]?)(.*)", expression).groups()  # type: ignore[union-attr]
        current = env.get(name)
        empty = current is None or (operator.startswith(":") and current == "")
        if operator in (":-", "-"):
            return rest if empty else str(current)
        if operator in (":?", "?"):
            assert not empty, f"compose requires {name}: {rest}"
        if operator in (":+", "+"):
            return "" if empty else rest
        return current or ""

    return _VARIABLE.sub(one, value)


def compose() -> dict[str, Any]:
    """compose.yaml as YAML data (before interpolation)."""
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def service_environment(name: str, env: Mapping[str, str]) -> dict[str, str]:
    """A service's `environment`, interpolated against `env` (the user's shell)."""
    raw = compose()["services"][name].get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {key: interpolate(str(value or ""), env) for key, value in raw.items()}


def config_mount(service: Mapping[str, Any]) -> tuple[Path, str]:
    """The bind mount that gives the bridge its config: (host file, path in the container)."""
    command = dockerfile.exec_form(dockerfile.parse().final.last("CMD"))
    target = command[command.index("--config") + 1]
    for volume in service.get("volumes", []):
        if isinstance(volume, dict) and volume.get("target") == target:
            assert volume["type"] == "bind", volume
            return (COMPOSE.parent / volume["source"]).resolve(), target
        if isinstance(volume, str) and volume.split(":")[1:2] == [target]:
            return (COMPOSE.parent / volume.split(":")[0]).resolve(), target
    pytest.fail(f"compose mounts nothing at the image's --config path {target}")


def env_names(document: Mapping[str, Any], where: str = "") -> Iterator[tuple[str, str]]:
    """Every `(key, VARIABLE)` of a config document whose key names an environment variable."""
    for key, value in document.items():
        if isinstance(value, Mapping):
            yield from env_names(value, f"{where}{key}.")
        elif key.endswith("_env") and isinstance(value, str):
            yield f"{where}{key}", value


def port_mappings(service: Mapping[str, Any]) -> list[tuple[str, int, int]]:
    """`(host ip, host port, container port)` of a service's short-syntax `ports`."""
    result = []
    for entry in service.get("ports", []):
        *ip, published, target = str(entry).split(":")
        result.append((ip[0] if ip else "0.0.0.0", int(published), int(target)))  # noqa: S104
    return result


def seconds(duration: str) -> float:
    """A Compose duration such as `15s`, `1m30s`, `500ms`."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts, f"not a duration: {duration}"
    assert "".join(n + u for n, u in parts) == duration, f"not a duration: {duration}"
    return sum(float(n) * units[u] for n, u in parts)


def test_vendored_schema_is_the_recorded_file() -> None:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(compose())]
    assert not errors, "\n".join(errors)


def test_the_schema_check_would_catch_a_mistake() -> None:
    """The vendored schema refuses what `docker compose` refuses (it is not a schema of `{}`)."""
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    broken = compose()
    broken["services"]["bridge"]["stop_grace_periode"] = "15s"
    broken["services"]["bridge"]["depends_on"] = {"rabbitmq": {"condition": "healthy"}}
    assert len(list(validator.iter_errors(broken))) == 2


def test_interpolation_follows_compose() -> None:
    assert interpolate("${A:-x}", {}) == "x"
    assert interpolate("${A:-x}", {"A": ""}) == "x"
    assert interpolate("${A-x}", {"A": ""}) == ""
    assert interpolate("$$A ${A}", {"A": "1"}) == "$A 1"
    with pytest.raises(AssertionError, match="compose requires A"):
        interpolate("${A:?set it}", {})


def test_every_variable_is_interpolated_with_a_default() -> None:
    """`docker compose up` with nothing exported starts (no unset variable, no `:?` failure)."""
    for name in compose()["services"]:
        for key, value in service_environment(name, {}).items():
            assert "$" not in value, f"{name}.{key} = {value}"


def test_the_mounted_config_exists_and_loads_with_the_compose_environment() -> None:
    """`cancel-bridge run` would start: the file is there, valid, and its secrets are given."""
    service = compose()["services"]["bridge"]
    source, _ = config_mount(service)
    assert source.is_file(), f"compose mounts {source}, which does not exist"
    assert source.is_relative_to(ROOT), source
    document = tomllib.loads(source.read_text())
    config = resolve(parse_settings(document), service_environment("bridge", {}))
    assert config.settings.sources, "the compose configuration accepts no webhooks"


def test_every_variable_the_config_names_is_passed_through() -> None:
    """An environment variable the mounted config reads reaches the container, and compose
    passes nothing that the config (or one of its commented-out keys) does not name.
    """  # noqa: D205
    service = compose()["services"]["bridge"]
    source, _ = config_mount(service)
    environment = service_environment("bridge", {})
    named = dict(env_names(tomllib.loads(source.read_text())))
    missing = {key: name for key, name in named.items() if name not in environment}
    assert not missing, f"the config names variables compose does not pass: {missing}"
    text = source.read_text()
    unnamed = [name for name in environment if f'"{name}"' not in text]
    assert not unnamed, f"compose passes variables the config never names: {unnamed}"


def test_the_broker_url_names_the_compose_broker() -> None:
    services = compose()["services"]
    url = urlsplit(service_environment("bridge", {})["AMQP_URL"])
    assert url.scheme == "amqp"
    assert url.hostname in services, f"AMQP_URL host {url.hostname} is no compose service"
    broker = services[url.hostname]
    assert str(broker["image"]).startswith("rabbitmq:")
    assert (url.port or 5672) == 5672
    depends = services["bridge"]["depends_on"]
    assert url.hostname in depends
    if depends[url.hostname].get("condition") == "service_healthy":
        assert "healthcheck" in broker, "service_healthy needs a healthcheck on the broker"


def test_ports_agree_across_compose_config_and_dockerfile() -> None:
    """The published port is the one the receiver listens on, the image exposes and checks."""
    service = compose()["services"]["bridge"]
    source, _ = config_mount(service)
    receiver = tomllib.loads(source.read_text())["receiver"]
    final = dockerfile.parse().final
    assert receiver["host"] == "0.0.0.0", "in a container 127.0.0.1 is unreachable from outside"  # noqa: S104
    port = int(receiver["port"])
    assert [int(p.split("/")[0]) for p in final.all("EXPOSE")] == [port]
    _, check = dockerfile.healthcheck(final)
    assert f"127.0.0.1:{port}/" in " ".join(check)
    mappings = port_mappings(service)
    assert [target for _, _, target in mappings] == [port]
    for services_ports in (port_mappings(s) for s in compose()["services"].values()):
        for ip, _, _ in services_ports:
            assert ip == "127.0.0.1", "publish on the loopback interface only"


def test_the_state_volume_is_the_images_working_directory() -> None:
    """The SQLite store (a relative path) lands in the volume, which outlives the container."""
    data = compose()
    service = data["services"]["bridge"]
    source, _ = config_mount(service)
    store = tomllib.loads(source.read_text()).get("store", {})
    assert not Path(store.get("path", "cancel-bridge.db")).is_absolute()
    final = dockerfile.parse().final
    workdir = final.workdir()
    assert final.all("VOLUME") == [workdir]
    named = [
        v.split(":")
        for v in service["volumes"]
        if isinstance(v, str) and not v.startswith((".", "/"))
    ]
    assert [target for _, target, *_ in named] == [workdir]
    assert all(volume in data["volumes"] for volume, *_ in named)


def test_the_grace_period_outlasts_the_shutdown_timeout() -> None:
    """Docker's SIGKILL comes after the bridge has drained in-flight requests."""
    service = compose()["services"]["bridge"]
    source, _ = config_mount(service)
    receiver = parse_settings(tomllib.loads(source.read_text())).receiver
    assert seconds(service["stop_grace_period"]) > receiver.shutdown_timeout


def test_the_build_context_holds_the_dockerfile() -> None:
    build = compose()["services"]["bridge"]["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    name = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (COMPOSE.parent / context / name).resolve() == dockerfile.DOCKERFILE.resolve()


def test_the_image_runs_as_its_unprivileged_user() -> None:
    """No `user:` override in compose; the image's USER is the numeric uid its useradd makes."""
    service = compose()["services"]["bridge"]
    assert "user" not in service
    final = dockerfile.parse().final
    uid, _, gid = final.last("USER").partition(":")
    setup = " ".join(final.all("RUN"))
    assert f"--uid {uid}" in setup
    assert f"--gid {gid}" in setup
    assert f"chown {uid}:{gid} {final.workdir()}" in setup
