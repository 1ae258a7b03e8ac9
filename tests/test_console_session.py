"""Console sessions, CSRF tokens, flashes and the sign-in redirect: plain function calls."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bridge.web.console.auth import safe_next
from bridge.web.console.session import (
    Flash,
    csrf_ok,
    csrf_token,
    derive_key,
    issue,
    open_flash,
    same_nonce,
    seal_flash,
    verify,
)

TOKEN = "console-session-token-1"
KEY = derive_key(TOKEN)
NOW = 1_800_000_000.0


def test_a_fresh_cookie_is_the_session_until_it_expires() -> None:
    cookie = issue(KEY, "abc", NOW, ttl=60)
    session = verify(KEY, cookie, NOW + 59)
    assert session is not None
    assert (session.session_id, session.expires) == ("abc", int(NOW) + 60)
    assert verify(KEY, cookie, NOW + 60) is None


def test_the_cookie_never_holds_the_token_or_the_key() -> None:
    cookie = issue(KEY, "abc", NOW)
    assert TOKEN not in cookie
    assert KEY.hex() not in cookie


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c[:-1] + ("A" if c[-1] != "A" else "B"),  # the MAC
        lambda c: c.replace(".abc.", ".abd."),  # the session id
        lambda c: c.replace(f".{int(NOW) + 60}.", f".{int(NOW) + 999_999}."),  # the expiry
        lambda c: "v2" + c[2:],  # the version
        lambda c: c + ".x",  # a fifth part
        lambda c: c.rsplit(".", 1)[0],  # no MAC
        lambda _: "",
        lambda _: "....",
        lambda c: c.replace(".abc.", ".ab\udcff."),  # not UTF-8 in the header
        lambda c: c.replace(".abc.", ".abç."),
        lambda c: c + "A" * 300,  # oversize
    ],
)
def test_a_changed_cookie_is_no_session(change: Callable[[str], str]) -> None:
    cookie = issue(KEY, "abc", NOW, ttl=60)
    assert verify(KEY, change(cookie), NOW) is None


def test_a_new_token_ends_every_session() -> None:
    cookie = issue(KEY, "abc", NOW)
    assert verify(derive_key("rotated-token"), cookie, NOW) is None


def test_csrf_tokens_belong_to_one_session() -> None:
    token = csrf_token(KEY, "abc")
    assert csrf_ok(KEY, "abc", token)
    assert not csrf_ok(KEY, "abd", token)
    assert not csrf_ok(derive_key("other"), "abc", token)
    assert not csrf_ok(KEY, "abc", "")
    assert not csrf_ok(KEY, "abc", token + "\udcff")


def test_the_login_nonce_must_match_its_cookie() -> None:
    assert same_nonce("n-1", "n-1")
    assert not same_nonce("n-1", "n-2")
    assert not same_nonce("", "")  # no cookie: refused even when the form is empty too


def test_flashes_round_trip_and_refuse_forgeries() -> None:
    sealed = seal_flash(KEY, Flash("ok", "Replayed <b>1</b>"))
    assert open_flash(KEY, sealed) == Flash("ok", "Replayed <b>1</b>")
    assert open_flash(derive_key("other"), sealed) is None
    body, _, mac = sealed.partition(".")
    assert open_flash(KEY, f"{body}x.{mac}") is None
    assert open_flash(KEY, "no-dot") is None
    assert open_flash(KEY, "é.é") is None


@pytest.mark.parametrize(
    ("wanted", "goes_to"),
    [
        ("/console/events?q=1001", "/console/events?q=1001"),
        ("/console", "/console"),
        ("/console/login", "/console"),
        ("https://evil.example/console", "/console"),
        ("//evil.example/console", "/console"),
        ("/consolex", "/console"),
        ("/api/orders", "/console"),
        ("/console/\\evil", "/console"),
        ("/console/\r\nSet-Cookie: x=1", "/console"),
        ("javascript:alert(1)", "/console"),
        ("", "/console"),
    ],
)
def test_after_sign_in_only_console_paths(wanted: str, goes_to: str) -> None:
    assert safe_next(wanted) == goes_to
