"""Bridge processes for load and fault tests: configs, children whose logs are read as they come.

`tests/harness/processes.py` reads a child's log lines only while a test waits for one; under load
a child prints thousands of lines, and an unread pipe would block it. A `Child` reads every line
from the start, counts events, keeps the last lines and the error lines for failure messages,
and lets a test await an event (or its n-th occurrence).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import re
import signal
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import orjson

from bridge.demo.fake_cj import TOKEN
from tests.harness.processes import free_port
from tests.harness.receiver import SECRET
from tests.harness.stores import store_section

START_TIMEOUT = 60.0  # seconds for a child to log that it is ready (a busy machine)
STOP_TIMEOUT = 30.0  # SIGTERM, then this long to drain and exit
LINE_LIMIT = 1 << 20  # a line with a traceback can be long
TAIL = 30
ERRORS_KEPT = 20
BRIDGE_EVENT = re.compile(r"[a-z_]+\.[a-z_]+")  # the bridge's own: `cancel.delivered`


def write_config(  # noqa: PLR0913 - one argument per section a test may want
    path: Path,
    *,
    store_url: str,
    receiver_port: int | None = None,
    cj_url: str | None = None,
    confirm_timeout: float = 2.0,
    retry_delays: tuple[float, ...] = (0.5, 1.0),
    spool: bool = True,
) -> dict[str, str]:
    """Write a bridge config to `path`; return the environment it needs besides AMQP_URL.

    With `receiver_port`: the receiver and the Shoplazza source (`spool`: `[receiver] spool`).
    With `cj_url`: the CJ target and the route shoplazza -> cj (so `run` also starts a worker;
    `worker --target cj` works).
    """
    store, env = store_section(store_url)
    lines = [
        "[broker]",
        "reconnect_interval = 0.2",
        "connect_timeout = 2.0",
        f"confirm_timeout = {confirm_timeout}",
        "[log]",
        'level = "info"',
        "[store]",
        *(f'{key} = "{value}"' for key, value in store.items()),
    ]
    if receiver_port is not None:
        lines += [
            "[receiver]",
            f"port = {receiver_port}",
            f"spool = {'true' if spool else 'false'}",
            "[sources.shoplazza]",
            'secret_env = "SHOPLAZZA_CLIENT_SECRET"',
        ]
        env["SHOPLAZZA_CLIENT_SECRET"] = SECRET
    if cj_url is not None:
        lines += [
            "[targets.cj]",
            f'url = "{cj_url}"',
            'enterprise_id = "1234567"',
            "action_tracker_id = 987654",
            "open_ended_locking = true",
            'order_id_from = "order_id"',
            "timeout_s = 5",
            "[worker]",
            f"retry_delays = {list(retry_delays)}",
            "[routes]",
            'shoplazza = ["cj"]',
        ]
        env["CJ_ACCESS_TOKEN"] = TOKEN
    path.write_text("\n".join(lines) + "\n")
    return env


class Child:
    """A `python -m bridge ...` child; every log line is read, counted and partly kept."""

    def __init__(
        self, name: str, process: asyncio.subprocess.Process, port: int | None, log: Path
    ) -> None:
        self.name = name
        self.process = process
        self.port = port
        self.log = log  # every line, for a look after a failure
        self.events: collections.Counter[str] = collections.Counter()
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL)
        self.errors: list[str] = []  # lines logged at level error (tracebacks included)
        self._changed = asyncio.Condition()
        self._eof = False
        self._reader = asyncio.create_task(self._read(), name=f"read {name}")

    @property
    def url(self) -> str:
        """The receiver's webhook URL."""
        return f"http://127.0.0.1:{self.port}/webhooks/shoplazza"

    async def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        with self.log.open("ab") as log:
            while line := await stdout.readline():
                log.write(line)
                await self._line(line)
        async with self._changed:
            self._eof = True
            self._changed.notify_all()  # waiters see the process gone

    async def _line(self, line: bytes) -> None:
        text = line.decode(errors="replace").rstrip()
        self.tail.append(text)
        try:
            entry = orjson.loads(line)
        except orjson.JSONDecodeError:
            entry = {"event": "(not json)", "level": "error"}
        event = str(entry.get("event"))
        async with self._changed:
            self.events[event] += 1
            if entry.get("connection"):
                self.events[f"{event}/{entry['connection']}"] += 1
            if entry.get("level") in ("error", "critical") and len(self.errors) < ERRORS_KEPT:
                self.errors.append(text[:3000])
            self._changed.notify_all()

    async def wait_for(self, *events: str, count: int = 1, within: float = START_TIMEOUT) -> None:
        """Return once each of `events` (`event` or `event/connection`) was logged `count` times."""
        try:
            async with asyncio.timeout(within), self._changed:
                while not all(self.events[event] >= count for event in events):
                    assert not self._eof, f"{self.name} exited: {self.last_lines()}"
                    await self._changed.wait()
        except TimeoutError:
            msg = f"{self.name}: no {events} x{count} in {within:g}s; {self.last_lines()}"
            raise AssertionError(msg) from None

    def last_lines(self) -> str:
        """The last lines the child printed."""
        return "\n".join(self.tail)

    def summary(self) -> str:
        """Event counts worth reading after a fault, and the first error lines."""
        ours = {e: n for e, n in sorted(self.events.items()) if BRIDGE_EVENT.fullmatch(e)}
        others = sum(n for e, n in self.events.items() if "/" not in e and e not in ours)
        notable = {**ours, "(lines of libraries)": others}
        errors = "\n  ".join(self.errors[:3])
        head = f"{self.name} (log {self.log}): {notable}"
        return head + (f"\n  first errors:\n  {errors}" if errors else "")

    async def stop(self) -> int:
        """SIGTERM, wait for the exit (SIGKILL after STOP_TIMEOUT); the exit status."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(STOP_TIMEOUT):
                await self.process.wait()
        except TimeoutError:
            self.kill()
            await self.process.wait()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        assert self.process.returncode is not None
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL, if still running."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()


class Fleet:
    """The children a test started; `close()` stops whatever still runs."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.children: list[Child] = []

    def __iter__(self) -> Iterator[Child]:
        return iter(self.children)

    async def start(
        self,
        name: str,
        args: list[str],
        *,
        amqp_url: str,
        env: Mapping[str, str],
        port: int | None = None,
    ) -> Child:
        """`python -m bridge ARGS` with `env` and AMQP_URL; not awaited ready (see `wait_for`)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge",
            *args,
            env={**os.environ, **env, "AMQP_URL": amqp_url},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            limit=LINE_LIMIT,
        )
        child = Child(name, process, port, self.folder / f"{name}.log")
        self.children.append(child)
        return child

    async def run_bridge(
        self, name: str, *, amqp_url: str, store_url: str, cj_url: str | None, spool: bool = True
    ) -> Child:
        """`run`: a receiver (and a CJ worker when `cj_url` is given), ready to serve."""
        port = free_port()
        config = self.folder / f"{name}.toml"
        env = write_config(
            config, store_url=store_url, receiver_port=port, cj_url=cj_url, spool=spool
        )
        child = await self.start(
            name, ["run", "--config", str(config)], amqp_url=amqp_url, env=env, port=port
        )
        ready = ["receiver.listening", "broker.connected/receiver"]
        await child.wait_for(*ready, *(["worker.consuming"] if cj_url else []))
        return child

    async def worker(self, name: str, *, amqp_url: str, store_url: str, cj_url: str) -> Child:
        """`worker --target cj`, consuming."""
        config = self.folder / f"{name}.toml"
        env = write_config(config, store_url=store_url, cj_url=cj_url)
        child = await self.start(
            name,
            ["worker", "--target", "cj", "--config", str(config)],
            amqp_url=amqp_url,
            env=env,
        )
        await child.wait_for("worker.consuming")
        return child

    def summary(self) -> str:
        """Every child's summary, one after the other."""
        return "\n".join(child.summary() for child in self.children)

    async def close(self) -> None:
        """Stop every child still running (SIGTERM, then SIGKILL)."""
        await asyncio.gather(*(child.stop() for child in self.children), return_exceptions=True)
        for child in self.children:
            child.kill()
