"""Memory of the bridge's processes: idle, under load, and after many events through them.

    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ python -m bench.memory --events 200000

Starts the bridge as `python -m bridge` processes with CJ routed to a fake CJ served by this
process, then posts `--events` signed Shoplazza webhooks (distinct orders, `--connections`
at a time) and reads each process's resident set size (VmRSS in /proc/PID/status) when idle
after start, after every `--every` webhooks, once the fake CJ has been called for every one
(the worker caught up), and after `--settle` more idle seconds. The figure to look at is the
series under load: memory that grows with the number of events keeps growing there; a bounded
one plateaus. VmHWM (the peak) is printed at the end.

Layouts: `split` (default) runs `cancel-bridge receiver` (the receiver alone, no workers) and
`cancel-bridge worker --target cj` with the same configuration and store, so each has its own
figure; `one` runs both in one `run` process, as the default deployment does. The store is a
scratch SQLite file, or with `--engine PostgreSQL` a scratch database on the server in
DATABASE_URL. Log level info, output to scratch files; warnings and errors in them are counted
at the end. The CJ target's queues are deleted before and after; everything listens on
127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
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
    drive,
    spawned,
    wait_ready,
    webhooks,
)
from bridge.demo.fake_cj import Call, FakeCJ
from bridge.demo.scenario import free_port

KIB_PER_MIB = 1024
IDLE_FIRST = 5.0  # seconds after start before the idle sample
CATCH_UP_STALL = 120.0  # seconds without a new CJ call before giving up on the worker
CATCH_UP_POLL = 0.5
HTTP_OK = 200


@dataclass(frozen=True)
class Sample:
    """One reading: when, how far the run was, each process's VmRSS in KiB."""

    stage: str
    sent: int
    called: int
    rss: dict[str, int]


class CallCounter:
    """The fake CJ's `on_call`: counts calls (the fake's own list is emptied as we go)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, _: Call) -> None:
        """One more call."""
        self.count += 1


def status_kib(pid: int, field: str) -> int:
    """A `kB` field of /proc/PID/status (VmRSS, VmHWM), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise BenchError(f"no {field} in /proc/{pid}/status")


@contextlib.asynccontextmanager
async def bridge_processes(  # noqa: PLR0913 - the layout and what it runs against
    layout: str,
    directory: Path,
    port: int,
    cj_url: str,
    env: dict[str, str],
    *,
    cj_batch: int = 1,
) -> AsyncIterator[dict[str, int]]:
    """Start the layout's processes, ready to take webhooks; their names and PIDs."""
    store = directory / "bench.db"
    routed = write_config(directory / "run.toml", port, store, cj_url, cj_batch)
    await delete_cj_queues(routed, env)
    try:
        async with contextlib.AsyncExitStack() as stack:
            pids: dict[str, int] = {}
            if layout == "split":  # one configuration file each: each has its own output file
                await migrate(routed, env)  # as an operator does before starting processes
                alone = write_config(directory / "receiver.toml", port, store, cj_url, cj_batch)
                receiver = await stack.enter_async_context(spawned(alone, ["receiver"], env))
                alone = write_config(directory / "worker.toml", port, store, cj_url, cj_batch)
                worker = await stack.enter_async_context(
                    spawned(alone, ["worker", "--target", CJ], env)
                )
                await worker.wait_logged("worker.consuming")
                pids = {"receiver": receiver.process.pid, "worker": worker.process.pid}
            else:
                receiver = await stack.enter_async_context(spawned(routed, ["run"], env))
                await receiver.wait_logged("worker.consuming")
                pids = {"run (receiver + worker)": receiver.process.pid}
            timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                base = f"http://127.0.0.1:{port}"
                await wait_ready(session, base, receiver.process, receiver.log)
            yield pids
    finally:
        await delete_cj_queues(routed, env)


async def migrate(config: Path, env: dict[str, str]) -> None:
    """`cancel-bridge db upgrade` once, so processes started together find the schema made.

    (Two processes creating a fresh PostgreSQL schema at the same moment race; the loser exits.)
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "db", "upgrade", "--config", str(config), env=env
    )
    if await process.wait():
        raise BenchError(f"cancel-bridge db upgrade exited {process.returncode}")


def sampler(counter: CallCounter, pids: dict[str, int]) -> Callable[[str, int], Sample]:
    """A function reading every process's VmRSS now, with the run's progress."""

    def sample(stage: str, sent: int) -> Sample:
        rss = {name: status_kib(pid, "VmRSS") for name, pid in pids.items()}
        return Sample(stage, sent, counter.count, rss)

    return sample


async def catch_up(counter: CallCounter, events: int) -> None:
    """Wait for the fake CJ to have been called `events` times; fail if calls stop coming."""
    last, since = counter.count, time.monotonic()
    while counter.count < events:
        await asyncio.sleep(CATCH_UP_POLL)
        if counter.count != last:
            last, since = counter.count, time.monotonic()
        elif time.monotonic() - since > CATCH_UP_STALL:
            raise BenchError(f"CJ calls stopped at {counter.count} of {events}")


@dataclass
class Load:
    """What the load phase saw: samples, answer statuses (-1: transport errors), clock marks."""

    samples: list[Sample]
    statuses: Counter[int]
    started: float
    sent: float


async def load(
    args: argparse.Namespace,
    port: int,
    secret: str,
    fake: FakeCJ,
    sampled: Callable[[str, int], Sample],
) -> Load:
    """Post the events in chunks of `--every`, sampling after each."""
    shop = f"memory-{secrets.token_hex(4)}.myshoplaza.com"
    first_order = 10**12 + secrets.randbelow(10**12)
    url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    statuses: Counter[int] = Counter()
    samples: list[Sample] = []
    connector = aiohttp.TCPConnector(limit=args.connections)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for start in range(0, args.events, args.every):
            size = min(args.every, args.events - start)
            hooks = webhooks(shop, secret, size, first_order + start)
            tally, _ = await drive(session, url, hooks, args.connections)
            statuses.update(tally.statuses)
            statuses.update({-1: tally.errors.total()})  # transport errors
            fake.calls.clear()  # counted by `counter`; 200,000 of them would weigh on this process
            samples.append(sampled("under load", start + size))
    return Load(samples, statuses, started, time.perf_counter())


def log_findings(directory: Path) -> Counter[str]:
    """Warning and error lines in the processes' output, by level and event."""
    found: Counter[str] = Counter()
    for log in directory.glob("*.log"):
        with log.open("rb") as lines:
            for line in lines:
                if b'"level":"info"' in line:
                    continue
                try:
                    entry = orjson.loads(line)
                except orjson.JSONDecodeError:
                    found[f"{log.stem}: not JSON"] += 1
                    continue
                found[f"{log.stem}: {entry.get('level')} {entry.get('event')}"] += 1
    return found


