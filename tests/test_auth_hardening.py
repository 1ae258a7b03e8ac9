"""Issue 17's hardening without a broker: throttled sign-ins, sign-outs, TLS cookies, weak tokens.

The console is mounted alone (`console_app`) with what `create_app` installs on every receiver
(`hardening.install`), a fake clock for the backoff; `/metrics` on its own listener as workers
serve it. The whole receiver is `test_auth_hardening_integration.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import sqlite3
import tempfile
import typing
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import structlog
from aiohttp import web
from aiohttp.test_utils import TestClient
from pydantic import SecretStr
from yarl import URL

from bridge.cli.main import main
from bridge.metrics import AUTH_CHECKS, Metrics
from bridge.settings import LOOPBACK, Config
from bridge.store.deliveries import Store
from bridge.web.console.auth import LOGIN_COOKIE, SESSION_COOKIE
from bridge.web.hardening import (
    HSTS,
    SERVER,
    Check,
    client_of,
    install,
    tls_by,
    trusted_peer,
)
from bridge.web.keys import METRICS
from bridge.web.metrics_page import MAX_SCRAPERS, serve_metrics
from tests.harness.console_browser import console_app, console_config
from tests.harness.pipeline import API_TOKEN
from tests.harness.proxy import TcpProxy
from tests.harness.receiver import ClientFactory
from tests.harness.stores import scratch_store
from tests.harness.wire import exchange

Client = TestClient[Any, Any]
BEARER = {"Authorization": f"Bearer {API_TOKEN}"}
WRONG = "wrong-token-0123456789abcdef"
VIA_TLS_PROXY = {"X-Forwarded-Proto": "https"}


class Clock:
    """The backoff's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        """The time it is."""
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open(str(tmp_path / "state.db")) as opened:
        yield opened


@pytest.fixture
def config() -> Config:
    return console_config()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def hardened(config: Config, store: Store, clock: Clock) -> web.Application:
    """The console as every receiver has it: metrics, and what `create_app` installs."""
    app = console_app(config, store)
    app[METRICS] = Metrics()
    install(app, clock=clock)
    return app


@pytest.fixture
async def client(
    aiohttp_client: ClientFactory, config: Config, store: Store, clock: Clock
) -> Client:
    made: Client = await aiohttp_client(hardened(config, store, clock))
    return made


def counted(client: Client, check: Check, outcome: str) -> float:
    """`cancel_bridge_auth_failures_total{check, outcome}` of the client's app."""
    assert client.app is not None
    labels = {"check": check, "outcome": outcome}
    metrics: Metrics = client.app[METRICS]
    found = metrics.registry.get_sample_value("cancel_bridge_auth_failures_total", labels)
    assert found is not None
    return float(found)


def hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found is not None, f"no {name} field"
    return found.group(1)


def set_cookies(response: aiohttp.ClientResponse) -> dict[str, str]:
    """Each Set-Cookie header by cookie name, as sent."""
    return {header.split("=", 1)[0]: header for header in response.headers.getall("Set-Cookie", [])}


def session_cookie(client: Client) -> dict[str, str]:
    """The client's session cookie, as a header to send it again."""
    found = client.session.cookie_jar.filter_cookies(client.make_url("/console"))
    return {"Cookie": f"{SESSION_COOKIE}={found[SESSION_COOKIE].value}"}


async def sign_in(
    client: Client, token: str = API_TOKEN, headers: dict[str, str] | None = None
) -> aiohttp.ClientResponse:
    form = await client.get("/console/login", headers=headers)
    assert form.status == 200
    page = await form.text()
    response: aiohttp.ClientResponse = await client.post(
        "/console/login",
        data={"token": token, "csrf": hidden(page, "csrf"), "next": "/console"},
        headers=headers,
        allow_redirects=False,
    )
    return response


