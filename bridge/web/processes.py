"""More receiver processes on one port (`[receiver] processes`), kept running by `run`.

One Python process serves webhooks on one core. With `processes = N`, `run` binds its port with
`SO_REUSEPORT` and starts N - 1 `cancel-bridge receiver` children that bind it the same way; the
kernel spreads new connections over all of them. Each child has its own broker connection and
store connection (SQLite in WAL mode takes several processes; PostgreSQL any number). A child
that exits unexpectedly is started again; on SIGTERM `run` stops its children and waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

RESTART_DELAY = 1.0  # seconds before a child that exited is started again
STOP_GRACE = 5.0  # seconds beyond the receiver's shutdown timeout before SIGKILL


class Children:
    """The extra receiver processes: started, restarted when they exit, stopped on exit."""

    def __init__(self, config_path: Path, env: Mapping[str, str], stop_timeout: float) -> None:
        self._args = [sys.executable, "-m", "bridge", "receiver", "--config", str(config_path)]
        self._env = dict(env)
        self._stop_timeout = stop_timeout + STOP_GRACE
        self._running: set[asyncio.subprocess.Process] = set()
        self._stopping = False

    async def keep(self, slot: int) -> None:
        """Run one child in `slot` until stopping, starting it again whenever it exits."""
        while not self._stopping:
            process = await asyncio.create_subprocess_exec(
                *self._args, "--slot", str(slot), env=self._env, stdin=asyncio.subprocess.DEVNULL
            )
            self._running.add(process)
            log.info("receiver.process_started", slot=slot, child=process.pid)
            if self._stopping:  # `stop` ran while this one was starting
                process.send_signal(signal.SIGTERM)
            try:
                code = await process.wait()
            except asyncio.CancelledError:
                if process.returncode is None:  # never leave an orphan behind
                    process.kill()
                raise
            finally:
                self._running.discard(process)
            if self._stopping:
                return
            log.error("receiver.process_exited", slot=slot, child=process.pid, code=code)
            await asyncio.sleep(RESTART_DELAY)  # a child that cannot start must not spin

    async def stop(self) -> None:
        """SIGTERM every child, wait for them, SIGKILL any still there after the grace period."""
        self._stopping = True
        for process in self._running:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        waiting = [asyncio.ensure_future(p.wait()) for p in self._running]
        if not waiting:
            return
        _, late = await asyncio.wait(waiting, timeout=self._stop_timeout)
        for process in list(self._running):
            if process.returncode is None:
                log.warning("receiver.process_killed", child=process.pid)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        if late:
            await asyncio.gather(*late)


@contextlib.asynccontextmanager
async def children(
    count: int, config_path: Path, env: Mapping[str, str], stop_timeout: float
) -> AsyncIterator[Children]:
    """`count` receiver children for the lifetime of the context."""
    kept = Children(config_path, env, stop_timeout)
    tasks = [asyncio.create_task(kept.keep(slot)) for slot in range(1, count + 1)]
    try:
        yield kept
    finally:
        await kept.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
