"""Who may use the console: the API token, as a signed session cookie or a bearer header.

With no `[receiver] api_token_env` the console is off: every page says so with 401. A browser
signs in with the token on a form and gets a session cookie (`HttpOnly`, `SameSite=Strict`,
`Path=/console`) that is a MAC, not the token; scripts send `Authorization: Bearer <token>`.
Every POST from a session carries the session's CSRF token; the login form a double-submitted
nonce. The token never appears in a URL, a page or a log line.

Tokens sent (the form's, a bearer header's) are judged under the per-client backoff of
`bridge/web/hardening.py`: a client with too many wrong ones is answered 429 (the form again, or
JSON for scripts) with `Retry-After`, its token not compared. A session cookie is a MAC nobody
can guess, so it is never throttled: a signed-in operator keeps working while someone else at
the same address is locked out. Signing out revokes the session in the store
(`bridge/store/sessions.py`), for every receiver process: each asks the store before it takes a
cookie, and a store that does not answer is 503 (a revocation cannot be checked).
The cookies are `Secure` when the browser came over HTTPS (`hardening.over_tls`: directly, or
through a trusted proxy's `X-Forwarded-Proto`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import assert_never
from urllib.parse import urlencode, urlsplit

import structlog
from aiohttp import web
from pydantic import SecretStr

from bridge.store.engine import StoreUnavailable
from bridge.web.console.render import (
    CONSOLE,
    PATH,
    error_page,
    html,
    json_page,
    redirect,
)
from bridge.web.console.session import (
    Flash,
    Session,
    csrf_ok,
    csrf_token,
    derive_key,
    issue,
    new_session_id,
    same_nonce,
    verify,
)
from bridge.web.hardening import (
    TOO_MANY,
    Throttled,
    Verdict,
    bearer_verdict,
    judge,
    over_tls,
    retry_after,
)
from bridge.web.keys import CONFIG, STORE, bearer_of

log = structlog.get_logger(__name__)

STORE_RETRY_AFTER = "5"  # seconds, when the store did not answer

SESSION_COOKIE = "cb_console"
LOGIN_COOKIE = "cb_console_login"  # the login form's nonce
LOGIN_SECONDS = 3600
UNAUTHORIZED = 401
TOO_MANY_ATTEMPTS = 429
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="cancel-bridge console"'}


@dataclass(frozen=True, slots=True)
class Viewer:
    """A signed-in caller: `csrf` goes into every form; bearer callers need none (nor a session)."""

    csrf: str
    bearer: bool
    session: Session | None = None


Page = Callable[[web.Request, Viewer], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _token(request: web.Request) -> SecretStr | None:
    return request.app[CONFIG].api_token


def wants_json(request: web.Request) -> bool:
    """A script's request (bearer header, JSON accepted, or a `.json` path)."""
    return (
        request.path.endswith(".json")
        or bearer_of(request) is not None
        or "application/json" in request.headers.get("Accept", "")
    )


def console_off(request: web.Request) -> web.Response:
    """401: no API token is configured, so the console is off (never open)."""
    if wants_json(request):
        detail = "the console is off: set [receiver] api_token_env"
        return json_page(401, {"error": "console_disabled", "detail": detail}, CHALLENGE)
    return html(request, "off.html", 401, CHALLENGE)


async def viewer_of(
    request: web.Request, token: SecretStr, now: float
) -> Viewer | Throttled | None:
    """The caller, if its bearer header or session cookie is good; a bad header is no one.

    A signed-out session is no one (the store says: `StoreUnavailable` when it does not
    answer); a bearer header from a throttled client is not compared.
    """
    if (verdict := bearer_verdict(request, "console_bearer", token)) is not None:
        if isinstance(verdict, Throttled):
            return verdict
        return Viewer(csrf="", bearer=True) if verdict is Verdict.ACCEPTED else None
    key = derive_key(token.get_secret_value())
    session = verify(key, request.cookies.get(SESSION_COOKIE, ""), now)
    if session is None:
        return None
    if await request.app[STORE].session_revoked(
        session.session_id, datetime.fromtimestamp(now, UTC)
    ):
        return None
    return Viewer(csrf=csrf_token(key, session.session_id), bearer=False, session=session)


def too_many_attempts(throttled: Throttled) -> web.Response:
    """429 with `Retry-After`, in JSON: only bearer headers (scripts) are throttled here."""
    payload = {"error": TOO_MANY, "detail": throttled.detail}
    return json_page(TOO_MANY_ATTEMPTS, payload, retry_after(throttled))


def safe_next(value: str) -> str:
    """Where to go after signing in: a console path of ours, else the overview."""
    parts = urlsplit(value)
    if (
        parts.scheme
        or parts.netloc
        or "\\" in value
        or any(ord(char) < 32 or ord(char) == 127 for char in value)  # noqa: PLR2004
        or not (parts.path == PATH or parts.path.startswith(f"{PATH}/"))
        or parts.path.startswith(f"{PATH}/login")
    ):
        return PATH
    return value


async def form_of(request: web.Request) -> dict[str, str] | None:
    """The POSTed form's text fields (the first of each name), or None if it is not a form."""
    try:
        posted = await request.post()
    except (ValueError, LookupError):  # bad encoding, or a charset Python does not know
        return None
    fields: dict[str, str] = {}
    for name, value in posted.items():
        if isinstance(value, str):
            fields.setdefault(name, value)
    return fields


def _field(form: dict[str, str], name: str) -> str:
    return form.get(name, "")