async def test_the_sign_in_form_backs_off_after_ten_wrong_tokens(
    client: Client, clock: Clock
) -> None:
    """The eleventh try is 429 with Retry-After even with the right token; a second later not."""
    with structlog.testing.capture_logs() as logs:
        for _ in range(10):
            assert (await sign_in(client, WRONG)).status == 401
        refused = await sign_in(client)  # the right token, not compared
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "1"
    page = await refused.text()
    assert "Too many wrong tokens came from your address: wait 1 s" in page
    assert 'name="token"' in page  # the form again, to try later
    assert SESSION_COOKIE not in set_cookies(refused)
    assert [entry["event"] for entry in logs].count("auth.backoff") == 1
    assert API_TOKEN not in repr(logs)
    assert WRONG not in repr(logs)
    assert counted(client, "console_login", "wrong") == 10
    assert counted(client, "console_login", "throttled") == 1
    clock.now += 1.0
    heard = await sign_in(client)
    assert heard.status == 303
    assert SESSION_COOKIE in set_cookies(heard)


async def test_each_wrong_token_past_the_limit_doubles_the_wait(
    client: Client, clock: Clock
) -> None:
    for _ in range(10):
        await sign_in(client, WRONG)
    clock.now += 1.0
    assert (await sign_in(client, WRONG)).status == 401  # heard, and wrong again
    refused = await sign_in(client)
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "2"


async def test_a_right_token_wipes_the_count(client: Client) -> None:
    for _ in range(9):
        assert (await sign_in(client, WRONG)).status == 401
    assert (await sign_in(client)).status == 303
    client.session.cookie_jar.clear()
    statuses = [(await sign_in(client, WRONG)).status for _ in range(10)]
    assert statuses == [401] * 10
    assert (await sign_in(client)).status == 429


async def test_bearer_headers_back_off_in_json_and_share_the_forms_count(client: Client) -> None:
    """Form and header carry the same token: one count. A session cookie is never throttled."""
    assert (await sign_in(client)).status == 303  # a session first, kept aside
    session = session_cookie(client)
    client.session.cookie_jar.clear()
    wrong = {"Authorization": f"Bearer {WRONG}"}
    for _ in range(5):
        assert (await sign_in(client, WRONG)).status == 401
    for _ in range(5):
        response = await client.get("/console/overview.json", headers=wrong)
        assert response.status == 401
    refused = await client.get("/console/overview.json", headers=BEARER)
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "1"
    answer = orjson.loads(await refused.read())
    assert answer["error"] == "too_many_attempts"
    assert "try again in 1 s" in answer["detail"]
    assert (await client.get("/console/login", headers=BEARER)).status == 429
    assert (await sign_in(client)).status == 429  # the form too
    assert counted(client, "console_bearer", "wrong") == 5
    assert counted(client, "console_bearer", "throttled") == 2
    signed_in = await client.get("/console/overview.json", headers=session)
    assert signed_in.status == 200


async def test_signing_out_ends_the_session_for_good(client: Client) -> None:
    """The cookie of a signed-out session is refused afterwards; other sessions go on."""
    assert (await sign_in(client)).status == 303
    cookie = session_cookie(client)
    client.session.cookie_jar.clear()
    assert (await sign_in(client)).status == 303  # a second session, say another browser
    kept = session_cookie(client)
    client.session.cookie_jar.clear()
    page = await client.get("/console", headers=cookie)
    assert page.status == 200
    out = await client.post(
        "/console/logout",
        data={"csrf": hidden(await page.text(), "csrf")},
        headers=cookie,
        allow_redirects=False,
    )
    assert out.status == 303
    assert out.headers["Location"] == "/console/login"
    replayed = await client.get("/console", headers=cookie, allow_redirects=False)
    assert replayed.status == 303
    assert replayed.headers["Location"].startswith("/console/login")
    assert (await client.get("/console/overview.json", headers=cookie)).status == 401
    still = await client.get("/console/overview.json", headers=kept)
    assert still.status == 200


async def sign_out(client: Client, cookie: dict[str, str]) -> aiohttp.ClientResponse:
    page = await client.get("/console", headers=cookie)
    assert page.status == 200
    response: aiohttp.ClientResponse = await client.post(
        "/console/logout",
        data={"csrf": hidden(await page.text(), "csrf")},
        headers=cookie,
        allow_redirects=False,
    )
    return response


