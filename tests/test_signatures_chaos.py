"""Signatures through the real receiver: every wrong one is 401, and a rotation's grace ends.

Wrong secret, wrong algorithm, truncated, hex instead of base64, both OCC headers wrong, a previous
secret after `previous_secret_until`: all 401, nothing published (the answer is never `accepted`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from bridge.settings import Config, parse_settings, resolve
from handlers.occ import sign as occ_sign
from handlers.shoplazza import sign
from tests.harness.receiver import (
    PREVIOUS_SECRET,
    SECRET,
    ClientFactory,
    shoplazza_webhook,
    started,
)
from tests.harness.stores import scratch_store

OCC_SECRET = base64.b64encode(b"occ-signature-test-key").decode()
OCC_PREVIOUS = base64.b64encode(b"occ-previous-test-key").decode()


def config(amqp_url: str, grace_ends: datetime) -> Config:
    settings = parse_settings(
        {
            "broker": {"confirm_timeout": 2.0, "reconnect_interval": 0.2},
            "sources": {
                "shoplazza": {
                    "secret_env": "SL",
                    "previous_secret_env": "SL_OLD",
                    "previous_secret_until": grace_ends,
                },
                "occ": {
                    "secret_env": "OCC",
                    "previous_secret_env": "OCC_OLD",
                    "previous_secret_until": grace_ends,
                },
            },
            "store": {"path": scratch_store()},
        }
    )
    env = {
        "AMQP_URL": amqp_url,
        "SL": SECRET,
        "SL_OLD": PREVIOUS_SECRET,
        "OCC": OCC_SECRET,
        "OCC_OLD": OCC_PREVIOUS,
    }
    return resolve(settings, env)


def mac(body: bytes, key: bytes, digest: str) -> str:
    return base64.b64encode(hmac.new(key, body, getattr(hashlib, digest)).digest()).decode()


async def post(client: Any, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:  # noqa: ANN401
    response = await client.post(path, data=body, headers=headers)
    return response.status, orjson.loads(await response.read())


async def test_every_wrong_signature_is_401(aiohttp_client: ClientFactory, amqp_url: str) -> None:
    client = await started(aiohttp_client, config(amqp_url, datetime.now(UTC) + timedelta(days=1)))
    hook = shoplazza_webhook()
    good = hook.headers["X-Shoplazza-Hmac-Sha256"]
    wrong = {
        "wrong secret": sign(hook.body, "not-the-secret"),
        "wrong algorithm": mac(hook.body, SECRET.encode(), "sha1"),
        "truncated": good[:20],
        "hex": hmac.new(SECRET.encode(), hook.body, hashlib.sha256).hexdigest(),
        "padding stripped": good.rstrip("="),
    }
    for case, signature in wrong.items():
        status, answer = await post(
            client,
            "/webhooks/shoplazza",
            hook.body,
            {**hook.headers, "X-Shoplazza-Hmac-Sha256": signature},
        )
        assert (status, answer["error"]) == (401, "bad_signature"), case
    body = b'{"order": {"id": "o1"}}'
    occ_headers = {"x-ccsite": "siteUS"}
    for case, signature in {
        "wrong secret": occ_sign(body, base64.b64encode(b"other").decode()),
        "algorithm OCC never uses": mac(body, b"occ-signature-test-key", "sha384"),
        "sha256 with a wrong secret": occ_sign(body, base64.b64encode(b"other").decode(), "sha256"),
        "raw key": occ_sign(body, OCC_SECRET, encoding="raw"),
        "truncated": occ_sign(body, OCC_SECRET)[:30],
        "hex": hmac.new(b"occ-signature-test-key", body, hashlib.sha512).hexdigest(),
    }.items():
        status, answer = await post(
            client,
            "/webhooks/occ",
            body,
            {**occ_headers, "X-Oracle-CC-WebHook-Signature": signature},
        )
        assert (status, answer["error"]) == (401, "bad_signature"), case
    wrong_both = {
        **occ_headers,
        "X-Oracle-CC-WebHook-Signature": occ_sign(body, OCC_PREVIOUS + "x", "sha1"),
        "X-Oracle-CC-WebHook-Signature-SHA512": occ_sign(body, OCC_SECRET)[:-4] + "AAA=",
    }
    status, answer = await post(client, "/webhooks/occ", body, wrong_both)
    assert (status, answer["error"]) == (401, "bad_signature"), "both headers wrong"
    assert OCC_SECRET not in str(answer)


async def test_the_previous_secret_works_until_its_grace_ends(
    aiohttp_client: ClientFactory, amqp_url: str
) -> None:
    during = await started(aiohttp_client, config(amqp_url, datetime.now(UTC) + timedelta(days=1)))
    after = await started(
        aiohttp_client, config(amqp_url, datetime.now(UTC) - timedelta(seconds=1))
    )
    old = shoplazza_webhook(secret=PREVIOUS_SECRET)
    current = shoplazza_webhook()
    assert (await post(during, "/webhooks/shoplazza", old.body, old.headers))[0] == 200
    status, answer = await post(after, "/webhooks/shoplazza", old.body, old.headers)
    assert (status, answer["error"]) == (401, "bad_signature")
    assert (await post(after, "/webhooks/shoplazza", current.body, current.headers))[0] == 200
    body = b'{"order": {"id": "o-grace"}}'
    headers = {"x-ccsite": "siteUS", "X-Oracle-CC-WebHook-Signature": occ_sign(body, OCC_PREVIOUS)}
    assert (await post(during, "/webhooks/occ", body, headers))[0] == 200
    assert (await post(after, "/webhooks/occ", body, headers))[0] == 401
