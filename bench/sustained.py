"""Sustained load: half the receiver's maximum for minutes, webhook to CJ, and the curve.

    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ python -m bench.sustained --minutes 5
    ... --layout one        # `cancel-bridge run` alone (default: both layouts, one after the other)
    ... --engine PostgreSQL # a scratch database on the server in DATABASE_URL (default SQLite)
    ... --rate 600          # offer this many webhooks/s instead of half the measured maximum
    ... --cj-batch-size 50  # the recommended CJ batching (default 1, as shipped)

For each layout (`one`: `cancel-bridge run`, receiver and CJ worker in one process; `split`:
`cancel-bridge receiver` and `cancel-bridge worker --target cj`) it starts the bridge routed to a
fake CJ served by this process, measures the receiver's maximum with a closed-loop burst
(`--burst` webhooks over 64 connections, the worker running), then offers `--fraction` (0.5) of
it as an open-loop load: webhook i is sent at start + i / rate whatever the answers do, each a
distinct signed Shoplazza order. Every second it notes webhooks sent, answered 200, and orders
CJ was called for; the backlog is answered minus called. After `--minutes` it stops sending and
waits for CJ to be called for every accepted order.

Printed: the curve (a row per `--window` seconds: offered/s, answered/s, CJ calls/s, the
backlog at the window's end, p50/p99 of webhook -> CJ for the orders sent in it), then the
verdict on the issue's three promises: CJ is called at the offered rate (within 5 %), the
backlog stays bounded (its peak over the second half of the run is no higher than over the
first half plus one second of traffic), webhook -> CJ p99 under 1 s. Exit status 1 if any fails.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench.memory import bridge_processes
from bench.spawn import POSTGRESQL, SQLITE, run_main, store_env
from bench.webhooks import (
    REQUEST_TIMEOUT,
    SECRET_ENV,
    WEBHOOK_PATH,
    BenchError,
    Webhook,
    drive,
    percentile,
    webhooks,
)
from bridge.demo.fake_cj import Call, FakeCJ
from bridge.demo.scenario import free_port

HTTP_OK = 200
CHUNK = 2000  # webhooks signed at a time
BURST_CONNECTIONS = 64
DRAIN_STALL = 60.0  # seconds without a new CJ call before the drain gives up
RATE_TOLERANCE = 0.05
P99_GOAL = 1.0  # seconds, webhook sent -> CJ called


class CJArrivals:
    """The fake CJ's `on_call`: when CJ was first called for each order (perf_counter)."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}

    def __call__(self, call: Call) -> None:
        """Note the first call naming an order."""
        self.first.setdefault(str(call.order["orderId"]), time.perf_counter())


@dataclass
class Second:
    """The counters at the end of one second of the run."""

    at: float  # seconds since the load started
    sent: int
    answered: int
    called: int


@dataclass
class Run:
    """One layout's run: the rate offered, the per-second counters, each order's times."""

    layout: str
    maximum: float
    rate: float
    seconds: list[Second] = field(default_factory=list)
    sent_at: dict[str, float] = field(default_factory=dict)  # order id -> perf_counter
    statuses: Counter[int] = field(default_factory=Counter)
    drained: float = 0.0  # seconds from the last webhook sent to the last CJ call


async def _post(
    session: aiohttp.ClientSession, url: str, hook: Webhook, statuses: Counter[int]
) -> None:
    try:
        async with session.post(url, data=hook.body, headers=hook.headers) as response:
            await response.read()
            statuses[response.status] += 1
    except (aiohttp.ClientError, TimeoutError):
        statuses[-1] += 1


def signed(shop: str, secret: str, count: int, first_order: int) -> Iterator[tuple[str, Webhook]]:
    """`count` webhooks with their order ids, signed a chunk at a time (not all in memory)."""
    for chunk in range(0, count, CHUNK):
        size = min(CHUNK, count - chunk)
        hooks = webhooks(shop, secret, size, first_order + chunk)
        yield from ((str(first_order + chunk + n), hook) for n, hook in enumerate(hooks))


