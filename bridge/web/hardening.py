"""What every answer and every credential check gets: `install(app)` puts it on an app.

- **Credential checks** (`judge`): the API token (console sign-in form, console and `/api/*`
  bearer headers) and the `/metrics` token are compared under a per-client `Throttle`, one
  count per secret. A client over its limit is answered 429 `too_many_attempts` with
  `Retry-After`, its credential not compared. Wrong and throttled attempts count in
  `cancel_bridge_auth_failures`. Webhook signatures are not judged here: a platform retrying
  must never be refused for it.
- **Sign-outs** are kept in the store, for every process (`bridge/store/sessions.py`).
- **Every answer** says `Server: cancel-bridge` (not aiohttp's version), and, when it goes out
  over TLS (`over_tls`), `Strict-Transport-Security`. A request aiohttp's parser cannot read is
  answered before any app code runs, by the listener's handler (`connections.OwnedErrors`).

Trusted proxy: the receiver serves plain HTTP, so TLS ends at a proxy in front of it. A proxy
is trusted when the peer address is in `[receiver] trusted_proxies` (`trusted_peer`; loopback
only by default: a private address may as well be a client's own, e.g. behind a NAT or an L4
balancer); its `X-Forwarded-Proto: https` then means the browser used HTTPS, and its
`X-Forwarded-For` names the client the throttle counts (`client_of`). The same headers from any
other peer are ignored.

The throttle's state is the app's (`GUARD`), in this process's memory: see `throttle.py` for
what that means with several processes. An app without `install` (a test mounting the console
alone) checks credentials unthrottled.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

import structlog
from aiohttp import web
from pydantic import SecretStr

from bridge.settings import LOOPBACK
from bridge.web.keys import CONFIG, METRICS, bearer_of, error_response, same_secret
from bridge.web.throttle import Throttle, client_key

log = structlog.get_logger(__name__)

SERVER = "cancel-bridge"
HSTS = "max-age=31536000"  # one year; no includeSubDomains: other hosts of the domain are not ours
TOO_MANY = "too_many_attempts"

Check = Literal["console_login", "console_bearer", "api", "metrics"]  # = metrics.AUTH_CHECKS
# The secret each check compares: one count per secret, so knowing one resets nothing of another.
_SECRET_OF: dict[Check, str] = {
    "console_login": "api_token",
    "console_bearer": "api_token",
    "api": "api_token",
    "metrics": "metrics_token",
}


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(slots=True)
class Guard:
    """An app's memory of wrong credentials, its clock, and the proxies it believes."""

    throttle: Throttle = field(default_factory=Throttle)
    clock: Callable[[], float] = time.monotonic  # for the throttle only; sessions use wall time
    proxies: tuple[Network, ...] = LOOPBACK  # `[receiver] trusted_proxies`


GUARD = web.AppKey("guard", Guard)


class Verdict(Enum):
    """A credential compared: the secret, or not."""

    ACCEPTED = "accepted"
    WRONG = "wrong"


@dataclass(frozen=True, slots=True)
class Throttled:
    """Not compared: the client must wait `retry_after` seconds."""

    retry_after: int

    @property
    def detail(self) -> str:
        """The words of the 429 answer."""
        return f"too many wrong credentials from your address: try again in {self.retry_after} s"


def install(app: web.Application, clock: Callable[[], float] = time.monotonic) -> None:
    """Give `app` its `Guard` and the answers' headers (`create_app`, `serve_metrics`).

    The proxies believed are the app's configuration's (`[receiver] trusted_proxies`), if any.
    """
    config = app.get(CONFIG)
    proxies = LOOPBACK if config is None else config.settings.receiver.trusted_proxies
    app[GUARD] = Guard(clock=clock, proxies=proxies)
    app.on_response_prepare.append(_stamp)


