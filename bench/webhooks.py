"""Benchmark the receiver with signed Shoplazza `orders/cancelled` webhooks.

A script that prints figures, not a test: nothing here asserts a speed. By default it starts the
bridge itself (`python -m bridge run` on a free port, against the broker in AMQP_URL), waits for
`/readyz`, sends `--warmup` webhooks, then times `--requests` more over `--connections` concurrent
keep-alive connections. Every webhook is a distinct order, so every one is a distinct event and
a real confirmed publish.

    .venv/bin/python -m bench.webhooks --requests 5000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import secrets
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import aiohttp
import orjson
from aio_pika.abc import AbstractIncomingMessage
from aio_pika.exceptions import AMQPError

from bench.scratch_db import scratch_database
from bridge.amqp import topology
from bridge.demo.scenario import free_port
from bridge.settings import DEFAULT_AMQP_URL
from contracts.events import Source
from contracts.timestamps import utc_z
from handlers import shoplazza

WEBHOOK_PATH = "/webhooks/shoplazza"
SECRET_ENV = "BENCH_SHOPLAZZA_SECRET"  # noqa: S105 - a variable name; set only for the child
BENCH_APP_ID = "cancel-bridge-bench"
READY_TIMEOUT = 30.0  # seconds for the bridge to answer /readyz 200
LOG_POLL = 0.1  # seconds between looks at a spawned bridge's log file
READY_POLL = 0.1
STOP_TIMEOUT = 15.0  # SIGTERM, then SIGKILL after this (the bridge drains for up to 10 s)
REQUEST_TIMEOUT = 30.0
LOG_TAIL_LINES = 20
DRAIN_TIMEOUT = 10.0  # connecting for the clean-up
DRAIN_IDLE = 2.0  # the clean-up stops when no message arrives for this long
REASONS = ("customer changed mind", "out of stock", "suspected fraud", "payment declined", "")

DESCRIPTION = """\
Benchmark the cancel-bridge receiver with signed Shoplazza orders/cancelled webhooks and print
requests, non-200 answers, duration, requests/s and latency percentiles.

Without --url it starts the bridge itself (python -m bridge run, a generated secret, a free
port on 127.0.0.1) against the broker in AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/),
and stops it at the end, error or not. Its state store is a SQLite file in a scratch folder, or
a scratch database on the PostgreSQL server in DATABASE_URL when that is set (created for the
run and dropped after it).
"""

EPILOG = f"""\
Broker clean-up: no subscriber queue is created. Nothing is bound to the `orders` exchange's
routing keys, so every accepted webhook lands in the quorum queue `{topology.UNROUTED_QUEUE.name}`
(the alternate exchange's queue). After the run the benchmark purges those messages from
`{topology.UNROUTED_QUEUE.name}` with aio-pika (broker from AMQP_URL), so the broker does not fill
up. Only this run's messages are removed (matched by the run's unique shop domain); any other
message in the queue is put back. --keep-messages skips the clean-up. If a downstream queue is
bound to order.cancelled.shoplazza on that broker, the messages land there instead: the
benchmark says so, and does not touch that queue.
"""


class BenchError(Exception):
    """The benchmark cannot go on; the message is the one line to print."""


@dataclass(frozen=True, slots=True)
class Webhook:
    """One signed request, built before the clock starts."""

    body: bytes
    headers: dict[str, str]


@dataclass(slots=True)
class Tally:
    """What came back: latency of every HTTP answer, statuses, and transport errors."""

    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> int:
        """Requests answered 200."""
        return self.statuses[200]


@dataclass(frozen=True, slots=True)
class Target:
    """The bridge under test: its base URL and the Shoplazza secret it verifies with."""

    base_url: str
    secret: str
    description: str


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line; `--url` needs `--secret` (or SHOPLAZZA_CLIENT_SECRET)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.webhooks",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--connections", type=_positive, default=64, help="concurrent workers (default: 64)"
    )
    parser.add_argument(
        "--requests", type=_positive, default=20000, help="timed requests (default: 20000)"
    )
    parser.add_argument(
        "--warmup", type=_non_negative, default=1000, help="untimed requests first (default: 1000)"
    )
    parser.add_argument(
        "--url",
        metavar="URL",
        help="benchmark an already running bridge at this base URL (e.g. http://127.0.0.1:8080)"
        " instead of starting one; needs --secret",
    )
    parser.add_argument(
        "--secret",
        metavar="SECRET",
        default=os.environ.get("SHOPLAZZA_CLIENT_SECRET") or None,
        help="with --url: the Shoplazza client secret that bridge verifies with"
        " (default: $SHOPLAZZA_CLIENT_SECRET)",
    )
    parser.add_argument(
        "--processes",
        type=_positive,
        default=1,
        help="the started bridge's [receiver] processes (default: 1)",
    )
    parser.add_argument(
        "--keep-messages",
        action="store_true",
        help=f"do not remove this run's messages from {topology.UNROUTED_QUEUE.name} afterwards",
    )
    args = parser.parse_args(argv)
    if args.url and not args.secret:
        parser.error("--url needs --secret (or SHOPLAZZA_CLIENT_SECRET in the environment)")
    return args


def amqp_url() -> str:
    """The broker the spawned bridge publishes to and the clean-up drains."""
    return os.environ.get("AMQP_URL", "").strip() or DEFAULT_AMQP_URL


def bench_config(port: int, store_path: str, processes: int = 1) -> str:
    """The spawned bridge's configuration: defaults, a free port, our secret variable.

    The store is a SQLite file in the run's scratch folder, or, when DATABASE_URL is set, a
    scratch database created on that server for the run and dropped after it.
    """
    return f"""\