async def offer(
    session: aiohttp.ClientSession,
    url: str,
    hooks: Iterator[tuple[str, Webhook]],
    run: Run,
    arrivals: CJArrivals,
) -> None:
    """Send `hooks` open-loop at `run.rate`, noting the counters every second."""
    start = time.perf_counter()
    pending: set[asyncio.Task[None]] = set()
    next_tick = 1.0
    for n, (order, hook) in enumerate(hooks):
        due = start + n / run.rate
        now = time.perf_counter()
        if due > now:
            await asyncio.sleep(due - now)
        run.sent_at[order] = time.perf_counter()
        task = asyncio.create_task(_post(session, url, hook, run.statuses))
        pending.add(task)
        task.add_done_callback(pending.discard)
        while time.perf_counter() - start >= next_tick:
            run.seconds.append(_second(next_tick, n + 1, run, arrivals))
            next_tick += 1.0
    await asyncio.gather(*pending)


def _second(at: float, sent: int, run: Run, arrivals: CJArrivals) -> Second:
    return Second(at, sent, run.statuses[HTTP_OK], len(arrivals.first))


async def drain(accepted: int, arrivals: CJArrivals) -> float:
    """Wait until CJ was called for `accepted` orders; the seconds it took. Fails on a stall."""
    last, since, began = len(arrivals.first), time.perf_counter(), time.perf_counter()
    while len(arrivals.first) < accepted:
        await asyncio.sleep(0.2)  # polling the fake's counter: the bench's clock, not a test
        if len(arrivals.first) != last:
            last, since = len(arrivals.first), time.perf_counter()
        elif time.perf_counter() - since > DRAIN_STALL:
            raise BenchError(f"CJ calls stopped at {last} of {accepted} accepted")
    return time.perf_counter() - began


async def measure(
    args: argparse.Namespace, layout: str, directory: Path, fake: FakeCJ, arrivals: CJArrivals
) -> Run:
    """Start the layout, find the receiver's maximum, offer the fraction of it, drain."""
    secret = secrets.token_urlsafe(32)
    port = free_port()
    shop = f"sustained-{secrets.token_hex(4)}.myshoplaza.com"
    first_order = 10**12 + secrets.randbelow(10**12)
    url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    async with store_env(args.engine) as env:
        env[SECRET_ENV] = secret
        async with bridge_processes(
            layout, directory, port, fake.url, env, cj_batch=args.cj_batch_size
        ):
            connector = aiohttp.TCPConnector(limit=0)
            timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
            async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
                burst = webhooks(shop, secret, args.burst, first_order)
                tally, seconds = await drive(session, url, burst, BURST_CONNECTIONS)
                maximum = tally.statuses[HTTP_OK] / seconds
                rate = args.rate or maximum * args.fraction
                await drain(tally.statuses[HTTP_OK], arrivals)
                arrivals.first.clear()  # the burst's orders
                fake.calls.clear()
                run = Run(layout, maximum, rate)
                count = round(rate * args.minutes * 60)
                hooks = signed(shop, secret, count, first_order + args.burst)
                await offer(session, url, hooks, run, arrivals)
                run.drained = await drain(run.statuses[HTTP_OK], arrivals)
                fake.calls.clear()
    return run


