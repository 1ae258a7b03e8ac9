"""Private RabbitMQ nodes for chaos tests: start, stop, start again, cluster, inspect.

The machine's main broker (`rabbit@localhost`, 127.0.0.1:5672) is shared with other tests and
benchmarks: a test that stops or restarts a broker starts its own node instead, with its own
name, ports, data, logs and Erlang cookie under the test's temporary folder, and stops it at
the end. The nodes share the machine's epmd (port 4369), as every local node does.

Ports are taken below Linux's ephemeral range (32768 and up): while a node is down, an outgoing
connection could otherwise be given its port, and it could not listen again on restart
(rabbitmqctl's own distribution ports, 35672-35682, once did exactly that).

`rabbitmqctl -n NODE` is the one way to ask a node anything: `wait` for the start, `stop`,
`list_queues` for queue depths (on RabbitMQ 3.10.8 a passive queue.declare on a quorum queue
reported messages that `list_queues` did not), `join_cluster` and `cluster_status`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import shutil
import signal
import socket
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

import aio_pika
import orjson
import pytest
from aio_pika.exceptions import CONNECTION_EXCEPTIONS

RABBITMQ_BIN_ENV = "RABBITMQ_BIN"  # a folder holding rabbitmq-server and rabbitmqctl
# Debian's scripts proper: the /usr/sbin wrappers switch to the rabbitmq user when run as root,
# who could not write the test's temporary folder.
DEBIAN_BIN = Path("/usr/lib/rabbitmq/bin")
START_TIMEOUT = 120.0  # seconds for a node to boot (the machine is shared: be generous)
STOP_TIMEOUT = 60.0
CTL_TIMEOUT = 60.0  # seconds for one rabbitmqctl command
POLL = 0.25  # seconds between looks at state that cannot notify (a port, cluster membership)
PORTS = (20000, 32000)  # below the ephemeral range, see the module docstring
LOG_TAIL = 15


class RabbitUnavailable(Exception):  # noqa: N818 - a state, like the bridge's BrokerUnavailable
    """RabbitMQ cannot be run here: not installed, or the node would not boot."""


class RabbitCtlError(Exception):
    """A rabbitmqctl command failed; the message has its output."""


def unavailable(reason: str) -> NoReturn:
    """Skip loudly on a developer machine without RabbitMQ; under CI=true, fail."""
    text = f"NO PRIVATE RABBITMQ NODE: {reason}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {text}")
    pytest.skip(text)


def rabbit_bin() -> Path:
    """The folder of `rabbitmq-server` and `rabbitmqctl` (RABBITMQ_BIN overrides)."""
    if configured := os.environ.get(RABBITMQ_BIN_ENV):
        folder = Path(configured)
    elif DEBIAN_BIN.is_dir():
        folder = DEBIAN_BIN
    elif found := shutil.which("rabbitmq-server"):
        folder = Path(found).parent
    else:
        raise RabbitUnavailable("rabbitmq-server is not installed (or set RABBITMQ_BIN)")
    for script in ("rabbitmq-server", "rabbitmqctl"):
        if not (folder / script).exists():
            raise RabbitUnavailable(f"{folder / script} does not exist")
    return folder


_ports_taken: set[int] = set()  # by nodes of this test process, running or stopped


def private_port() -> int:
    """A loopback port below the ephemeral range that nothing listens on now."""
    rng = random.Random()  # noqa: S311 - spreading ports, not cryptography
    for _ in range(200):
        port = rng.randrange(*PORTS)
        if port in _ports_taken:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        _ports_taken.add(port)
        return port
    raise RabbitUnavailable(f"no free port in {PORTS}")


@dataclass(frozen=True, slots=True)
class QueueCount:
    """One queue's depth as `rabbitmqctl list_queues` reports it."""

    ready: int
    unacked: int