[store]
path = "{store_path}"
url_env = "DATABASE_URL"

[broker]
url_env = "AMQP_URL"
app_id = "{BENCH_APP_ID}"

[receiver]
host = "127.0.0.1"
port = {port}
processes = {processes}

[sources.shoplazza]
secret_env = "{SECRET_ENV}"

[log]
level = "info"
"""


def webhooks(shop: str, secret: str, count: int, first_order: int) -> list[Webhook]:
    """`count` signed `orders/cancelled` webhooks for distinct orders, from `first_order` on."""
    now = utc_z(datetime.now(UTC), "seconds")
    hooks = []
    for n in range(count):
        order_id = first_order + n
        order = {
            "id": str(order_id),
            "number": f"#{1000 + n}",
            "status": "cancelled",
            "financial_status": "refunded",
            "fulfillment_status": "unfulfilled",
            "cancel_reason": REASONS[n % len(REASONS)],
            "cancelled_at": now,
            "updated_at": now,
            "currency": "USD",
            "total_price": "59.90",
            "email": f"buyer{n}@example.com",
            "line_items": [
                {"id": f"{order_id}-{i}", "sku": f"SKU-{i}", "quantity": 1, "price": "29.95"}
                for i in range(2)
            ],
        }
        body = orjson.dumps(order)
        hooks.append(
            Webhook(
                body=body,
                headers={
                    "Content-Type": "application/json",
                    shoplazza.SIGNATURE_HEADER: shoplazza.sign(body, secret),
                    shoplazza.TOPIC_HEADER: shoplazza.CANCELLED_TOPIC,
                    shoplazza.SHOP_HEADER: shop,
                    shoplazza.DEDUP_HEADER: str(uuid.uuid4()),
                    shoplazza.API_VERSION_HEADER: "2025-06",
                },
            )
        )
    return hooks


async def _worker(
    session: aiohttp.ClientSession, url: str, hooks: Iterator[Webhook], tally: Tally
) -> None:
    # All workers share one iterator: each takes the next webhook when it is free.
    for hook in hooks:
        start = time.perf_counter()
        try:
            async with session.post(url, data=hook.body, headers=hook.headers) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.errors[type(exc).__name__] += 1
            continue
        tally.latencies.append(time.perf_counter() - start)
        tally.statuses[status] += 1


async def drive(
    session: aiohttp.ClientSession, url: str, hooks: Sequence[Webhook], connections: int
) -> tuple[Tally, float]:
    """Send `hooks` over `connections` workers; the tally and the wall-clock seconds."""
    tally = Tally()
    shared = iter(hooks)
    start = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(min(connections, len(hooks))):
            group.create_task(_worker(session, url, shared, tally))
    return tally, time.perf_counter() - start


def _tail(path: Path) -> str:
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no bridge output)"
    return "\n".join(lines[-LOG_TAIL_LINES:]) or "(no bridge output)"


async def wait_ready(
    session: aiohttp.ClientSession,
    base_url: str,
    process: asyncio.subprocess.Process | None,
    log_path: Path | None,
) -> None:
    """Poll `/readyz` until 200 (a benchmark may poll); fail if the bridge exits or stalls."""
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.returncode is not None:
            tail = _tail(log_path) if log_path else ""
            raise BenchError(f"the bridge exited with status {process.returncode}:\n{tail}")
        try:
            async with session.get(f"{base_url}/readyz") as response:
                if response.status == 200:  # noqa: PLR2004 - HTTP OK
                    return
                last = f"{response.status} {await response.text()}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            last = type(exc).__name__
        await asyncio.sleep(READY_POLL)
    tail = f"\n{_tail(log_path)}" if log_path else ""
    raise BenchError(f"{base_url}/readyz not 200 after {READY_TIMEOUT:g}s (last: {last}){tail}")


async def stop(process: asyncio.subprocess.Process) -> None:
    """SIGTERM (the bridge drains and exits), SIGKILL if it takes longer than STOP_TIMEOUT."""
    if process.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()


@dataclass(frozen=True)
class Spawned:
    """A bridge process, its configuration file and the file its output goes to."""

    process: asyncio.subprocess.Process
    config: Path
    log: Path

    async def wait_logged(self, event: str) -> None:
        """Poll the output until a line logs `event`; fail if the process exits or stalls."""
        needle = f'"event":"{event}"'.encode()
        deadline = time.monotonic() + READY_TIMEOUT
        while needle not in self.log.read_bytes():
            if self.process.returncode is not None:
                raise BenchError(f"{self.config.stem} exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise BenchError(f"{self.config.stem}: no {event} after {READY_TIMEOUT:g}s")
            await asyncio.sleep(LOG_POLL)


@contextlib.asynccontextmanager
async def spawned(
    config: Path, args: Sequence[str], env: Mapping[str, str]
) -> AsyncIterator[Spawned]:
    """`python -m bridge ARGS --config CONFIG`, output to CONFIG.log; stopped on exit."""
    log = config.with_suffix(".log")
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge",
            *args,
            "--config",
            str(config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(env),
        )
        try:
            yield Spawned(process, config, log)
        finally:
            await stop(process)


@contextlib.asynccontextmanager
async def spawned_bridge(
    session: aiohttp.ClientSession, processes: int = 1
) -> AsyncIterator[Target]:
    """Run `python -m bridge run` on a free port with a generated secret; stop it on exit."""
    secret = secrets.token_urlsafe(32)
    port = free_port()
    env = {**os.environ, "AMQP_URL": amqp_url(), SECRET_ENV: secret}
    async with contextlib.AsyncExitStack() as stack:
        if server := os.environ.get("DATABASE_URL"):
            env["DATABASE_URL"] = await stack.enter_async_context(scratch_database(server))
        async with _bridge_process(session, env, secret, port, processes) as target:
            yield target


def _config_file(directory: str, port: int, processes: int) -> Path:
    """Write the spawned bridge's config into `directory`; its path."""
    config = Path(directory, "config.toml")
    config.write_text(bench_config(port, str(Path(directory, "bench.db")), processes))
    return config


