"""`POST /oauth/token`: the token endpoint Buy with Prime calls when its webhook auth is OAuth.

OAuth 2.0 client credentials (RFC 6749 section 4.4): the client authenticates with HTTP Basic or
with `client_id`/`client_secret` form fields; the answer is a short-lived bearer token signed with
the source's secret (so every receiver process accepts it). Errors use RFC 6749's `error` codes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from datetime import UTC, datetime

import structlog
from aiohttp import web

from bridge.web.keys import CONFIG, json_response
from contracts.events import Source
from handlers.prime import WEBHOOK_TOKEN_LIFETIME, issue_token

log = structlog.get_logger(__name__)
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _oauth_error(status: int, code: str, detail: str) -> web.Response:
    headers = dict(NO_STORE)
    if status == 401:  # noqa: PLR2004
        headers["WWW-Authenticate"] = 'Basic realm="cancel-bridge"'
    body = {"error": code, "error_description": detail, "detail": detail}
    return json_response(status, body, headers)


def _client(request: web.Request, form: dict[str, str]) -> tuple[str, str]:
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(credentials, validate=True).decode().partition(":")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return "", ""
        return user, password
    return form.get("client_id", ""), form.get("client_secret", "")


async def token(request: web.Request) -> web.Response:
    """Issue a bearer token to the configured Prime client."""
    config = request.app[CONFIG]
    src = config.settings.sources.get(Source.PRIME)
    if src is None or src.auth != "oauth":
        return _oauth_error(404, "not_found", "no source uses OAuth here")
    try:
        form = {k: str(v) for k, v in (await request.post()).items()}
    except (ValueError, LookupError):  # bad encoding, or a charset Python does not know
        form = {}
    if form.get("grant_type") != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
    client_id, client_secret = _client(request, form)
    secrets = config.secrets_now(Source.PRIME, datetime.now(UTC))
    known = hmac.compare_digest(client_id.encode(), (src.username or "").encode())
    if not known or not any(
        hmac.compare_digest(client_secret.encode(), s.get_secret_value().encode()) for s in secrets
    ):
        log.warning("oauth.refused", client_id_matches=known)
        return _oauth_error(401, "invalid_client", "unknown client or wrong secret")
    issued = issue_token(client_id, secrets[0], datetime.now(UTC))
    answer = {"access_token": issued, "token_type": "Bearer", "expires_in": WEBHOOK_TOKEN_LIFETIME}
    return json_response(200, answer, NO_STORE)
