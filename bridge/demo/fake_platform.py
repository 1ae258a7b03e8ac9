"""What every fake platform is made of: a small scripted server on an ephemeral loopback port.

The demo's fake CJ (`bridge/demo/fake_cj.py`) and the tests' fakes (`tests/fakes/`) are
`FakePlatform`s: `routes` adds the platform's handlers, `start()` serves them on 127.0.0.1 and
returns the port (`url` is then the base URL, unless the fake names an endpoint), `stop()` ends
serving and cuts scripted delays short. What a fake records (the calls it received) it records
with `record`, and a test awaits a condition on it with `wait_until` instead of sleeping. A fake
that answers per order from a script is a `ScriptedPlatform`: `script[order]` holds that order's
next replies, first used first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from aiohttp import web

HOST = "127.0.0.1"

CallT = TypeVar("CallT")
ReplyT = TypeVar("ReplyT")


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    """Serve `app` on an ephemeral loopback port; its runner and base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    return runner, f"http://{HOST}:{runner.addresses[0][1]}"


class FakePlatform:
    """The runner, the base URL, and the condition a fake's recorded calls are awaited on."""

    def __init__(self) -> None:
        self.url = ""  # the base URL once started (a fake may point it at its endpoint)
        self.base_url = ""
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Condition()
        self._stopping = asyncio.Event()

    def routes(self, app: web.Application) -> None:
        """Add the platform's handlers to `app`."""
        raise NotImplementedError

    def served(self) -> None:
        """Called once serving, with `base_url` and `port` set (a fake may name its URLs)."""

    async def start(self) -> int:
        """Serve on an ephemeral loopback port; returns the port."""
        app = web.Application()
        self.routes(app)
        self._runner, self.base_url = await serve(app)
        self.port = self._runner.addresses[0][1]
        self.url = self.base_url
        self.served()
        return self.port

    async def stop(self) -> None:
        """Stop serving (scripted delays end at once)."""
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def record(self, calls: list[CallT], *received: CallT) -> None:
        """Append `received` to `calls` and wake whoever awaits a condition on them."""
        async with self._changed:
            calls.extend(received)
            self._changed.notify_all()

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Return once `condition()` holds (checked after each recorded call)."""
        async with self._changed:
            await self._changed.wait_for(condition)

    async def delay(self, seconds: float) -> None:
        """Sleep `seconds` (a scripted slowness), cut short when the fake stops."""
        if seconds <= 0:
            return
        try:
            async with asyncio.timeout(seconds):
                await self._stopping.wait()
        except TimeoutError:
            return


class ScriptedPlatform(FakePlatform, Generic[ReplyT]):
    """A fake that answers an order from its script first: `script[order]`, first used first."""

    def __init__(self) -> None:
        super().__init__()
        self.script: dict[str, list[ReplyT]] = {}

    def scripted(self, order: str) -> ReplyT | None:
        """`order`'s next scripted reply (used up), or None when its script is empty."""
        replies = self.script.get(order)
        return replies.pop(0) if replies else None
