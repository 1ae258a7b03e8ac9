"""Pages: the console's jinja2 templates (autoescaped), its response headers, flash notes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from bridge.store.engine import utc
from bridge.web.console.session import Flash, derive_key, open_flash, seal_flash
from bridge.web.hardening import over_tls
from bridge.web.keys import CONFIG, json_response

HERE = Path(__file__).parent
PATH = "/console"  # every cookie of the console is scoped to it
FLASH_COOKIE = "cb_console_flash"
FLASH_SECONDS = 120

# Nothing is fetched from elsewhere, nothing inline runs, no other site may frame or post to us.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, slots=True)
class Console:
    """The console's own state on the app: its templates and how long a login lasts."""

    templates: jinja2.Environment
    session_ttl: int


CONSOLE = web.AppKey("console", Console)


def when(moment: datetime | str | None) -> str:
    """`2026-11-23 21:04:05 UTC` for a datetime or an RFC 3339 string; `-` for none."""
    if moment is None:
        return "-"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return utc(moment).strftime("%Y-%m-%d %H:%M:%S UTC")


def when_exactly(moment: datetime | str) -> str:
    """`2026-11-23 21:04:05.123 UTC`: a timeline's steps are often within one second."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return utc(moment).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def environment() -> jinja2.Environment:
    """The templates, autoescaped; an undefined name is an error, not an empty string."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["when_exactly"] = when_exactly
    env.filters["query"] = urlencode
    return env


def _key(request: web.Request) -> bytes | None:
    token = request.app[CONFIG].api_token
    return None if token is None else derive_key(token.get_secret_value())


def html(
    request: web.Request,
    template: str,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
    **context: object,
) -> web.Response:
    """`template` rendered with `context`, and the flash note left for this page, if any."""
    key = _key(request)
    sealed = request.cookies.get(FLASH_COOKIE)
    flash = open_flash(key, sealed) if key is not None and sealed else None
    page = request.app[CONSOLE].templates.get_template(template)
    response = web.Response(
        status=status,
        text=page.render(flash=flash, **{"viewer": None, "nav": None, **context}),
        content_type="text/html",
        headers={**HEADERS, **(headers or {})},
    )
    if sealed:
        response.del_cookie(FLASH_COOKIE, path=PATH)
    return response


def error_page(
    request: web.Request,
    status: int,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    **context: object,
) -> web.Response:
    """A plain page that says what went wrong and what to do."""
    return html(request, "error.html", status, headers, title=title, detail=detail, **context)


def redirect(request: web.Request, location: str, flash: Flash | None = None) -> web.Response:
    """303 to `location` (a path of ours), leaving `flash` for the page there."""
    response = web.Response(status=303, headers={**HEADERS, "Location": location})
    key = _key(request)
    if flash is not None and key is not None:
        response.set_cookie(
            FLASH_COOKIE,
            seal_flash(key, flash),
            path=PATH,
            max_age=FLASH_SECONDS,
            httponly=True,
            samesite="Strict",
            secure=over_tls(request),
        )
    return response


def json_page(
    status: int, payload: Mapping[str, object], headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON answer with the console's headers (never cached)."""
    return json_response(status, payload, {**HEADERS, **(headers or {})})
