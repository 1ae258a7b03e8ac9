"""What every HTTP handler shares: the app keys and the JSON answer shapes."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from aiohttp import web

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