async def test_a_sign_out_ends_the_session_in_every_process(
    aiohttp_client: ClientFactory, config: Config, database_url: str, clock: Clock
) -> None:
    """Two receiver processes on one store: a sign-out on one is refused by the other."""
    async with Store.open(database_url) as one, Store.open(database_url) as two:
        first: Client = await aiohttp_client(hardened(config, one, clock))
        second: Client = await aiohttp_client(hardened(config, two, Clock()))
        assert (await sign_in(first)).status == 303
        cookie = session_cookie(first)
        assert (await second.get("/console/overview.json", headers=cookie)).status == 200
        assert (await sign_out(first, cookie)).status == 303
        assert (await second.get("/console/overview.json", headers=cookie)).status == 401
        assert (await first.get("/console/overview.json", headers=cookie)).status == 401


async def test_without_the_store_a_session_is_not_taken_on_trust(
    aiohttp_client: ClientFactory, config: Config, postgres_url: str, clock: Clock
) -> None:
    """Whether a cookie was signed out cannot be asked: 503, and sign-out keeps the cookie."""
    database = URL(postgres_url)
    proxy = TcpProxy(database.host or "127.0.0.1", database.port or 5432)
    port = await proxy.start()
    proxied = str(database.with_host("127.0.0.1").with_port(port))
    try:
        async with Store.open(proxied) as store:
            client: Client = await aiohttp_client(hardened(config, store, clock))
            assert (await sign_in(client)).status == 303
            cookie = session_cookie(client)
            page = await client.get("/console", headers=cookie)
            csrf = hidden(await page.text(), "csrf")
            proxy.cut()
            down = await client.get("/console", headers=cookie, allow_redirects=False)
            assert down.status == 503
            assert down.headers["Retry-After"] == "5"
            assert "the session cannot be checked" in await down.text()
            data = await client.get("/console/overview.json", headers=cookie)
            assert data.status == 503
            assert orjson.loads(await data.read())["error"] == "store_unavailable"
            out = await client.post(
                "/console/logout", data={"csrf": csrf}, headers=cookie, allow_redirects=False
            )
            assert out.status == 503
            assert SESSION_COOKIE not in set_cookies(out)  # not signed out: the cookie stays
            assert (await client.get("/console/login")).status == 200  # the form still loads
            proxy.restore()
            assert (await sign_out(client, cookie)).status == 303
            assert (await client.get("/console/overview.json", headers=cookie)).status == 401
    finally:
        await proxy.stop()


async def test_cookies_are_secure_and_hsts_is_sent_behind_a_trusted_tls_proxy(
    client: Client,
) -> None:
    """The test client's peer is loopback: a proxy on this host, whose word is taken."""
    form = await client.get("/console/login", headers=VIA_TLS_PROXY)
    assert "Secure" in set_cookies(form)[LOGIN_COOKIE]
    assert form.headers["Strict-Transport-Security"] == HSTS
    nonce = hidden(await form.text(), "csrf")  # sent by hand: no jar sends Secure over http
    signed_in = await client.post(
        "/console/login",
        data={"token": API_TOKEN, "csrf": nonce, "next": "/console"},
        headers={**VIA_TLS_PROXY, "Cookie": f"{LOGIN_COOKIE}={nonce}"},
        allow_redirects=False,
    )
    assert signed_in.status == 303
    assert "Secure" in set_cookies(signed_in)[SESSION_COOKIE]
    assert signed_in.headers["Strict-Transport-Security"] == HSTS
    for headers in ({}, {"X-Forwarded-Proto": "https, http"}, {"X-Forwarded-Proto": "http"}):
        plain = await client.get("/console/login", headers=headers)
        assert "Secure" not in set_cookies(plain)[LOGIN_COOKIE], headers
        assert "Strict-Transport-Security" not in plain.headers, headers