@contextlib.asynccontextmanager
async def _bridge_process(
    session: aiohttp.ClientSession, env: dict[str, str], secret: str, port: int, processes: int
) -> AsyncIterator[Target]:
    with tempfile.TemporaryDirectory(prefix="cancel-bridge-bench-") as tmp:
        config = _config_file(tmp, port, processes)
        async with spawned(config, ["run"], env) as bridge:
            base_url = f"http://127.0.0.1:{port}"
            await wait_ready(session, base_url, bridge.process, bridge.log)
            yield Target(base_url, secret, f"started by the benchmark, pid {bridge.process.pid}")


def _is_ours(body: bytes, shop: str) -> bool:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(document, dict) and document.get("shop") == shop


async def remove_run_messages(url: str, shop: str) -> tuple[int, int]:
    """Take this run's messages out of `orders.unrouted`; (removed, left in place).

    One consumer without a prefetch limit reads every message that is in the queue now: those of
    `shop` are acked (gone), any other stays unacked, so the broker puts it back when the channel
    closes. Much faster than a basic.get per message. No queue is declared or created.
    """
    connection = await aio_pika.connect(url, timeout=DRAIN_TIMEOUT)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(topology.UNROUTED_QUEUE.name, passive=True)
        total = queue.declaration_result.message_count or 0
        counts: Counter[str] = Counter()
        delivered = asyncio.Event()

        async def on_message(message: AbstractIncomingMessage) -> None:
            if _is_ours(message.body, shop):
                await message.ack()
                counts["removed"] += 1
            else:
                counts["kept"] += 1
            delivered.set()

        if total:
            tag = await queue.consume(on_message)
            # Until every message counted above was seen, or the queue goes quiet (another
            # consumer took some).
            while counts.total() < total:
                delivered.clear()
                try:
                    await asyncio.wait_for(delivered.wait(), DRAIN_IDLE)
                except TimeoutError:
                    break
            await queue.cancel(tag)
    return counts["removed"], counts["kept"]


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def report(target: Target, args: argparse.Namespace, tally: Tally, seconds: float) -> None:
    """Print the figures of the timed run."""
    ordered = sorted(tally.latencies)
    ms = [1000 * percentile(ordered, p) for p in (50, 90, 99, 100)]
    non_ok = args.requests - tally.ok
    print(f"target:      {target.base_url}{WEBHOOK_PATH} ({target.description})")
    print(f"connections: {args.connections}, warmup: {args.warmup} requests (not counted)")
    print(f"requests:    {args.requests}")
    print(f"non-200:     {non_ok}")
    if non_ok:
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(tally.statuses.items()) if s != 200)  # noqa: PLR2004 - HTTP OK
        errors = ", ".join(f"{e}: {n}" for e, n in sorted(tally.errors.items()))
        print(f"  statuses:  {statuses or '-'}; transport errors: {errors or '-'}")
    print(f"duration:    {seconds:.3f} s")
    print(f"requests/s:  {args.requests / seconds:.1f}")
    print(
        f"latency ms:  p50 {ms[0]:.2f}  p90 {ms[1]:.2f}  p99 {ms[2]:.2f}  max {ms[3]:.2f}"
        f"  ({len(ordered)} answered requests)"
    )


