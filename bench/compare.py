"""The bridge against the bare minimum (`bench/minimum.py`), interleaved, same load.

    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ python -m bench.compare --rounds 3 --requests 20000
    ... --processes 1 2   # also the bridge with [receiver] processes = 2, in the same rounds

Each round runs `bench.webhooks` against the minimum, then against the bridge (which it starts
itself, once per `--processes` value), 64 connections, the same signed bodies. Prints
requests/s and p50/p99 per run, the medians, and the ratio bridge/minimum (>= 1.0 means the
bridge is not slower).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import secrets
import statistics
import sys
from collections.abc import Sequence

from bridge.demo.scenario import free_port

RATE = re.compile(rb"requests/s:\s+([0-9.]+)")
LATENCY = re.compile(rb"p50 ([0-9.]+)\s+p90 [0-9.]+\s+p99 ([0-9.]+)")


async def one_run(args: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """Run `bench.webhooks` once; its requests/s, p50 and p99 (ms)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.webhooks", *args, env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    rate, latency = RATE.search(out), LATENCY.search(out)
    if process.returncode or rate is None or latency is None:
        raise SystemExit(f"bench.webhooks failed: {out.decode(errors='replace')}")
    return float(rate.group(1)), float(latency.group(1)), float(latency.group(2))


async def run(rounds: int, requests: int, processes: Sequence[int], *, postgresql: bool) -> None:
    """Interleave the minimum and the bridge; print the table."""
    secret = secrets.token_urlsafe(24)
    port = free_port()
    env = {**os.environ, "SHOPLAZZA_CLIENT_SECRET": secret}
    if not postgresql:
        env.pop("DATABASE_URL", None)  # the bridge's default store: SQLite
    elif not env.get("DATABASE_URL"):
        raise SystemExit(
            "--postgresql needs DATABASE_URL (a server where a scratch database can go)"
        )
    minimum = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.minimum", "--port", str(port), env=env
    )
    common = ["--requests", str(requests), "--connections", "64"]
    bridges = {f"bridge x{n}" if len(processes) > 1 or n > 1 else "bridge": n for n in processes}
    results: dict[str, list[tuple[float, float, float]]] = {"minimum": []}
    results.update({name: [] for name in bridges})
    try:
        for _ in range(rounds):
            url = f"http://127.0.0.1:{port}"
            results["minimum"].append(
                await one_run([*common, "--url", url, "--secret", secret], env)
            )
            for name, n in bridges.items():
                results[name].append(await one_run([*common, "--processes", str(n)], env))
    finally:
        minimum.terminate()
        await minimum.wait()
    print(f"{requests} requests per run, 64 connections, {rounds} rounds, interleaved")
    for name, runs in results.items():
        for n, (rate, p50, p99) in enumerate(runs, 1):
            print(f"  {name:8} round {n}: {rate:7.0f} req/s  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms")
    medians = {name: statistics.median(r[0] for r in runs) for name, runs in results.items()}
    print(f"median: minimum {medians['minimum']:.0f} req/s")
    for name in bridges:
        ratio = medians[name] / medians["minimum"]
        print(f"median: {name} {medians[name]:.0f} req/s; ratio {name}/minimum {ratio:.2f}")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument(
        "--processes",
        type=int,
        nargs="+",
        default=[1],
        help="the bridge's [receiver] processes; several values run one bridge each (default: 1)",
    )
    parser.add_argument(
        "--postgresql",
        action="store_true",
        help="the bridge's store in a scratch database on DATABASE_URL's server (default: SQLite)",
    )
    args = parser.parse_args(argv)
    asyncio.run(run(args.rounds, args.requests, args.processes, postgresql=args.postgresql))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