class RabbitNode:
    """One private RabbitMQ node: its own name, ports, data and logs under `base`."""

    def __init__(self, base: Path, *, cookie: str | None = None, label: str = "cbtest") -> None:
        self.bin = rabbit_bin()
        short = f"{label}-{uuid.uuid4().hex[:8]}"
        self.name = f"{short}@localhost"
        self.home = base / short
        self.cookie = cookie or secrets.token_hex(16)
        self.amqp_port = private_port()
        self.dist_port = private_port()
        self.pid_file = self.home / "rabbit.pid"
        self.output = self.home / "server.out"
        self._process: asyncio.subprocess.Process | None = None

    def __repr__(self) -> str:
        return f"RabbitNode({self.name}, amqp {self.amqp_port})"

    def url(self, vhost: str = "/") -> str:
        """The AMQP URL of `vhost` on this node (guest/guest, loopback)."""
        path = "" if vhost == "/" else quote(vhost, safe="")
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/{path}"

    @property
    def running(self) -> bool:
        """True while the node's OS process runs (it may still be booting)."""
        return self._process is not None and self._process.returncode is None

    # -- life cycle -------------------------------------------------------------------------

    async def start(self, within: float = START_TIMEOUT) -> None:
        """Boot the node (on its existing data, if it ran before); return once AMQP answers."""
        if self.running:
            return
        self._write_files()
        self.pid_file.unlink(missing_ok=True)
        with self.output.open("ab") as output:
            self._process = await asyncio.create_subprocess_exec(
                str(self.bin / "rabbitmq-server"),
                env=self._server_env(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                cwd=self.home,
                start_new_session=True,  # its own process group: `kill` takes all of it
            )
        started = time.monotonic()
        try:
            # `wait` waits for the pid file, then for the rabbit application to run.
            await self.ctl(
                "wait", str(self.pid_file), "--timeout", str(int(within)), within=within + 10
            )
        except (RabbitCtlError, TimeoutError) as exc:
            self.kill()
            raise RabbitUnavailable(f"{self.name} did not boot: {exc}\n{self.log_tail()}") from None
        await self.wait_amqp(within - (time.monotonic() - started))

    async def stop(self, within: float = STOP_TIMEOUT) -> None:
        """Stop the node as an operator would (its data stays for the next `start`)."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        try:
            await self.ctl("stop", str(self.pid_file), within=within)
        except (RabbitCtlError, TimeoutError):
            self.kill()
        try:
            async with asyncio.timeout(within):
                await process.wait()
        except TimeoutError:
            self.kill()
            await process.wait()

    def kill(self) -> None:
        """SIGKILL the node's whole process group (the last resort of a clean-up)."""
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)

    async def stop_app(self) -> None:
        """Stop the rabbit application (connections closed), the Erlang node stays up."""
        await self.ctl("stop_app")

    async def start_app(self) -> None:
        """Start the rabbit application again; return once AMQP answers."""
        await self.ctl("start_app")
        await self.wait_amqp(START_TIMEOUT)

    async def wait_amqp(self, within: float = START_TIMEOUT) -> None:
        """Return once an AMQP client can open a connection (guest, vhost `/`)."""
        last = "no attempt"
        async with asyncio.timeout(max(within, 1.0)):
            while True:
                try:
                    connection = await aio_pika.connect(self.url(), timeout=5)
                except (*CONNECTION_EXCEPTIONS, OSError, TimeoutError) as exc:
                    last = f"{type(exc).__name__}: {exc}"
                else:
                    await connection.close()
                    return
                if not self.running:
                    msg = f"{self.name} exited while waiting for AMQP ({last})\n{self.log_tail()}"
                    raise RabbitUnavailable(msg)
                await asyncio.sleep(POLL)  # paced: a closed port cannot notify

    # -- rabbitmqctl -------------------------------------------------------------------------

    async def ctl(self, *args: str, within: float = CTL_TIMEOUT) -> str:
        """`rabbitmqctl -n NODE ARGS`; its standard output, or `RabbitCtlError`."""
        process = await asyncio.create_subprocess_exec(
            str(self.bin / "rabbitmqctl"),
            "-n",
            self.name,
            "--erlang-cookie",
            self.cookie,
            *args,
            env=self._ctl_env(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(within):
                out, err = await process.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise RabbitCtlError(
                f"rabbitmqctl {' '.join(args)}: no answer in {within:g}s"
            ) from None
        if process.returncode != 0:
            said = (err or out).decode(errors="replace").strip()[-2000:]
            msg = f"rabbitmqctl -n {self.name} {' '.join(args)} exited {process.returncode}: {said}"
            raise RabbitCtlError(msg)
        return out.decode()

    async def add_vhost(self, vhost: str) -> None:
        """Create `vhost` and let guest use it."""
        await self.ctl("add_vhost", vhost)
        await self.ctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")

    async def queue_counts(self, vhost: str = "/") -> dict[str, QueueCount]:
        """Every queue of `vhost` with its ready and unacknowledged messages."""
        out = await self.ctl(
            "list_queues",
            "-p",
            vhost,
            "name",
            "messages_ready",
            "messages_unacknowledged",
            "--formatter",
            "json",
        )
        rows: list[dict[str, Any]] = orjson.loads(out)
        return {
            str(row["name"]): QueueCount(
                int(row["messages_ready"] or 0), int(row["messages_unacknowledged"] or 0)
            )
            for row in rows
        }

    async def queue_members(self, vhost: str = "/") -> dict[str, list[str]]:
        """Every quorum queue of `vhost` with the nodes holding a replica."""
        out = await self.ctl(
            "list_queues", "-p", vhost, "name", "type", "members", "--formatter", "json"
        )
        rows: list[dict[str, Any]] = orjson.loads(out)
        return {
            str(row["name"]): sorted(str(member) for member in row["members"] or ())
            for row in rows
            if row.get("type") == "quorum"
        }

    async def running_nodes(self) -> list[str]:
        """The cluster's running nodes, as this node sees them."""
        status: dict[str, Any] = orjson.loads(
            await self.ctl("cluster_status", "--formatter", "json")
        )
        return sorted(str(node) for node in status.get("running_nodes", ()))

    async def join(self, seed: RabbitNode) -> None:
        """Join `seed`'s cluster (a fresh node: nothing of its own to reset)."""
        await self.ctl("stop_app")
        await self.ctl("join_cluster", seed.name)
        await self.start_app()

    # -- files and environments ---------------------------------------------------------------

    def log_tail(self, lines: int = LOG_TAIL) -> str:
        """The last lines of the node's console output, for failure messages."""
        try:
            text = self.output.read_text(errors="replace")
        except OSError:
            return f"({self.output} unreadable)"
        return "\n".join(text.strip().splitlines()[-lines:])

    def _write_files(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        # No plugins (no management listener); guest may connect over loopback only (default).
        (self.home / "rabbitmq.conf").write_text(
            "log.console = true\nlog.console.level = warning\n"
        )
        (self.home / "enabled_plugins").write_text("[].\n")
        (self.home / "rabbitmq-env.conf").write_text("")  # not the machine's /etc one

    def _base_env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),  # Erlang writes .erlang.cookie here, not in ~root
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "RABBITMQ_CONF_ENV_FILE": str(self.home / "rabbitmq-env.conf"),
        }

    def _server_env(self) -> dict[str, str]:
        return {
            **self._base_env(),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.home / "log"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_CONFIG_FILE": str(self.home / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.home / "enabled_plugins"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                f"-setcookie {self.cookie} -kernel inet_dist_use_interface {{127,0,0,1}}"
            ),
        }

    def _ctl_env(self) -> dict[str, str]:
        return self._base_env()


