"""What every HTTP handler shares: the app keys, the JSON answer shapes, the bearer check's parts.

A credential is judged by `bridge/web/hardening.judge` (throttled per client), which compares
with `same_secret` here: call that, not `same_secret`, for any new check of a sent secret.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

import orjson
from aiohttp import web
from pydantic import SecretStr

from bridge.metrics import Metrics
from bridge.settings import Config
from bridge.store.deliveries import Store
from bridge.tracing import Tracing

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)
TRACING = web.AppKey("tracing", Tracing)


def json_response(
    status: int, payload: Mapping[str, object], headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON answer with `status`."""
    return web.Response(
        status=status, body=orjson.dumps(payload), content_type="application/json", headers=headers
    )


def error_response(
    status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """The error shape every refusal uses: `{"error": code, "detail": text}`."""
    return json_response(status, {"error": code, "detail": detail}, headers)


def bearer_of(request: web.Request) -> str | None:
    """The bearer credential sent, if any (other schemes, say a proxy's Basic, are not ours)."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return given.strip() if scheme.lower() == "bearer" else None


def same_secret(sent: str, secret: SecretStr) -> bool:
    """Whether `sent` is `secret`, compared in constant time.

    aiohttp keeps header and form bytes that are not UTF-8 as surrogates: compare the bytes as
    sent.
    """
    expected = secret.get_secret_value().encode()
    return hmac.compare_digest(sent.encode("utf-8", "surrogateescape"), expected)
