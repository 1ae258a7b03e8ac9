"""Issue 17's hardening on the whole receiver (`create_app`, a real broker and store).

What `create_app` installs: `/api/*`, `/metrics` and the console judge tokens under one backoff
per secret and client, counted in `cancel_bridge_auth_failures`; webhooks are never throttled;
every answer says `Server: cancel-bridge`; signing out ends the session.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient
from pydantic import SecretStr

from bridge.metrics import AUTH_CHECKS, AUTH_OUTCOMES
from bridge.settings import Config
from bridge.web.console.auth import SESSION_COOKIE
from bridge.web.hardening import HSTS, SERVER
from tests.harness.receiver import ClientFactory, make_config, shoplazza_webhook, started

Client = TestClient[Any, Any]
API_TOKEN = "api-token-for-hardening-0123456789abcdef"
METRICS_TOKEN = "metrics-token-for-hardening-0123456789ab"
API = {"Authorization": f"Bearer {API_TOKEN}"}
METRICS = {"Authorization": f"Bearer {METRICS_TOKEN}"}
WRONG = {"Authorization": "Bearer wrong-token-0123456789abcdef"}
ORDER = "/api/orders/shoplazza/no-such-order"


@pytest.fixture
def config(amqp_url: str) -> Config:
    return replace(
        make_config(amqp_url),
        api_token=SecretStr(API_TOKEN),
        metrics_token=SecretStr(METRICS_TOKEN),
    )


@pytest.fixture
async def bridge(aiohttp_client: ClientFactory, config: Config) -> Client:
    return await started(aiohttp_client, config)


async def auth_failures(bridge: Client) -> dict[tuple[str, str], float]:
    """`cancel_bridge_auth_failures_total` by check and outcome, read from `/metrics`."""
    response = await bridge.get("/metrics", headers=METRICS)
    assert response.status == 200
    pattern = re.compile(
        r'^cancel_bridge_auth_failures_total\{check="(\w+)",outcome="(\w+)"\} (\S+)$', re.MULTILINE
    )
    return {
        (check, outcome): float(value)
        for check, outcome, value in pattern.findall(await response.text())
    }


async def test_the_api_backs_off_after_ten_wrong_tokens(bridge: Client) -> None:
    """The eleventh request is 429 too_many_attempts with Retry-After, the right token unheard."""
    before = await auth_failures(bridge)
    assert set(before) == {(check, outcome) for check in AUTH_CHECKS for outcome in AUTH_OUTCOMES}
    for _ in range(10):
        response = await bridge.get(ORDER, headers=WRONG)
        assert response.status == 401
    refused = await bridge.get(ORDER, headers=API)
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "1"
    answer = orjson.loads(await refused.read())
    assert answer["error"] == "too_many_attempts"
    assert answer["detail"] == "too many wrong credentials from your address: try again in 1 s"
    assert (await bridge.put("/api/links", data=b"[]", headers=API)).status == 429
    after = await auth_failures(bridge)
    assert after["api", "wrong"] - before["api", "wrong"] == 10
    assert after["api", "throttled"] - before["api", "throttled"] == 2
    console = await bridge.get("/console/overview.json", headers=API)
    assert console.status == 429  # the console's bearer check: the same token, the same count
    no_header = await bridge.get(ORDER)
    assert no_header.status == 401  # no attempt: not throttled, not counted
    assert (await auth_failures(bridge))["api", "wrong"] == after["api", "wrong"]


async def test_the_metrics_token_backs_off_on_its_own_count(bridge: Client) -> None:
    """Another secret, another count: guessing one neither blocks nor resets the other."""
    for _ in range(10):
        assert (await bridge.get("/metrics", headers=WRONG)).status == 401
    refused = await bridge.get("/metrics", headers=METRICS)
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "1"
    assert orjson.loads(await refused.read())["error"] == "too_many_attempts"
    assert (await bridge.get(ORDER, headers=API)).status == 404  # the API token is still heard


async def test_webhook_signatures_are_never_throttled(bridge: Client) -> None:
    """A platform retrying badly signed deliveries is refused 401 each time, never 429."""
    for _ in range(30):
        hook = shoplazza_webhook(secret="not-the-secret-0000")  # a wrong one
        response = await bridge.post("/webhooks/shoplazza", data=hook.body, headers=hook.headers)
        assert response.status == 401
    for _ in range(10):
        await bridge.get(ORDER, headers=WRONG)
    assert (await bridge.get(ORDER, headers=API)).status == 429
    hook = shoplazza_webhook()  # same client, throttled on the API: webhooks still taken
    response = await bridge.post("/webhooks/shoplazza", data=hook.body, headers=hook.headers)
    assert response.status == 200


async def test_every_answer_says_server_cancel_bridge(bridge: Client) -> None:
    """Not aiohttp's name and version: a webhook's answer, refusals, a console page, a file."""
    hook = shoplazza_webhook()
    accepted = await bridge.post("/webhooks/shoplazza", data=hook.body, headers=hook.headers)
    assert accepted.status == 200
    bad = shoplazza_webhook(secret="not-the-secret-0000")  # a wrong one
    answers = [
        accepted,
        await bridge.post("/webhooks/shoplazza", data=bad.body, headers=bad.headers),
        await bridge.get("/nothing/here"),
        await bridge.delete("/healthz"),
        await bridge.get(ORDER, headers=WRONG),
        await bridge.get("/console/login"),
        await bridge.get("/console", allow_redirects=False),
        await bridge.get("/console/static/console.css"),
        await bridge.get("/healthz"),
    ]
    assert [answer.status for answer in answers] == [200, 401, 404, 405, 401, 200, 303, 200, 200]
    for answer in answers:
        assert answer.headers.getall("Server") == [SERVER], answer.url
        assert "Strict-Transport-Security" not in answer.headers  # plain HTTP


async def test_behind_a_trusted_tls_proxy_answers_carry_hsts(bridge: Client) -> None:
    """The test client's peer is loopback: its `X-Forwarded-Proto: https` is taken."""
    via_proxy = {"X-Forwarded-Proto": "https"}
    for path in ("/healthz", "/console/login", "/nothing/here"):
        response = await bridge.get(path, headers=via_proxy)
        assert response.headers["Strict-Transport-Security"] == HSTS, path


async def test_a_signed_out_session_is_refused_by_the_receiver(bridge: Client) -> None:
    form = await bridge.get("/console/login")
    nonce = re.search(r'name="csrf" value="([^"]*)"', await form.text())
    assert nonce is not None
    signed_in = await bridge.post(
        "/console/login",
        data={"token": API_TOKEN, "csrf": nonce.group(1), "next": "/console"},
        allow_redirects=False,
    )
    assert signed_in.status == 303
    jar = bridge.session.cookie_jar.filter_cookies(bridge.make_url("/console"))
    cookie = {"Cookie": f"{SESSION_COOKIE}={jar[SESSION_COOKIE].value}"}
    bridge.session.cookie_jar.clear()
    page = await bridge.get("/console", headers=cookie)
    assert page.status == 200
    csrf = re.search(r'name="csrf" value="([^"]*)"', await page.text())
    assert csrf is not None
    out = await bridge.post(
        "/console/logout", data={"csrf": csrf.group(1)}, headers=cookie, allow_redirects=False
    )
    assert out.status == 303
    assert (await bridge.get("/console/overview.json", headers=cookie)).status == 401