async def _stamp(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Server"] = SERVER
    if over_tls(request):
        response.headers["Strict-Transport-Security"] = HSTS


def judge(request: web.Request, check: Check, sent: str, secret: SecretStr) -> Verdict | Throttled:
    """Whether `sent` is `secret`, unless the client is throttled (then it is not compared)."""
    guard = request.app.get(GUARD)
    client = client_of(
        request.remote, request.headers.getall("X-Forwarded-For", []), _proxies(request)
    )
    key = f"{_SECRET_OF[check]} {client_key(client)}"
    now = guard.clock() if guard is not None else 0.0
    if guard is not None and (wait := guard.throttle.wait(key, now)) > 0:
        _count(request, check, "throttled")
        return Throttled(max(1, math.ceil(wait)))
    if same_secret(sent, secret):
        if guard is not None:
            guard.throttle.succeeded(key)
        return Verdict.ACCEPTED
    _count(request, check, "wrong")
    if guard is not None and (blocked := guard.throttle.failed(key, now)) > 0:
        log.warning("auth.backoff", check=check, remote=client, seconds=blocked)
    return Verdict.WRONG


def bearer_verdict(
    request: web.Request, check: Check, secret: SecretStr
) -> Verdict | Throttled | None:
    """The `Authorization: Bearer` token `judge`d, or None when the request sends none.

    No token sent is no attempt: neither counted nor throttled (the caller answers 401).
    """
    sent = bearer_of(request)
    return None if sent is None else judge(request, check, sent, secret)


def _count(request: web.Request, check: Check, outcome: str) -> None:
    if (metrics := request.app.get(METRICS)) is not None:
        metrics.auth_failures.labels(check, outcome).inc()


def too_many_attempts(throttled: Throttled, headers: dict[str, str] | None = None) -> web.Response:
    """429 `too_many_attempts`, with `Retry-After`."""
    return error_response(
        429, TOO_MANY, throttled.detail, {**(headers or {}), **retry_after(throttled)}
    )


def retry_after(throttled: Throttled) -> dict[str, str]:
    """The `Retry-After` header of a throttled answer."""
    return {"Retry-After": str(throttled.retry_after)}


def _proxies(request: web.Request) -> tuple[Network, ...]:
    """The proxies the request's app believes (loopback only without `install`)."""
    guard = request.app.get(GUARD)
    return LOOPBACK if guard is None else guard.proxies


def trusted_peer(remote: str | None, proxies: Sequence[Network] = LOOPBACK) -> bool:
    """Whether the peer may speak for the browser: an address of `proxies` (the reverse proxies)."""
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:  # no IP address (a Unix socket's peer, or none): not one we can judge
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in proxies)


def client_of(
    remote: str | None, forwarded_for: list[str], proxies: Sequence[Network] = LOOPBACK
) -> str | None:
    """Who is asking, for the throttle: the peer, or, from a trusted proxy, its client.

    Behind trusted proxies (`trusted_peer`), `X-Forwarded-For` (a header each, or
    comma-separated; each proxy appends the address it heard from) is read from the right: the
    first address that is not a trusted proxy's is the client. A client cannot hide behind a
    value it wrote itself, because its own proxy appended its real address after it. An entry
    that is no IP address ends the walk at the last trusted hop; all trusted, the leftmost is the
    client. From any other peer the header is ignored.
    """
    if not forwarded_for or not trusted_peer(remote, proxies):
        return remote
    hops = [hop.strip() for value in forwarded_for for hop in value.split(",") if hop.strip()]
    client = remote
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return client
        client = hop
        if not trusted_peer(hop, proxies):
            return hop
    return client


def tls_by(
    *,
    secure: bool,
    remote: str | None,
    forwarded_proto: list[str],
    proxies: Sequence[Network] = LOOPBACK,
) -> bool:
    """Whether the browser's connection is TLS: ours, or a trusted proxy's saying `https`.

    Every `X-Forwarded-Proto` value (a header each, or comma-separated) must say `https`: a
    proxy that appends instead of replacing leaves the client's own word in front.
    """
    if secure:
        return True
    words = [word.strip().lower() for value in forwarded_proto for word in value.split(",")]
    return bool(words) and all(word == "https" for word in words) and trusted_peer(remote, proxies)


def over_tls(request: web.Request) -> bool:
    """Whether `request` reached us over HTTPS (directly, or through a trusted TLS proxy)."""
    return tls_by(
        secure=request.secure,
        remote=request.remote,
        proxies=_proxies(request),
        forwarded_proto=request.headers.getall("X-Forwarded-Proto", []),
    )
