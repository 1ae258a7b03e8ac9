"""Property tests of the receiver with Hypothesis: no input gets a 5xx, none is published unsigned.

Random methods, paths, headers, content types and bodies go to the real receiver (real broker
and store). An answer of `accepted` or `quarantined` is the only way anything is published, so
an unsigned request never getting one proves nothing unsigned was published. Signed but mutated
bodies may be accepted, ignored or quarantined, never a 5xx.
"""

from __future__ import annotations

import string
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from handlers.shoplazza import sign
from tests.harness.receiver import SECRET, ClientFactory, make_config, started

PROFILE = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PATHS = st.one_of(
    st.sampled_from(
        [
            "/webhooks/shoplazza",
            "/webhooks/occ",
            "/webhooks/prime",
            "/webhooks/",
            "/webhooks/shoplazza/../../api/links",
            "/api/orders/shoplazza/1",
            "/api/orders/shoplazza/1%27%20OR%201=1--",
            "/oauth/token",
            "/healthz",
            "/",
        ]
    ),
    # Not starting with "//": the test client would take that for another host.
    st.text(alphabet=string.ascii_letters + string.digits + "/%.-_~'", max_size=60).map(
        lambda tail: "/" + tail.lstrip("/")
    ),
)
HEADER_NAMES = st.sampled_from(
    [
        "X-Shoplazza-Hmac-Sha256",
        "X-Shoplazza-Topic",
        "X-Shoplazza-Shop-Domain",
        "X-Shoplazza-Deduplication-ID",
        "Content-Type",
        "Content-Encoding",
        "Authorization",
        "X-Oracle-CC-WebHook-Signature",
        "X-Custom",
    ]
)
HEADER_VALUES = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300
)
BODIES = st.one_of(
    st.binary(max_size=2000),
    st.builds(
        orjson.dumps,
        st.dictionaries(
            st.sampled_from(["id", "order", "status", "cancelled_at", "number", "cancel_reason"]),
            st.one_of(
                st.none(),
                st.integers(min_value=-(2**63), max_value=2**64 - 1),
                st.text(max_size=50),
                st.booleans(),
            ),
            max_size=6,
        ),
    ),
)


@PROFILE
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
    path=PATHS,
    headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=6),
    body=BODIES,
)
async def test_unsigned_anything_is_never_a_5xx_nor_published(  # noqa: PLR0913, PLR0917 - drawn
    aiohttp_client: ClientFactory,
    amqp_url: str,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes,
) -> None:
    client = await _client(aiohttp_client, amqp_url)
    response = await client.request(method, path, headers=headers, data=body)
    assert response.status < 500, (method, path, headers, response.status)
    text = await response.read()
    answer = orjson.loads(text) if text else {}
    assert answer.get("status") not in ("accepted", "quarantined"), (method, path, answer)


@PROFILE
@given(
    body=BODIES,
    topic=st.sampled_from(["orders/cancelled", "orders/updated", "orders/create", ""]),
    shop=st.text(alphabet=string.ascii_lowercase + ".-", min_size=0, max_size=40),
)
async def test_signed_mutations_are_answered_without_a_5xx(
    aiohttp_client: ClientFactory, amqp_url: str, body: bytes, topic: str, shop: str
) -> None:
    client = await _client(aiohttp_client, amqp_url)
    headers = {
        "X-Shoplazza-Hmac-Sha256": sign(body, SECRET),
        "X-Shoplazza-Topic": topic,
        "X-Shoplazza-Shop-Domain": shop,
        "Content-Type": "application/json",
    }
    response = await client.post("/webhooks/shoplazza", headers=headers, data=body)
    assert response.status in (200, 400), (body[:100], topic, shop, response.status)
    answer = orjson.loads(await response.read())
    if response.status == 200:
        assert answer["status"] in ("accepted", "ignored", "quarantined")


_CLIENTS: dict[int, Any] = {}


async def _client(aiohttp_client: ClientFactory, amqp_url: str) -> Any:  # noqa: ANN401 - TestClient
    """One receiver per test function (Hypothesis runs many examples in one test)."""
    key = id(aiohttp_client)
    if key not in _CLIENTS:
        _CLIENTS.clear()
        _CLIENTS[key] = await started(aiohttp_client, make_config(amqp_url))
    return _CLIENTS[key]