@contextlib.asynccontextmanager
async def over_a_unix_socket(app: web.Application) -> AsyncIterator[aiohttp.ClientSession]:
    """A client of `app` whose peer address is no IP address: not a trusted proxy."""
    runner = web.AppRunner(app)
    await runner.setup()
    with tempfile.TemporaryDirectory(dir="/tmp") as directory:  # short: sun_path holds 108 bytes
        path = str(Path(directory) / "receiver.sock")
        try:
            await web.UnixSite(runner, path).start()
            connector = aiohttp.UnixConnector(path)
            async with aiohttp.ClientSession("http://localhost", connector=connector) as http:
                yield http
        finally:
            await runner.cleanup()


async def test_a_forged_forwarded_proto_from_an_untrusted_peer_changes_nothing(
    config: Config, store: Store, clock: Clock
) -> None:
    async with over_a_unix_socket(hardened(config, store, clock)) as http:
        async with http.get("/console/login", headers=VIA_TLS_PROXY) as form:
            assert form.status == 200
            assert "Secure" not in set_cookies(form)[LOGIN_COOKIE]
            assert "Strict-Transport-Security" not in form.headers
            page = await form.text()
        posted = {"token": API_TOKEN, "csrf": hidden(page, "csrf"), "next": "/console"}
        async with http.post(
            "/console/login", data=posted, headers=VIA_TLS_PROXY, allow_redirects=False
        ) as signed_in:
            assert signed_in.status == 303
            assert "Secure" not in set_cookies(signed_in)[SESSION_COOKIE]
            assert "Strict-Transport-Security" not in signed_in.headers


