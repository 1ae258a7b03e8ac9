"""Console sign-in: the API token as a form, a signed session cookie or a bearer header."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import orjson
import pytest
import structlog
from aiohttp.test_utils import TestClient

from bridge.settings import Config
from bridge.store.deliveries import Store
from bridge.store.lifecycle import DeliveryState
from bridge.web.console.auth import LOGIN_COOKIE, SESSION_COOKIE
from bridge.web.console.session import csrf_token, derive_key, issue
from tests.harness.console_browser import arrive, attempt, console_app, console_config, event
from tests.harness.pipeline import API_TOKEN
from tests.harness.receiver import ClientFactory
from tests.harness.stores import hold_in_spool

Client = TestClient[Any, Any]
BEARER = {"Authorization": f"Bearer {API_TOKEN}"}
KEY = derive_key(API_TOKEN)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    async with Store.open(str(tmp_path / "state.db")) as opened:
        yield opened


@pytest.fixture
def config() -> Config:
    return console_config()


@pytest.fixture
async def client(aiohttp_client: ClientFactory, config: Config, store: Store) -> Client:
    made: Client = await aiohttp_client(console_app(config, store))
    return made


def hidden(page: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert found is not None, f"no {name} field"
    return found.group(1)


def set_cookies(response: Any) -> dict[str, str]:  # noqa: ANN401 - aiohttp's response
    """Each Set-Cookie header by cookie name, as sent."""
    return {header.split("=", 1)[0]: header for header in response.headers.getall("Set-Cookie", [])}


async def sign_in(client: Client, token: str = API_TOKEN, next_: str = "/console") -> Any:  # noqa: ANN401
    form = await client.get(f"/console/login?next={next_}")
    assert form.status == 200
    page = await form.text()
    return await client.post(
        "/console/login",
        data={"token": token, "csrf": hidden(page, "csrf"), "next": hidden(page, "next")},
        allow_redirects=False,
    )


async def test_without_a_token_configured_the_console_is_off(
    aiohttp_client: ClientFactory, config: Config, store: Store
) -> None:
    off: Client = await aiohttp_client(
        console_app(dataclasses.replace(config, api_token=None), store)
    )
    for path in (
        "/console",
        "/console/login",
        "/console/events",
        "/console/events/x/cj/replay",
        "/console/spool",
    ):
        response = await off.get(path, allow_redirects=False)
        assert response.status == 401, path
        assert "The console is off" in await response.text()
        assert "Set-Cookie" not in response.headers
    posted = await off.post("/console/login", data={"token": API_TOKEN, "csrf": "x"})
    assert posted.status == 401
    assert "Set-Cookie" not in posted.headers
    scripted = await off.get("/console/overview.json", headers=BEARER)
    assert scripted.status == 401
    assert orjson.loads(await scripted.read())["error"] == "console_disabled"


async def test_signing_in_sets_a_signed_session_cookie(client: Client) -> None:
    response = await sign_in(client, next_="/console/events")
    assert response.status == 303
    assert response.headers["Location"] == "/console/events"
    cookie = set_cookies(response)[SESSION_COOKIE]
    assert API_TOKEN not in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/console" in cookie
    assert "Max-Age=28800" in cookie
    assert API_TOKEN not in response.headers["Location"]
    page = await client.get("/console")
    assert page.status == 200
    assert "<h1>Overview</h1>" in await page.text()


async def test_the_session_lasts_as_configured(
    aiohttp_client: ClientFactory, config: Config, store: Store
) -> None:
    short: Client = await aiohttp_client(console_app(config, store, session_ttl=60))
    cookie = set_cookies(await sign_in(short))[SESSION_COOKIE]
    assert "Max-Age=60" in cookie
    value = SimpleCookie(cookie)[SESSION_COOKIE].value
    assert int(value.split(".")[2]) - time.time() <= 60


async def test_a_wrong_token_shows_the_form_again_with_401(client: Client) -> None:
    with structlog.testing.capture_logs() as logs:
        response = await sign_in(client, token="not-the-token-42")
    assert response.status == 401
    page = await response.text()
    assert "That is not the API token." in page
    assert 'name="token"' in page
    assert "not-the-token-42" not in page
    assert SESSION_COOKIE not in set_cookies(response)
    assert (await client.get("/console", allow_redirects=False)).status == 303
    assert [entry["event"] for entry in logs] == ["console.login_failed"]
    assert "not-the-token-42" not in repr(logs)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded; charset=bogus-charset",
        "multipart/form-data; boundary=b",
    ],
)
async def test_an_unreadable_form_is_refused_not_a_500(client: Client, content_type: str) -> None:
    """A charset Python does not know (in the form or a multipart part) is a refusal."""
    await client.get("/console/login")
    body = (
        b"token=x"
        if "urlencoded" in content_type
        else b'--b\r\nContent-Disposition: form-data; name="token"\r\n'
        b"Content-Type: text/plain; charset=bogus\r\n\r\nx\r\n--b--\r\n"
    )
    response = await client.post(
        "/console/login", data=body, headers={"Content-Type": content_type}
    )
    assert 400 <= response.status < 500
    assert SESSION_COOKIE not in set_cookies(response)


async def test_the_login_form_needs_its_nonce(client: Client) -> None:
    await client.get("/console/login")  # the nonce cookie is set
    missing = await client.post("/console/login", data={"token": API_TOKEN})
    assert missing.status == 403
    assert "The form expired" in await missing.text()
    wrong = await client.post("/console/login", data={"token": API_TOKEN, "csrf": "forged"})
    assert wrong.status == 403
    client.session.cookie_jar.clear()
    no_cookie = await client.post("/console/login", data={"token": API_TOKEN, "csrf": ""})
    assert no_cookie.status == 403
    assert SESSION_COOKIE not in set_cookies(no_cookie)


async def test_signed_out_callers_are_sent_to_the_form(client: Client) -> None:
    page = await client.get("/console/events?q=1001", allow_redirects=False)
    assert page.status == 303
    assert page.headers["Location"] == "/console/login?next=%2Fconsole%2Fevents%3Fq%3D1001"
    data = await client.get("/console/overview.json")
    assert data.status == 401
    assert orjson.loads(await data.read())["error"] == "unauthorized"
    posted = await client.post("/console/events/x/cj/replay", data={"csrf": "x"})
    assert posted.status == 401
    assert 'name="token"' in await posted.text()


async def test_the_spool_page_needs_a_signed_in_caller(client: Client, store: Store) -> None:
    """Spooled events are shown as every console page is: only to the token's holders."""
    held = event()
    await hold_in_spool(store, held, datetime.now(UTC))
    page = await client.get("/console/spool", allow_redirects=False)
    assert page.status == 303
    assert page.headers["Location"] == "/console/login?next=%2Fconsole%2Fspool"
    wrong = await client.get("/console/spool", headers={"Authorization": "Bearer wrong-token"})
    assert wrong.status == 401
    assert str(held.event_id) not in await wrong.text()
    await sign_in(client, next_="/console/spool")
    signed_in = await client.get("/console/spool")
    assert signed_in.status == 200
    assert str(held.event_id) in await signed_in.text()


