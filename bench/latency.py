"""End-to-end latency, unloaded: webhook sent -> fake CJ called, one cancellation at a time.

    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ \
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test python -m bench.latency --webhooks 500

For each store engine (SQLite, a scratch file; PostgreSQL, a scratch database on the server in
DATABASE_URL, skipped when it is unset) it starts the real bridge (`python -m bridge run`: the
receiver and the CJ worker in one process, log level info, output to a scratch file), with CJ
routed to a fake CJ served by this process. It sends `--warmup` signed Shoplazza webhooks, then
`--webhooks` more, each only after the previous one reached the fake CJ, and prints p50, p90,
p99 and max of two intervals per cancellation: webhook sent -> 200 answer (the receiver: store,
confirmed publish) and webhook sent -> fake CJ called (the whole path: receiver, broker, worker
claim, the HTTP call). Both are read on this process's clock. The CJ target's queues are deleted
before and after each engine's run; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson

from bench.spawn import (
    CJ,
    POSTGRESQL,
    SQLITE,
    delete_cj_queues,
    run_main,
    store_env,
    write_config,
)
from bench.webhooks import (
    REQUEST_TIMEOUT,
    SECRET_ENV,
    WEBHOOK_PATH,
    BenchError,
    Webhook,
    percentile,
    spawned,
    wait_ready,
    webhooks,
)
from bridge.demo.fake_cj import Call, FakeCJ
from bridge.demo.scenario import free_port

PERCENTILES = (50, 90, 99, 100)
HTTP_OK = 200


@dataclass
class Timings:
    """Seconds from sending each webhook to its 200 answer and to the fake CJ's call."""

    answered: list[float] = field(default_factory=list)
    called: list[float] = field(default_factory=list)


class Arrivals:
    """The fake CJ's `on_call`: when each awaited order's first call arrived (perf_counter)."""

    def __init__(self) -> None:
        self.waiting: dict[str, asyncio.Future[float]] = {}

    def __call__(self, call: Call) -> None:
        """Resolve the future of the order `call` names, the first time only."""
        future = self.waiting.get(str(call.order["orderId"]))
        if future is not None and not future.done():
            future.set_result(time.perf_counter())

    def expect(self, order_id: str) -> asyncio.Future[float]:
        """A future set to the arrival time of the next call naming `order_id`."""
        future = asyncio.get_running_loop().create_future()
        self.waiting[order_id] = future
        return future


def order_id(hook: Webhook) -> str:
    """The Shoplazza order id in a benchmark webhook (CJ's `orderId` for it)."""
    return str(orjson.loads(hook.body)["id"])


async def one_at_a_time(
    session: aiohttp.ClientSession,
    url: str,
    hooks: Sequence[Webhook],
    arrivals: Arrivals,
    pause: float,
) -> Timings:
    """Send each webhook `pause` s after the previous one reached CJ; the two intervals of each."""
    timings = Timings()
    for hook in hooks:
        await asyncio.sleep(pause)
        reached = arrivals.expect(order_id(hook))
        started = time.perf_counter()
        async with session.post(url, data=hook.body, headers=hook.headers) as response:
            await response.read()
            if response.status != HTTP_OK:
                raise BenchError(f"webhook answered {response.status}: {await response.text()}")
        answered = time.perf_counter()
        try:
            called = await asyncio.wait_for(reached, REQUEST_TIMEOUT)
        except TimeoutError:
            raise BenchError(f"CJ not called within {REQUEST_TIMEOUT:g}s of a webhook") from None
        timings.answered.append(answered - started)
        timings.called.append(called - started)
    return timings


async def measure(
    engine: str, args: argparse.Namespace, fake: FakeCJ, arrivals: Arrivals
) -> Timings:
    """Start a bridge on `engine`, warm it up, time `args.webhooks` cancellations, stop it."""
    secret = secrets.token_urlsafe(32)
    port = free_port()
    shop = f"latency-{secrets.token_hex(4)}.myshoplaza.com"
    first_order = 10**12 + secrets.randbelow(10**12)
    hooks = webhooks(shop, secret, args.warmup + args.webhooks, first_order)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    with tempfile.TemporaryDirectory(prefix="cancel-bridge-latency-") as scratch:
        directory = Path(scratch)
        config = write_config(directory / "bridge.toml", port, directory / "bench.db", fake.url)
        async with store_env(engine) as env, aiohttp.ClientSession(timeout=timeout) as session:
            env[SECRET_ENV] = secret
            await delete_cj_queues(config, env)  # a fresh start: no earlier run's messages
            try:
                async with spawned(config, ["run"], env) as bridge:
                    base_url = f"http://127.0.0.1:{port}"
                    await wait_ready(session, base_url, bridge.process, bridge.log)
                    await bridge.wait_logged("worker.consuming")
                    url = f"{base_url}{WEBHOOK_PATH}"
                    await one_at_a_time(session, url, hooks[: args.warmup], arrivals, args.pause)
                    timed = hooks[args.warmup :]
                    return await one_at_a_time(session, url, timed, arrivals, args.pause)
            finally:
                await delete_cj_queues(config, env)


def report(results: dict[str, Timings], args: argparse.Namespace, calls: int) -> None:
    """The table: percentiles of each interval, per engine, in milliseconds."""
    print(
        f"{args.webhooks} cancellations per engine, one at a time ({args.pause:g} s after the"
        f" previous reached CJ), after {args.warmup} warm-up;"
        f" `python -m bridge run` (receiver + {CJ} worker), log level info"
    )
    heads = " ".join(f"{'max' if p == 100 else f'p{p}':>7}" for p in PERCENTILES)  # noqa: PLR2004
    print(f"{'engine':11} {'interval (ms)':26} {heads}")
    for engine, timings in results.items():
        for name, values in (
            ("sent -> 200 answer", timings.answered),
            ("sent -> fake CJ called", timings.called),
        ):
            ordered = sorted(values)
            cells = " ".join(f"{1000 * percentile(ordered, p):7.1f}" for p in PERCENTILES)
            print(f"{engine:11} {name:26} {cells}")
    expected = len(results) * (args.warmup + args.webhooks)
    print(f"fake CJ calls: {calls} (expected {expected}: one per cancellation)")


async def run(args: argparse.Namespace) -> int:
    """Each engine in turn against one fake CJ; print the table."""
    arrivals = Arrivals()
    fake = FakeCJ(on_call=arrivals)
    await fake.start()
    results: dict[str, Timings] = {}
    try:
        for engine in args.engines:
            results[engine] = await measure(engine, args, fake, arrivals)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        await fake.stop()
    report(results, args, len(fake.calls))
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.latency",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--webhooks", type=int, default=500, help="timed (default 500)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed first (default 20)")
    parser.add_argument(
        "--pause",
        type=float,
        default=0.0,
        help="seconds between a CJ call and the next webhook (default 0: at once; the worker"
        " may still be recording the previous outcome then)",
    )
    parser.add_argument(
        "--engine",
        dest="engines",
        action="append",
        choices=(SQLITE, POSTGRESQL),
        help="store engine, repeatable (default: SQLite, and PostgreSQL when DATABASE_URL is set)",
    )
    args = parser.parse_args(argv)
    if not args.engines:
        args.engines = [SQLITE, POSTGRESQL] if os.environ.get("DATABASE_URL") else [SQLITE]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return run_main(run(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
