"""Console sessions, CSRF tokens and flash notes: signed strings, no I/O, the clock passed in.

A session cookie is `v1.<session id>.<expiry epoch s>.<mac>`: the MAC is HMAC-SHA256 keyed by a
key derived from the API token, so the cookie never carries the token, a changed cookie fails
its MAC, and rotating the token ends every session. The session's CSRF token is a MAC of its
session id under the same key: forms carry it, and a forged form from another site cannot.

A valid cookie can still be signed out: the store (`bridge/store/sessions.py`) remembers the
session ids that were, for every receiver process, until their cookies would have expired.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from dataclasses import dataclass

import orjson

VERSION = "v1"
SESSION_TTL = 8 * 3600  # seconds a login lasts
_KEY_LABEL = b"cancel-bridge console session v1"
_MAX_COOKIE = 200  # a real session cookie is about 90 characters
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_-]+")  # what ids and MACs are made of


@dataclass(frozen=True, slots=True)
class Session:
    """A valid session: its id and when it ends (epoch seconds)."""

    session_id: str
    expires: int


def derive_key(token: str) -> bytes:
    """The signing key for sessions and flashes: never the token itself."""
    return hmac.digest(token.encode("utf-8", "surrogateescape"), _KEY_LABEL, "sha256")


def _mac(key: bytes, *parts: str) -> str:
    mac = hmac.digest(key, ".".join(parts).encode(), "sha256")
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def new_session_id() -> str:
    """A fresh random session id (URL-safe, no dots)."""
    return secrets.token_urlsafe(16)


def issue(key: bytes, session_id: str, now: float, ttl: int = SESSION_TTL) -> str:
    """The cookie value for a session that starts at `now` and lasts `ttl` seconds."""
    expires = str(int(now) + ttl)
    return ".".join((VERSION, session_id, expires, _mac(key, VERSION, session_id, expires)))


def verify(key: bytes, cookie: str, now: float) -> Session | None:
    """The session `cookie` stands for, or None: malformed, tampered with, or expired."""
    if len(cookie) > _MAX_COOKIE:
        return None
    parts = cookie.split(".")
    if len(parts) != 4:  # noqa: PLR2004 - version, id, expiry, mac
        return None
    version, session_id, expires, mac = parts
    if (
        version != VERSION
        or not _TOKEN_CHARS.fullmatch(session_id)
        or not _TOKEN_CHARS.fullmatch(mac)
        or not (expires.isascii() and expires.isdigit())
    ):
        return None
    if not hmac.compare_digest(mac.encode(), _mac(key, version, session_id, expires).encode()):
        return None
    if int(expires) <= now:
        return None
    return Session(session_id, int(expires))


def csrf_token(key: bytes, session_id: str) -> str:
    """The token every form of this session carries."""
    return _mac(key, "csrf", session_id)


def csrf_ok(key: bytes, session_id: str, sent: str) -> bool:
    """Whether `sent` is this session's CSRF token (constant time)."""
    expected = csrf_token(key, session_id).encode()
    return hmac.compare_digest(sent.encode("utf-8", "surrogateescape"), expected)


def same_nonce(cookie: str, sent: str) -> bool:
    """The login form's double-submitted nonce: the form's copy equals the cookie's."""
    if not cookie:
        return False
    return hmac.compare_digest(
        cookie.encode("utf-8", "surrogateescape"), sent.encode("utf-8", "surrogateescape")
    )


@dataclass(frozen=True, slots=True)
class Flash:
    """A one-time note for the next page: `kind` is `ok`, `warn` or `error`."""

    kind: str
    text: str


FLASH_KINDS = ("ok", "warn", "error")


def seal_flash(key: bytes, flash: Flash) -> str:
    """A flash as a signed cookie value (so another site cannot plant a false 'replayed')."""
    body = base64.urlsafe_b64encode(orjson.dumps([flash.kind, flash.text])).rstrip(b"=").decode()
    return f"{body}.{_mac(key, 'flash', body)}"


def open_flash(key: bytes, sealed: str) -> Flash | None:
    """The flash a cookie holds, or None if it is not one we signed."""
    body, _, mac = sealed.partition(".")
    if not (_TOKEN_CHARS.fullmatch(body) and _TOKEN_CHARS.fullmatch(mac)):
        return None
    if not hmac.compare_digest(mac.encode(), _mac(key, "flash", body).encode()):
        return None
    try:
        kind, text = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, TypeError):  # our own signature over junk: cannot happen, stay safe
        return None
    if kind not in FLASH_KINDS or not isinstance(text, str):
        return None
    return Flash(kind, text)