@pytest.mark.parametrize(
    "cookie",
    [
        pytest.param(lambda good: good[:-2] + ("AA" if good[-2:] != "AA" else "BB"), id="mac"),
        pytest.param(
            lambda good: ".".join([*good.split(".")[:2], "9999999999", good.split(".")[3]]),
            id="expiry",
        ),
        pytest.param(lambda _: issue(derive_key("another-token"), "s1", time.time()), id="key"),
        pytest.param(lambda _: issue(KEY, "s1", time.time() - 9 * 3600), id="expired"),
        pytest.param(lambda _: API_TOKEN, id="the-token-itself"),
        pytest.param(lambda _: "", id="empty"),
    ],
)
async def test_a_tampered_or_expired_cookie_is_refused(client: Client, cookie: Any) -> None:  # noqa: ANN401
    good = issue(KEY, "s1", time.time())
    headers = {"Cookie": f"{SESSION_COOKIE}={cookie(good)}"}
    page = await client.get("/console", headers=headers, allow_redirects=False)
    assert page.status == 303
    assert page.headers["Location"].startswith("/console/login")
    data = await client.get("/console/overview.json", headers=headers)
    assert data.status == 401
    accepted = await client.get("/console", headers={"Cookie": f"{SESSION_COOKIE}={good}"})
    assert accepted.status == 200  # the same request with the cookie as issued


async def test_posts_need_the_sessions_csrf_token(client: Client) -> None:
    await sign_in(client)
    page = await (await client.get("/console")).text()
    csrf = hidden(page, "csrf")
    for form in ({}, {"csrf": ""}, {"csrf": "forged"}, {"csrf": csrf_token(KEY, "another")}):
        refused = await client.post("/console/logout", data=form, allow_redirects=False)
        assert refused.status == 403, form
        assert "Form refused" in await refused.text()
    assert (await client.get("/console", allow_redirects=False)).status == 200  # still signed in
    out = await client.post("/console/logout", data={"csrf": csrf}, allow_redirects=False)
    assert out.status == 303
    assert out.headers["Location"] == "/console/login"
    assert 'cb_console=""' in set_cookies(out)[SESSION_COOKIE]
    after = await client.get("/console/login")
    assert "Signed out." in await after.text()
    assert (await client.get("/console", allow_redirects=False)).status == 303