# `[receiver] trusted_proxies` = ["10.0.0.0/8", "fd00::/8"] beside loopback, for these tables
PROXIES = (*LOOPBACK, ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize(
    ("remote", "by_default", "configured"),
    [
        ("127.0.0.1", True, True),
        ("::1", True, True),
        ("10.1.2.3", False, True),  # private: trusted only when listed
        ("::ffff:10.0.0.1", False, True),
        ("fd00::2", False, True),
        ("172.16.0.9", False, False),  # private, not listed
        ("192.168.1.1", False, False),
        ("fe80::1", False, False),
        ("8.8.8.8", False, False),
        ("::ffff:8.8.8.8", False, False),
        ("2001:4860:4860::8888", False, False),
        ("", False, False),  # a Unix socket's peer
        (None, False, False),
        ("localhost", False, False),
    ],
)
def test_a_trusted_proxy_is_one_of_the_configured_networks(
    remote: str | None,
    by_default: bool,  # noqa: FBT001 - a table's column
    configured: bool,  # noqa: FBT001 - a table's column
) -> None:
    assert trusted_peer(remote) is by_default  # loopback only
    assert trusted_peer(remote, PROXIES) is configured


@pytest.mark.parametrize(
    ("secure", "remote", "proto", "tls"),
    [
        (True, "8.8.8.8", [], True),  # our own TLS
        (False, "127.0.0.1", ["https"], True),
        (False, "127.0.0.1", ["HTTPS"], True),
        (False, "10.0.0.5", ["https", "https"], True),
        (False, "127.0.0.1", ["https, https"], True),
        (False, "127.0.0.1", ["https, http"], False),  # an appending proxy saw plain HTTP
        (False, "127.0.0.1", ["https", "http"], False),
        (False, "127.0.0.1", ["http"], False),
        (False, "127.0.0.1", [""], False),
        (False, "127.0.0.1", [], False),
        (False, "8.8.8.8", ["https"], False),  # forged
        (False, "", ["https"], False),
    ],
)
def test_tls_is_ours_or_a_trusted_proxys_word(
    secure: bool,  # noqa: FBT001 - a table's column
    remote: str,
    proto: list[str],
    tls: bool,  # noqa: FBT001 - a table's column
) -> None:
    assert tls_by(secure=secure, remote=remote, forwarded_proto=proto, proxies=PROXIES) is tls


@pytest.mark.parametrize(
    ("remote", "forwarded_for", "client"),
    [
        ("1.1.1.1", [], "1.1.1.1"),
        ("1.1.1.1", ["8.8.8.8"], "1.1.1.1"),  # not a proxy of ours: ignored
        ("127.0.0.1", [], "127.0.0.1"),
        ("127.0.0.1", ["8.8.8.8"], "8.8.8.8"),
        ("10.0.0.2", ["8.8.8.8, 10.0.0.7"], "8.8.8.8"),  # two proxies of ours
        ("10.0.0.2", ["8.8.8.8", "10.0.0.7"], "8.8.8.8"),  # a header each
        # what the client wrote itself stays on the left of what its proxy appended
        ("127.0.0.1", ["1.2.3.4, 8.8.8.8"], "8.8.8.8"),
        ("127.0.0.1", ["2606:4700::1111"], "2606:4700::1111"),
        ("127.0.0.1", ["10.0.0.5, 10.0.0.7"], "10.0.0.5"),  # all ours: the leftmost
        ("127.0.0.1", ["garbage, 10.0.0.7"], "10.0.0.7"),  # no address: the last one of ours
        ("127.0.0.1", ["unknown"], "127.0.0.1"),
        ("127.0.0.1", [" , "], "127.0.0.1"),
        (None, ["8.8.8.8"], None),
    ],
)
def test_the_client_behind_trusted_proxies_is_the_nearest_untrusted_address(
    remote: str | None, forwarded_for: list[str], client: str | None
) -> None:
    assert client_of(remote, forwarded_for, PROXIES) == client


async def test_clients_behind_one_proxy_are_counted_apart(client: Client) -> None:
    """The test client is on loopback, a trusted proxy: X-Forwarded-For names the client.

    (Public addresses: Python counts the documentation ranges, 198.51.100.0/24..., private.)
    """
    one, other = {"X-Forwarded-For": "8.8.8.8"}, {"X-Forwarded-For": "9.9.9.9"}
    for _ in range(10):
        assert (await sign_in(client, WRONG, one)).status == 401
    assert (await sign_in(client, headers=one)).status == 429
    assert (await sign_in(client, headers=other)).status == 303  # its own count
    client.session.cookie_jar.clear()
    forged = {"X-Forwarded-For": "8.8.4.4, 8.8.8.8"}  # a value it wrote, then its own
    assert (await sign_in(client, headers=forged)).status == 429


async def test_only_the_configured_proxies_speak_for_their_clients(
    aiohttp_client: ClientFactory, store: Store, clock: Clock
) -> None:
    """With `trusted_proxies` naming another network, a loopback peer is no proxy of ours.

    Its X-Forwarded-For is its own word: every guess counts against the peer, whatever it names.
    """
    config = console_config()
    receiver = config.settings.receiver.model_copy(
        update={"trusted_proxies": (ipaddress.ip_network("10.0.0.0/8"),)}
    )
    settings = config.settings.model_copy(update={"receiver": receiver})
    client: Client = await aiohttp_client(
        hardened(replace(config, settings=settings), store, clock)
    )
    for n in range(10):
        forged = {"X-Forwarded-For": f"8.8.8.{n}"}
        assert (await sign_in(client, WRONG, forged)).status == 401
    assert (await sign_in(client, headers={"X-Forwarded-For": "9.9.9.9"})).status == 429


def test_the_checks_are_the_metrics_label_values() -> None:
    """`Check` and the counter's pre-made series name the same four checks."""
    assert typing.get_args(Check) == AUTH_CHECKS


async def test_a_revoked_session_is_remembered_until_it_would_have_expired(
    store: Store, tmp_path: Path
) -> None:
    def kept() -> list[str]:  # the rows themselves: an expired row answers "not revoked" anyway
        with sqlite3.connect(tmp_path / "state.db") as db:
            return [row[0] for row in db.execute("SELECT session_id FROM revocations ORDER BY 1")]

    at = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    await store.revoke_session("s1", at + timedelta(hours=1), at)
    assert await store.session_revoked("s1", at)
    assert not await store.session_revoked("s2", at)
    assert kept() == ["s1"]
    later = at + timedelta(hours=2)  # s1 has expired: forgotten with the next sign-out
    await store.revoke_session("s2", later + timedelta(hours=1), later)
    assert kept() == ["s2"]
    assert not await store.session_revoked("s1", later)
    assert await store.session_revoked("s2", later)
    await store.revoke_session("s3", later, later)  # expired already: nothing to keep
    assert kept() == ["s2"]


METRICS_TOKEN = "metrics-token-0123456789abcdef-0123"


async def test_the_metrics_listener_backs_off_and_says_who_it_is(config: Config) -> None:
    """`[metrics] port` (workers' `/metrics`) judges its token as the receiver does."""
    config = replace(config, metrics_token=SecretStr(METRICS_TOKEN))
    async with contextlib.AsyncExitStack() as stack:
        port = await serve_metrics(config, Metrics(), 0, stack)
        http = await stack.enter_async_context(aiohttp.ClientSession(f"http://127.0.0.1:{port}"))
        wrong = {"Authorization": f"Bearer {WRONG}"}
        for _ in range(10):
            async with http.get("/metrics", headers=wrong) as response:
                assert response.status == 401
                assert response.headers["Server"] == SERVER
        right = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        async with http.get("/metrics", headers=right) as refused:
            assert refused.status == 429
            assert refused.headers["Retry-After"] == "1"
            assert (await refused.json())["error"] == "too_many_attempts"


async def test_the_metrics_listener_answers_malformed_requests_in_our_words(
    config: Config,
) -> None:
    """Its listener is the receiver's kind: the parser's refusal is our JSON, connections capped."""
    metrics = Metrics()
    async with contextlib.AsyncExitStack() as stack:
        port = await serve_metrics(config, metrics, 0, stack)
        (answer,) = await exchange(port, b"GET /metrics HTTP/1.1\r\nX-A: a\x00b\r\n\r\n")
        assert answer.status == 400
        assert answer.json()["error"] == "bad_request"
        assert answer.headers["server"] == SERVER
        assert b"a\\x00b" not in answer.body
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(MAX_SCRAPERS)]
        try:
            (refused,) = await exchange(port, b"GET /metrics HTTP/1.1\r\nHost: m\r\n\r\n")
        finally:
            for _, writer in held:
                writer.close()
        assert refused.status == 503
        assert refused.json()["error"] == "too_many_connections"
        assert metrics.registry.get_sample_value("cancel_bridge_connections_refused_total") == 1