@dataclass
class Figures:
    """Everything the report prints."""

    samples: list[Sample]
    peaks: dict[str, int]  # VmHWM, KiB
    statuses: Counter[int]
    sending: float  # seconds to post every webhook
    through: float  # seconds from the first webhook to the last CJ call
    calls: int
    orders: int  # distinct orders CJ was called for
    findings: Counter[str]


async def measure(
    args: argparse.Namespace, directory: Path, fake: FakeCJ, counter: CallCounter
) -> Figures:
    """Start, sample idle, load and sample, catch up, settle, sample."""
    secret = secrets.token_urlsafe(32)
    port = free_port()
    async with store_env(args.engine) as env:
        env[SECRET_ENV] = secret
        async with bridge_processes(args.layout, directory, port, fake.url, env) as pids:
            sample = sampler(counter, pids)
            await asyncio.sleep(IDLE_FIRST)
            first = sample("idle after start", 0)
            loaded = await load(args, port, secret, fake, sample)
            await catch_up(counter, args.events)
            through = time.perf_counter() - loaded.started
            samples = [first, *loaded.samples, sample("worker caught up", args.events)]
            await asyncio.sleep(args.settle)
            samples.append(sample(f"idle {args.settle:g} s later", args.events))
            peaks = {name: status_kib(pid, "VmHWM") for name, pid in pids.items()}
    return Figures(
        samples,
        peaks,
        loaded.statuses,
        loaded.sent - loaded.started,
        through,
        counter.count,
        len(fake.accepted),
        log_findings(directory),
    )


async def run(args: argparse.Namespace) -> int:
    """Measure with a fake CJ in this process; print the figures."""
    counter = CallCounter()
    fake = FakeCJ(on_call=counter)
    await fake.start()
    try:
        with tempfile.TemporaryDirectory(prefix="cancel-bridge-memory-") as scratch:
            figures = await measure(args, Path(scratch), fake, counter)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        await fake.stop()
    report(args, figures)
    return 0


def mib(kib: float) -> str:
    """KiB as MiB with one decimal."""
    return f"{kib / KIB_PER_MIB:.1f}"


def report(args: argparse.Namespace, figures: Figures) -> None:
    """The series, the peaks, the growth over the later part of the run, what was logged."""
    names = list(figures.peaks)
    print(
        f"{args.events} webhooks, {args.connections} connections, layout {args.layout},"
        f" store {args.engine}; VmRSS in MiB"
    )
    print(f"{'stage':22} {'sent':>7} {'CJ calls':>8} " + " ".join(f"{n:>24}" for n in names))
    for s in figures.samples:
        cells = " ".join(f"{mib(s.rss[n]):>24}" for n in names)
        print(f"{s.stage:22} {s.sent:7} {s.called:8} {cells}")
    print("peak (VmHWM):" + "".join(f"  {n} {mib(kib)} MiB" for n, kib in figures.peaks.items()))
    loaded = [s for s in figures.samples if s.stage == "under load"]
    quarter, last = loaded[len(loaded) // 4], loaded[-1]
    for n in names:
        delta = last.rss[n] - quarter.rss[n]
        per = delta * 100_000 / max(1, last.sent - quarter.sent)
        print(
            f"{n}: {mib(delta)} MiB from {quarter.sent} to {last.sent} webhooks"
            f" ({mib(per)} MiB per 100,000)"
        )
    ok = figures.statuses[HTTP_OK]
    others = {k: n for k, n in figures.statuses.items() if k != HTTP_OK and n}
    print(
        f"sending: {figures.sending:.0f} s ({args.events / figures.sending:.0f} webhooks/s),"
        f" {ok} answered 200{f', others (-1: transport errors): {others}' if others else ''};"
        f" all through to CJ in {figures.through:.0f} s ({args.events / figures.through:.0f}/s)"
    )
    print(f"fake CJ calls: {figures.calls} for {figures.orders} distinct orders")
    logged = ", ".join(f"{k}: {n}" for k, n in sorted(figures.findings.items()))
    print(f"warnings/errors logged: {logged or 'none'}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--events", type=int, default=200_000, help="webhooks (default 200000)")
    parser.add_argument("--every", type=int, default=10_000, help="sample every (default 10000)")
    parser.add_argument("--connections", type=int, default=64, help="in flight (default 64)")
    parser.add_argument("--settle", type=float, default=10.0, help="idle seconds at the end")
    parser.add_argument("--layout", choices=("split", "one"), default="split")
    parser.add_argument("--engine", choices=(SQLITE, POSTGRESQL), default=SQLITE)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    return run_main(run(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