async def test_actions_without_csrf_are_refused(client: Client, store: Store) -> None:
    """A forged replay form is refused before the broker is asked (403, not a 503)."""
    parked = event()
    now = datetime.now(UTC)
    await arrive(store, parked, now)
    await attempt(store, parked, now, DeliveryState.PARKED, "cj: Order not found")
    await sign_in(client)
    url = f"/console/events/{parked.event_id}/cj/replay"
    refused = await client.post(url, data={"csrf": "forged"}, allow_redirects=False)
    assert refused.status == 403
    confirm = await (await client.get(url)).text()
    broker_down = await client.post(url, data={"csrf": hidden(confirm, "csrf")})
    assert broker_down.status == 503  # CSRF passed; the (dead) broker is next
    assert "Broker unavailable" in await broker_down.text()


async def test_bearer_header_for_scripts(client: Client, store: Store) -> None:
    page = await client.get("/console", headers=BEARER)
    assert page.status == 200
    assert 'action="/console/logout"' not in await page.text()  # nothing to sign out of
    data = await client.get("/console/overview.json", headers=BEARER)
    assert data.status == 200
    assert "events_per_minute" in orjson.loads(await data.read())
    parked = event()
    now = datetime.now(UTC)
    await arrive(store, parked, now)
    await attempt(store, parked, now, DeliveryState.PARKED, "cj: Order not found")
    # No CSRF token for bearer callers (a browser never adds the header by itself).
    replay = await client.post(f"/console/events/{parked.event_id}/cj/replay", headers=BEARER)
    assert replay.status == 503
    assert orjson.loads(await replay.read())["error"] == "broker_unavailable"


@pytest.mark.parametrize(
    "header",
    ["Bearer wrong-token", "bearer wrong-token", "Bearer", f"Bearer {API_TOKEN}x", "Bearer é"],
)
async def test_a_bad_bearer_header_is_401(client: Client, header: str) -> None:
    good = issue(KEY, "s1", time.time())
    response = await client.get(
        "/console",
        headers={"Authorization": header, "Cookie": f"{SESSION_COOKIE}={good}"},
        allow_redirects=False,
    )
    assert response.status == 401  # a bad header is refused, even beside a good cookie
    assert "Bearer" in response.headers["WWW-Authenticate"]
    assert API_TOKEN not in await response.text()


async def test_other_authorization_schemes_are_not_ours(client: Client) -> None:
    """A proxy's Basic auth in front of the console neither signs in nor breaks the session."""
    basic = {"Authorization": f"Basic {API_TOKEN}"}
    alone = await client.get("/console", headers=basic, allow_redirects=False)
    assert alone.status == 303
    assert alone.headers["Location"].startswith("/console/login")
    good = issue(KEY, "s1", time.time())
    with_session = await client.get(
        "/console", headers={**basic, "Cookie": f"{SESSION_COOKIE}={good}"}
    )
    assert with_session.status == 200


async def test_pages_forbid_framing_caching_and_foreign_scripts(client: Client) -> None:
    for path in ("/console/login",):
        response = await client.get(path)
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["Cache-Control"] == "no-store"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    login = set_cookies(await client.get("/console/login"))[LOGIN_COOKIE]
    assert "HttpOnly" in login
    assert "SameSite=Strict" in login
    assert "Path=/console" in login


async def test_cookies_are_secure_behind_tls(client: Client) -> None:
    form = await client.get("/console/login", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in set_cookies(form)[LOGIN_COOKIE]


async def test_the_token_is_never_logged(client: Client, store: Store) -> None:
    parked = event()
    await arrive(store, parked, datetime.now(UTC))
    with structlog.testing.capture_logs() as logs:
        await sign_in(client, token="wrong-" + API_TOKEN)
        await sign_in(client)
        await client.get("/console/events", headers={"Authorization": f"Bearer x{API_TOKEN}"})
        await client.post(f"/console/events/{parked.event_id}/cj/drop", headers=BEARER)
    events = [entry["event"] for entry in logs]
    assert "console.login" in events
    assert "console.login_failed" in events
    assert "console.unauthorized" in events
    assert "console.drop_failed" in events
    assert API_TOKEN not in repr(logs)