def guarded(page: Page) -> Handler:
    """`page` for signed-in callers only; a session's POST must carry its CSRF token."""

    async def handler(request: web.Request) -> web.StreamResponse:
        token = _token(request)
        if token is None:
            return console_off(request)
        try:
            viewer = await viewer_of(request, token, time.time())
        except StoreUnavailable as exc:
            return _sessions_unknown(request, exc)
        if viewer is None:
            return _unauthorized(request)
        if isinstance(viewer, Throttled):
            return too_many_attempts(viewer)
        if request.method == "POST" and not viewer.bearer:
            form = await form_of(request)
            if form is None or not csrf_ok(
                derive_key(token.get_secret_value()), _session_id(request), _field(form, "csrf")
            ):
                log.warning("console.csrf_refused", path=request.path)
                return error_page(
                    request,
                    403,
                    "Form refused",
                    "This form was stale or did not come from the console. Reload the page"
                    " and try again.",
                    viewer=viewer,
                )
        return await page(request, viewer)

    return handler


def _sessions_unknown(request: web.Request, exc: StoreUnavailable) -> web.Response:
    """503: whether the session was signed out cannot be asked (the store did not answer)."""
    log.warning("console.store_unavailable", path=request.path, detail=str(exc))
    detail = f"The state store did not answer ({exc}), so the session cannot be checked."
    if wants_json(request):
        payload = {"error": "store_unavailable", "detail": detail}
        return json_page(503, payload, {"Retry-After": STORE_RETRY_AFTER})
    return error_page(
        request,
        503,
        "Store unavailable",
        f"{detail} Try again shortly.",
        {"Retry-After": STORE_RETRY_AFTER},
    )


def _session_id(request: web.Request) -> str:
    # Only called once `viewer_of` accepted the cookie: the id is its second part.
    return request.cookies.get(SESSION_COOKIE, "").split(".")[1]


def _unauthorized(request: web.Request) -> web.Response:
    if bearer_of(request) is not None:
        log.warning("console.unauthorized", path=request.path)
    if wants_json(request):
        detail = "sign in, or send Authorization: Bearer <API token>"
        return json_page(401, {"error": "unauthorized", "detail": detail}, CHALLENGE)
    if request.method == "GET":
        return redirect(request, f"{PATH}/login?{urlencode({'next': request.path_qs})}")
    return _login_form(request, 401, "Sign in first.", PATH)


def _login_form(
    request: web.Request,
    status: int,
    error: str | None,
    next_: str,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    nonce = new_session_id()
    response = html(
        request,
        "login.html",
        status,
        {**(CHALLENGE if status == UNAUTHORIZED else {}), **(headers or {})},
        error=error,
        nonce=nonce,
        next=next_,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        nonce,
        path=PATH,
        max_age=LOGIN_SECONDS,
        httponly=True,
        samesite="Strict",
        secure=over_tls(request),
    )
    return response


async def login_page(request: web.Request) -> web.StreamResponse:
    """`GET /console/login`: the sign-in form (or straight on, when signed in already)."""
    token = _token(request)
    if token is None:
        return console_off(request)
    next_ = safe_next(request.query.get("next", PATH))
    try:
        viewer = await viewer_of(request, token, time.time())
    except StoreUnavailable:
        viewer = None  # the form: signing in needs no revocation
    if isinstance(viewer, Throttled):
        return too_many_attempts(viewer)
    if viewer is not None:
        return redirect(request, next_)
    return _login_form(request, 200, None, next_)


async def login(request: web.Request) -> web.StreamResponse:
    """`POST /console/login`: the token in, a session cookie out; a wrong token is 401.

    A client throttled for wrong tokens gets the form again with 429, its token not compared.
    """
    token = _token(request)
    if token is None:
        return console_off(request)
    form = await form_of(request)
    if form is None:
        return _login_form(request, 400, "The form could not be read: sign in again.", PATH)
    next_ = safe_next(_field(form, "next"))
    if not same_nonce(request.cookies.get(LOGIN_COOKIE, ""), _field(form, "csrf")):
        log.warning("console.login_csrf_refused")
        return _login_form(request, 403, "The form expired: sign in again.", next_)
    verdict = judge(request, "console_login", _field(form, "token").strip(), token)
    match verdict:
        case Verdict.ACCEPTED:
            pass
        case Verdict.WRONG:
            log.warning("console.login_failed", remote=request.remote)
            return _login_form(request, 401, "That is not the API token.", next_)
        case Throttled():
            error = (
                "Too many wrong tokens came from your address:"
                f" wait {verdict.retry_after} s and try again."
            )
            return _login_form(request, TOO_MANY_ATTEMPTS, error, next_, retry_after(verdict))
        case _:
            assert_never(verdict)
    ttl = request.app[CONSOLE].session_ttl
    response = redirect(request, next_)
    response.set_cookie(
        SESSION_COOKIE,
        issue(derive_key(token.get_secret_value()), new_session_id(), time.time(), ttl),
        path=PATH,
        max_age=ttl,
        httponly=True,
        samesite="Strict",
        secure=over_tls(request),
    )
    response.del_cookie(LOGIN_COOKIE, path=PATH)
    log.info("console.login", remote=request.remote)
    return response


async def _logout(request: web.Request, viewer: Viewer) -> web.StreamResponse:
    """Revoke the session in the store (a bearer caller has none), and drop its cookie.

    A store that does not answer is 503 and the cookie stays: the session is not over yet.
    """
    if viewer.session is not None:
        expires = datetime.fromtimestamp(viewer.session.expires, UTC)
        try:
            await request.app[STORE].revoke_session(
                viewer.session.session_id, expires, datetime.now(UTC)
            )
        except StoreUnavailable as exc:
            return _sessions_unknown(request, exc)
    response = redirect(request, f"{PATH}/login", Flash("ok", "Signed out."))
    response.del_cookie(SESSION_COOKIE, path=PATH)
    log.info("console.logout", remote=request.remote)
    return response


logout = guarded(_logout)
