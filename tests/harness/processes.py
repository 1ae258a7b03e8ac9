"""Bridge processes for tests: start `python -m bridge ...`, read its JSON log lines, stop it."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Mapping

import orjson

from bridge.demo.scenario import free_port as free_port  # noqa: PLC0414 - re-exported (mypy)

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


class Bridge:
    """A `python -m bridge run` child process and the JSON lines it printed."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.lines: list[dict[str, object]] = []

    async def wait_for(self, *events: str) -> None:
        """Read log lines until every one of `events` has been seen.

        An event may name its connection too: `broker.connected/receiver`.
        """
        wanted = set(events)
        assert self.process.stdout is not None
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while wanted:
                line = await self.process.stdout.readline()
                assert line, f"bridge exited early; saw {self.lines}"
                entry = orjson.loads(line)  # every line is one JSON object
                self.lines.append(entry)
                event = str(entry["event"])
                wanted.discard(event)
                wanted.discard(f"{event}/{entry.get('connection')}")

    async def stop(self) -> tuple[int, bytes]:
        """SIGTERM, then the exit status and the rest of the output."""
        self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(STOP_TIMEOUT):
            rest, _ = await self.process.communicate()
        assert self.process.returncode is not None
        return self.process.returncode, rest


async def spawn(args: list[str], env: Mapping[str, str], port: int = 0) -> Bridge:
    """`python -m bridge ARGS` with `env`, its output (JSON lines) piped for `wait_for`."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        *args,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    return Bridge(process, port)
