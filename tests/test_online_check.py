"""`check-config --online` against the strict fakes: harmless calls, one verdict per platform."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bridge.cli.online import Verdict, check_online
from bridge.demo.fake_cj import TOKEN as CJ_TOKEN
from bridge.demo.fake_cj import FakeCJ
from bridge.demo.fake_platform import serve
from bridge.settings import Config, parse_settings, resolve
from tests.fakes.occ import FakeOCC
from tests.fakes.prime import FakePrime, PrimeOrder
from tests.fakes.shoplazza import FakeShoplazza

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
PRIME_ID, PRIME_SECRET = "prime-client", "prime-secret-value-77"
ENV = {
    "SHOPLAZZA_CLIENT_SECRET": "shoplazza-secret",
    "PRIME_CLIENT_ID": PRIME_ID,
    "PRIME_CLIENT_SECRET": PRIME_SECRET,
    "CJ_ACCESS_TOKEN": CJ_TOKEN,
}
ORDER = "322-KG36-AAAAA"


@pytest.fixture
async def prime() -> AsyncIterator[FakePrime]:
    fake = FakePrime(PRIME_ID, PRIME_SECRET, orders={ORDER: PrimeOrder()})
    await fake.start()
    yield fake
    await fake.stop()


def cj_section(fake: FakeCJ, **extra: Any) -> dict[str, Any]:  # noqa: ANN401 - TOML values
    return {
        "url": fake.url,
        "commissions_url": fake.commissions_url,
        "enterprise_id": "1234567",
        "action_tracker_id": 987654,
        "open_ended_locking": True,
        "order_id_from": "order_id",
        **extra,
    }


def prime_section(fake: FakePrime, **extra: Any) -> dict[str, Any]:  # noqa: ANN401 - TOML values
    return {
        "api_url": f"{fake.url}/graphql",
        "token_url": f"{fake.url}/token",
        "business_product_id": "bp-123",
        **extra,
    }


def config_with(targets: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    source = "occ" if "shoplazza" in targets else "shoplazza"  # never routed to itself
    document = {
        "sources": {
            "shoplazza": {"secret_env": "SHOPLAZZA_CLIENT_SECRET"},
            "occ": {"secret_env": "SHOPLAZZA_CLIENT_SECRET"},
        },
        "targets": targets,
        "routes": {source: sorted(targets)},
    }
    return resolve(parse_settings(document), env or ENV)


async def verdict(config: Config, target: str) -> Verdict:
    (found,) = await check_online(config, NOW, [target])
    return found


async def test_prime_token_and_both_order_queries_hold(prime: FakePrime) -> None:
    config = config_with({"prime": prime_section(prime, test_order_id=ORDER)})
    found = await verdict(config, "prime")
    assert found.ok, found.detail
    assert found.detail.count(f"order {ORDER} read") == 2
    assert "token endpoint answered" in found.detail
    assert prime.refused == []
    assert prime.cancels == []  # nothing is cancelled
    assert prime.orders[ORDER].state == "PENDING"


async def test_prime_without_a_test_order_checks_the_token_only(prime: FakePrime) -> None:
    found = await verdict(config_with({"prime": prime_section(prime)}), "prime")
    assert (found.ok, found.detail) == (True, "token endpoint answered")
    assert prime.token_requests == 1


async def test_prime_credentials_refused_is_a_failed_line_without_the_secret(
    prime: FakePrime,
) -> None:
    env = {**ENV, "PRIME_CLIENT_SECRET": "not-the-secret-9"}
    found = await verdict(config_with({"prime": prime_section(prime)}, env), "prime")
    assert not found.ok
    assert found.detail.startswith("token: ")
    assert "401" in found.detail
    assert "not-the-secret-9" not in found.line()
    assert "FAILED" in found.line()


async def test_prime_token_sent_the_other_way_is_refused(prime: FakePrime) -> None:
    """The fake takes form fields only: Basic (the default) fails, `form` holds."""
    prime.token_client_auth = "form"
    basic = await verdict(config_with({"prime": prime_section(prime)}), "prime")
    assert not basic.ok
    form = await verdict(
        config_with({"prime": prime_section(prime, token_client_auth="form")}), "prime"
    )
    assert form.ok, form.detail


async def test_prime_unknown_test_order_fails_naming_prime_s_error(prime: FakePrime) -> None:
    config = config_with({"prime": prime_section(prime, test_order_id="322-NOPE")})
    found = await verdict(config, "prime")
    assert not found.ok
    assert "ResourceNotFoundError" in found.detail
    assert prime.refused == []  # the query itself was valid


async def test_prime_on_api_version_2024_04_01(prime: FakePrime) -> None:
    config = config_with(
        {"prime": prime_section(prime, test_order_id=ORDER, api_version="2024-04-01")}
    )
    found = await verdict(config, "prime")
    assert found.ok, found.detail
    assert prime.refused == []


async def test_the_command_prints_a_line_per_platform_and_exits_1_on_a_failure(
    prime: FakePrime, tmp_path: Path
) -> None:
    path = tmp_path / "online.toml"
    path.write_text(
        '[sources.shoplazza]\nsecret_env = "SHOPLAZZA_CLIENT_SECRET"\n'
        f'[targets.prime]\napi_url = "{prime.url}/graphql"\ntoken_url = "{prime.url}/token"\n'
        f'business_product_id = "bp-123"\ntest_order_id = "{ORDER}"\n'
        '[routes]\nshoplazza = ["prime"]\n'
    )

    async def run(env: dict[str, str]) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge",
            "check-config",
            "--online",
            "--config",
            str(path),
            env={"PATH": "/usr/bin:/bin", **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate()
        assert process.returncode is not None
        return process.returncode, out.decode()

    status, out = await run(ENV)
    assert status == 0, out
    assert [line for line in out.splitlines() if line.startswith("online:")] == [
        f"online: prime      ok     token endpoint answered; order {ORDER} read; order {ORDER} read"
    ]
    status, out = await run({**ENV, "PRIME_CLIENT_SECRET": "wrong-secret-1234"})
    assert status == 1, out
    assert "online: prime      FAILED token: " in out
    assert "wrong-secret-1234" not in out
    assert PRIME_SECRET not in out


async def test_cj_documents_hold_against_the_introspected_schema(cj: FakeCJ) -> None:
    found = await verdict(config_with({"cj": cj_section(cj)}), "cj")
    assert (found.ok, found.detail) == (True, "cj tracking api schema read")
    assert cj.calls == []  # validated against the schema only: nothing cancelled
    assert cj.refused == []


async def test_a_correction_reason_outside_cj_s_enum_fails_before_go_live(cj: FakeCJ) -> None:
    """The seed's RETURNED is not in the live enum: the line says so, naming the value."""
    config = config_with({"cj": cj_section(cj, reasons={"fraud": "RETURNED"})})
    found = await verdict(config, "cj")
    assert not found.ok
    assert "ValidationError" in found.detail
    assert "RETURNED" in found.detail
    assert cj.calls == []