class RabbitCluster:
    """Private nodes joined into one cluster (the first is the seed the others join)."""

    def __init__(self, base: Path, size: int = 3) -> None:
        cookie = secrets.token_hex(16)
        self.nodes = [RabbitNode(base, cookie=cookie, label=f"cbc{n + 1}") for n in range(size)]

    async def start(self) -> None:
        """Boot every node, join the others to the first, wait until all run together."""
        await asyncio.gather(*(node.start() for node in self.nodes))
        for node in self.nodes[1:]:
            await node.join(self.nodes[0])
        await self.wait_running(self.nodes)

    async def wait_running(
        self, expected: Sequence[RabbitNode], within: float = START_TIMEOUT
    ) -> None:
        """Return once a running node of `expected` sees exactly `expected` running."""
        wanted = sorted(node.name for node in expected)
        seen: list[str] = []
        try:
            async with asyncio.timeout(within):
                while (seen := await expected[0].running_nodes()) != wanted:  # noqa: ASYNC110
                    await asyncio.sleep(POLL)  # paced: cluster membership cannot notify
        except TimeoutError:
            msg = f"cluster never ran as {wanted}: {expected[0].name} saw {seen}"
            raise AssertionError(msg) from None

    async def stop(self) -> None:
        """Stop every node (all at once), killing any that will not stop."""
        await asyncio.gather(*(node.stop() for node in self.nodes), return_exceptions=True)
        for node in self.nodes:
            node.kill()


@contextlib.asynccontextmanager
async def private_node(base: Path) -> AsyncIterator[RabbitNode]:
    """A started private node, stopped at the end whatever happened.

    A node that cannot be started skips the test, or fails it under CI=true.
    """
    try:
        node = RabbitNode(base)
    except RabbitUnavailable as exc:
        unavailable(str(exc))
    try:
        try:
            await node.start()
        except RabbitUnavailable as exc:
            unavailable(str(exc))
        yield node
    finally:
        await node.stop()
        node.kill()


@contextlib.asynccontextmanager
async def private_cluster(base: Path, size: int = 3) -> AsyncIterator[RabbitCluster]:
    """A started cluster of private nodes, stopped at the end whatever happened."""
    try:
        cluster = RabbitCluster(base, size)
    except RabbitUnavailable as exc:
        unavailable(str(exc))
    try:
        try:
            await cluster.start()
        except RabbitUnavailable as exc:
            unavailable(str(exc))
        yield cluster
    finally:
        await cluster.stop()