def curve(run: Run, arrivals: CJArrivals, window: int) -> list[str]:
    """The rows of the curve, a row per `window` seconds."""
    rows = [
        (
            f"{'t (s)':>6} {'offered/s':>9} {'200/s':>7} {'CJ/s':>7} {'backlog':>7}"
            f" {'p50 ms':>7} {'p99 ms':>7}"
        )
    ]
    start = min(run.sent_at.values())
    by_window: dict[int, list[float]] = {}
    for order, sent in run.sent_at.items():
        called = arrivals.first.get(order)
        if called is not None:
            by_window.setdefault(int((sent - start) // window), []).append(called - sent)
    previous = Second(0.0, 0, 0, 0)
    for n, second in enumerate(run.seconds[window - 1 :: window]):
        span = second.at - previous.at
        latencies = sorted(by_window.get(n, []))
        p50 = percentile(latencies, 50) * 1000 if latencies else 0.0
        p99 = percentile(latencies, 99) * 1000 if latencies else 0.0
        rows.append(
            f"{second.at:6.0f} {(second.sent - previous.sent) / span:9.0f}"
            f" {(second.answered - previous.answered) / span:7.0f}"
            f" {(second.called - previous.called) / span:7.0f}"
            f" {second.answered - second.called:7d} {p50:7.0f} {p99:7.0f}"
        )
        previous = second
    return rows


def verdict(run: Run, arrivals: CJArrivals) -> tuple[list[str], bool]:
    """The three promises, each with its figures; whether all hold."""
    latencies = sorted(
        arrivals.first[order] - sent
        for order, sent in run.sent_at.items()
        if order in arrivals.first
    )
    duration = run.seconds[-1].at if run.seconds else 1.0
    called_rate = run.seconds[-1].called / duration if run.seconds else 0.0
    backlogs = [s.answered - s.called for s in run.seconds]
    half = len(backlogs) // 2
    first_peak, second_peak = max(backlogs[:half], default=0), max(backlogs[half:], default=0)
    p99 = percentile(latencies, 99) if latencies else float("inf")
    rate_ok = called_rate >= run.rate * (1 - RATE_TOLERANCE)
    bounded = second_peak <= first_peak + run.rate
    fast = p99 < P99_GOAL
    others = {k: v for k, v in run.statuses.items() if k != HTTP_OK}
    lines = [
        f"receiver maximum (burst, worker running): {run.maximum:.0f}/s;"
        f" offered {run.rate:.0f}/s for {duration:.0f} s; answers: {run.statuses[HTTP_OK]} x 200"
        + (f", others (-1: transport errors) {others}" if others else ""),
        (
            f"CJ called at {called_rate:.0f}/s during the load: {'ok' if rate_ok else 'FAILS'}"
            f" (goal: the offered rate, within {RATE_TOLERANCE:.0%})"
        ),
        (
            f"backlog peak {first_peak} in the first half, {second_peak} in the second:"
            f" {'bounded' if bounded else 'GROWING'};"
            f" all through {run.drained:.1f} s after the last webhook"
        ),
        (
            f"webhook -> CJ: p50 {percentile(latencies, 50) * 1000:.0f} ms,"
            f" p99 {p99 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms:"
            f" {'ok' if fast else 'FAILS'} (goal: p99 < {P99_GOAL * 1000:.0f} ms)"
        ),
    ]
    return lines, rate_ok and bounded and fast and not others


async def run_all(args: argparse.Namespace) -> int:
    """Each layout in turn against one fake CJ; the curves and the verdicts."""
    layouts = ("one", "split") if args.layout == "both" else (args.layout,)
    held = True
    for layout in layouts:
        arrivals = CJArrivals()
        fake = FakeCJ(on_call=arrivals)
        await fake.start()
        try:
            with tempfile.TemporaryDirectory(prefix="cancel-bridge-sustained-") as scratch:
                run = await measure(args, layout, Path(scratch), fake, arrivals)
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
        finally:
            await fake.stop()
        print(f"== layout {layout}, store {args.engine}, CJ batch_size {args.cj_batch_size}")
        print("\n".join(curve(run, arrivals, args.window)))
        lines, ok = verdict(run, arrivals)
        print("\n".join(lines))
        held = held and ok
    return 0 if held else 1


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.sustained",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=5.0, help="load duration (default 5)")
    parser.add_argument("--fraction", type=float, default=0.5, help="of the maximum (0.5)")
    parser.add_argument("--rate", type=float, default=0.0, help="webhooks/s (default: fraction)")
    parser.add_argument("--burst", type=int, default=6000, help="webhooks to find the maximum")
    parser.add_argument("--window", type=int, default=10, help="seconds per row of the curve")
    parser.add_argument("--layout", choices=("one", "split", "both"), default="both")
    parser.add_argument("--engine", choices=(SQLITE, POSTGRESQL), default=SQLITE)
    parser.add_argument(
        "--cj-batch-size",
        type=int,
        default=1,
        help="[targets.cj] batch_size (default 1, as shipped; 50 is the recommended batching)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return run_main(run_all(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