async def test_cj_commission_read_checks_the_token(cj: FakeCJ) -> None:
    section = cj_section(cj, advertiser_ids=["4567890"])
    found = await verdict(config_with({"cj": section}), "cj")
    assert found.ok, found.detail
    assert "commission records read (0 in the last hour)" in found.detail
    wrong = await verdict(
        config_with({"cj": section}, {**ENV, "CJ_ACCESS_TOKEN": "nope-nope"}), "cj"
    )
    assert not wrong.ok
    assert "credentials refused" in wrong.detail
    assert "nope-nope" not in wrong.line()


SHOP = "demo.myshoplaza.com"


async def test_shoplazza_each_store_answers_an_authenticated_read() -> None:
    fake = FakeShoplazza(tokens={SHOP: "store-token-1"}, orders={(SHOP, "1001"): "opened"})
    await fake.start()
    try:
        section = {"shops": {SHOP: {"token_env": "SL_TOKEN", "base_url": f"{fake.url}/{SHOP}"}}}
        good = await verdict(
            config_with({"shoplazza": section}, {**ENV, "SL_TOKEN": "store-token-1"}), "shoplazza"
        )
        bad = await verdict(
            config_with({"shoplazza": section}, {**ENV, "SL_TOKEN": "stale-token-2"}), "shoplazza"
        )
    finally:
        await fake.stop()
    assert (good.ok, good.detail) == (True, f"{SHOP}: orders read")
    assert not bad.ok
    assert "credentials refused (HTTP 401)" in bad.detail
    assert "stale-token-2" not in bad.line()
    assert fake.cancels == []
    assert fake.orders[(SHOP, "1001")] == "opened"


