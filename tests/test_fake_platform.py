"""The fakes' shared base: one runner on an ephemeral loopback port, scripts used up in order."""

from __future__ import annotations

import aiohttp
import pytest

from bridge.demo.fake_cj import FakeCJ
from bridge.demo.fake_platform import FakePlatform, ScriptedPlatform
from tests.fakes.occ import FakeOCC
from tests.fakes.prime import FakePrime
from tests.fakes.shoplazza import FakeShoplazza


def fakes() -> list[FakePlatform]:
    """One of each fake platform, as the tests build them."""
    return [
        FakeCJ(),
        FakeShoplazza(tokens={}),
        FakePrime(client_id="id", client_secret="secret"),
        FakeOCC(app_key="key"),
    ]


@pytest.mark.parametrize("fake", fakes(), ids=lambda fake: type(fake).__name__)
async def test_a_fake_serves_on_the_port_start_returns_until_stopped(fake: FakePlatform) -> None:
    """`start()` is the port; `url` is on it; after `stop()` nothing answers there."""
    port = await fake.start()
    try:
        assert fake.url.startswith(f"http://127.0.0.1:{port}")
        async with aiohttp.ClientSession() as session, session.get(fake.base_url) as response:
            assert response.status == 404  # served: no route at the root
    finally:
        await fake.stop()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(fake.base_url)


def test_a_script_answers_an_order_in_order_then_runs_out() -> None:
    """`scripted(order)` pops that order's replies, first first; then None."""
    fake: ScriptedPlatform[str] = ScriptedPlatform()
    fake.script["o-1"] = ["first", "second"]
    assert [fake.scripted("o-1"), fake.scripted("o-1"), fake.scripted("o-1")] == [
        "first",
        "second",
        None,
    ]
    assert fake.scripted("o-2") is None