async def clean_up(shop: str, accepted: int | None) -> None:
    """Remove this run's messages from `orders.unrouted` and say what happened.

    `accepted` is the number of 200 answers, or None when the run stopped early.
    """
    try:
        removed, kept = await remove_run_messages(amqp_url(), shop)
    except (AMQPError, OSError, TimeoutError) as exc:
        print(
            f"clean-up: could not drain {topology.UNROUTED_QUEUE.name} ({type(exc).__name__}:"
            f" {exc}); this run's messages (shop {shop}) may still be there",
            file=sys.stderr,
        )
        return
    others = f"; {kept} other messages left in place" if kept else ""
    queue = topology.UNROUTED_QUEUE.name
    print(f"clean-up:    removed {removed} messages of this run from {queue}{others}")
    if accepted is not None and removed < accepted:
        print(
            f"clean-up: {accepted - removed} accepted webhooks were not in {queue}: a queue"
            f" bound to {topology.routing_key(Source.SHOPLAZZA)} holds them (left alone),"
            f" or something else consumed or purged {queue} meanwhile",
            file=sys.stderr,
        )


async def run(args: argparse.Namespace) -> int:
    """Start (or reach) the bridge, warm up, time the run, print, stop, clean up."""
    shop = f"bench-{secrets.token_hex(4)}.myshoplaza.com"
    first_order = 10**12 + secrets.randbelow(10**12)  # distinct orders across runs too
    accepted: int | None = None
    sending = False  # nothing to clean up before the first webhook goes out
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    connector = aiohttp.TCPConnector(limit=args.connections, limit_per_host=args.connections)
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            async with contextlib.AsyncExitStack() as stack:
                if args.url:
                    base_url = args.url.rstrip("/")
                    target = Target(base_url, args.secret, "already running")
                    await wait_ready(session, base_url, None, None)
                else:
                    spawned = spawned_bridge(session, args.processes)
                    target = await stack.enter_async_context(spawned)
                url = f"{target.base_url}{WEBHOOK_PATH}"
                hooks = webhooks(shop, target.secret, args.warmup + args.requests, first_order)
                sending = True
                warm, _ = await drive(session, url, hooks[: args.warmup], args.connections)
                tally, seconds = await drive(session, url, hooks[args.warmup :], args.connections)
                accepted = warm.ok + tally.ok
            report(target, args, tally, seconds)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        if sending and not args.keep_messages:
            await clean_up(shop, accepted)
    return 0


def _run_async(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop  # noqa: PLC0415 - optional: the client should not be the bottleneck
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


async def _interruptible(args: argparse.Namespace) -> int:
    # SIGTERM cancels the run like Ctrl-C does, so the `finally` blocks still stop the bridge
    # and clean up instead of the process dying with its child left running.
    task = asyncio.current_task()
    if task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: `python -m bench.webhooks`."""
    args = parse_args(argv)
    try:
        return _run_async(_interruptible(args))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