async def test_occ_login_and_every_reason_id_in_use_is_active() -> None:
    fake = FakeOCC(app_key="occ-app-key-1", orders={("siteUS", "o30413"): "SUBMITTED"})
    await fake.start()
    try:
        section = {"base_url": fake.url, "default_site": "siteUS"}
        env = {**ENV, "OCC_APP_KEY": "occ-app-key-1"}
        good = await verdict(config_with({"occ": section}, env), "occ")
        fake.inactive_reasons.add("paymentNotReceived")
        inactive = await verdict(config_with({"occ": section}, env), "occ")
        unknown = await verdict(
            config_with({"occ": {**section, "reasons": {"fraud": "suspectedFraud"}}}, env), "occ"
        )
        refused = await verdict(
            config_with({"occ": section}, {**ENV, "OCC_APP_KEY": "old-key-9"}), "occ"
        )
    finally:
        await fake.stop()
    assert good.ok, good.detail
    assert good.detail == (
        "token endpoint answered; site siteUS: the 3 cancel reason ids in use are active"
    )
    assert not inactive.ok
    assert "not active at site siteUS: paymentNotReceived" in inactive.detail
    assert not unknown.ok
    assert "suspectedFraud" in unknown.detail
    assert not refused.ok
    assert refused.detail.startswith("token: ")
    assert "old-key-9" not in refused.line()
    assert fake.cancels == []


async def test_a_prime_source_s_api_credentials_are_checked_too(prime: FakePrime) -> None:
    """Thin Prime webhooks are completed with the source's own API credentials: its line."""

    def config(secret: str) -> Config:
        document = {
            "sources": {
                "prime": {
                    "secret_env": "PRIME_WEBHOOK_SECRET",
                    "username": "prime-webhooks",
                    "api": {
                        "client_id_env": "PRIME_CLIENT_ID",
                        "client_secret_env": "PRIME_CLIENT_SECRET",
                        "api_url": f"{prime.url}/graphql",
                        "token_url": f"{prime.url}/token",
                    },
                }
            }
        }
        env = {**ENV, "PRIME_WEBHOOK_SECRET": "hook-secret", "PRIME_CLIENT_SECRET": secret}
        return resolve(parse_settings(document), env)

    assert [v.line() for v in await check_online(config(PRIME_SECRET), NOW)] == [
        "online: prime (source) ok     token endpoint answered"
    ]
    (refused,) = await check_online(config("rotated-away-3"), NOW)
    assert (refused.platform, refused.ok) == ("prime (source)", False)
    assert "refused the credentials" in refused.detail


async def test_an_introspected_schema_graphql_core_finds_invalid_is_a_failed_line(
    cj: FakeCJ,
) -> None:
    """A live schema with a type of no fields: a FAILED line, not a traceback."""
    broken = {
        "data": {
            "__schema": {
                "queryType": {"name": "Query"},
                "mutationType": None,
                "subscriptionType": None,
                "types": [
                    {"kind": "OBJECT", "name": "Query", "fields": [], "interfaces": []},
                    {"kind": "SCALAR", "name": "String"},
                    {"kind": "SCALAR", "name": "Boolean"},
                ],
                "directives": [],
            }
        }
    }

    async def introspection(_: web.Request) -> web.Response:
        return web.json_response(broken)

    app = web.Application()
    app.router.add_post("/graphql", introspection)
    runner, url = await serve(app)
    try:
        found = await verdict(config_with({"cj": cj_section(cj, url=f"{url}/graphql")}), "cj")
    finally:
        await runner.cleanup()
    assert not found.ok
    assert "the introspected schema is not valid" in found.detail