TOKEN_ENV, METRICS_ENV = "CB_TEST_HARDENING_API_TOKEN", "CB_TEST_HARDENING_METRICS_TOKEN"


@pytest.fixture
def token_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(
        f'[store]\npath = "{scratch_store()}"\n'
        f'[receiver]\napi_token_env = "{TOKEN_ENV}"\n'
        f'[metrics]\ntoken_env = "{METRICS_ENV}"\n'
        '[sources.shoplazza]\nsecret_env = "CB_TEST_HARDENING_SECRET"\n'
        'shops = ["demo.myshoplaza.com"]\n',  # no allowlist warning: the tokens' alone
        encoding="utf-8",
    )
    monkeypatch.setenv("CB_TEST_HARDENING_SECRET", "shpss_hardening_0123")
    monkeypatch.setenv("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/x")
    monkeypatch.delenv("BRIDGE_CONFIG", raising=False)
    return path


def test_check_config_warns_about_tokens_shorter_than_32_characters(
    token_config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    short_api, short_metrics = "a" * 16 + "short-api", "m" * 31  # 25 and 31: they load
    monkeypatch.setenv(TOKEN_ENV, short_api)
    monkeypatch.setenv(METRICS_ENV, short_metrics)
    assert main(["check-config", "--config", str(token_config)]) == 0
    out, err = capsys.readouterr()
    advice = "the token is shorter than 32 characters; use a longer random one"
    assert [line for line in out.splitlines() if line.startswith("warning:")] == [
        f"warning: receiver.api_token_env = '{TOKEN_ENV}': {advice} (openssl rand -hex 32)",
        f"warning: metrics.token_env = '{METRICS_ENV}': {advice} (openssl rand -hex 32)",
    ]
    assert short_api not in out + err
    assert short_metrics not in out + err


def test_check_config_is_quiet_about_tokens_of_32_characters(
    token_config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "a" * 32)
    monkeypatch.setenv(METRICS_ENV, "m" * 64)
    assert main(["check-config", "--config", str(token_config)]) == 0
    assert "warning:" not in capsys.readouterr().out
