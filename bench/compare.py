"""The bridge against the bare minimum (`bench/minimum.py`), interleaved, same load.

    AMQP_URL=amqp://guest:guest@127.0.0.1:5672/ python -m bench.compare --rounds 3 --requests 20000
    ... --processes 1 2   # also the bridge with [receiver] processes = 2, in the same rounds
    ... --faststream      # also bench/faststream_peer.py: the minimum, FastStream publishing
    ... --lean            # also bench/lean.py: the minimum plus the bridge's additions, no store

Each round runs `bench.webhooks` against the minimum, then (with `--faststream`) against the
FastStream peer, then against the bridge (which it starts itself, once per `--processes` value),
64 connections, the same signed bodies. Prints requests/s and p50/p99 per run, the medians, and
the ratio bridge/minimum (>= 1.0 means the bridge is not slower); with `--faststream` also the
ratios faststream/minimum and bridge/faststream.
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


Runs = list[tuple[float, float, float]]  # requests/s, p50 ms, p99 ms per round


def free_ports(names: Sequence[str]) -> dict[str, int]:
    """A distinct free port on 127.0.0.1 for each name."""
    ports: dict[str, int] = {}
    for name in names:
        port = free_port()
        while port in ports.values():
            port = free_port()
        ports[name] = port
    return ports


async def run(
    rounds: int,
    requests: int,
    processes: Sequence[int],
    *,
    postgresql: bool,
    peers: Sequence[str] = (),
) -> None:
    """Interleave the minimum, the peers asked for and the bridge; print the table.

    `peers`: "faststream" (`bench.faststream_peer`), "lean" (`bench.lean`).
    """
    faststream = "faststream" in peers
    secret = secrets.token_urlsafe(24)
    env = {**os.environ, "SHOPLAZZA_CLIENT_SECRET": secret}
    if not postgresql:
        env.pop("DATABASE_URL", None)  # the bridge's default store: SQLite
    elif not env.get("DATABASE_URL"):
        raise SystemExit(
            "--postgresql needs DATABASE_URL (a server where a scratch database can go)"
        )
    # The servers started once for all rounds, by name: their module, each on its own port.
    modules = {"minimum": "bench.minimum"}
    if faststream:
        modules["faststream"] = "bench.faststream_peer"
    if "lean" in peers:
        modules["lean"] = "bench.lean"
    ports = free_ports(list(modules))
    # Their output (the lean peer logs a line per webhook, as the bridge does) is not ours.
    servers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            "--port",
            str(ports[name]),
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
        )
        for name, module in modules.items()
    ]
    common = ["--requests", str(requests), "--connections", "64"]
    bridges = {f"bridge x{n}" if len(processes) > 1 or n > 1 else "bridge": n for n in processes}
    results: dict[str, Runs] = {name: [] for name in [*modules, *bridges]}
    try:
        for _ in range(rounds):
            for name, port in ports.items():
                url = f"http://127.0.0.1:{port}"
                results[name].append(
                    await one_run([*common, "--url", url, "--secret", secret], env)
                )
            for name, n in bridges.items():
                results[name].append(await one_run([*common, "--processes", str(n)], env))
    finally:
        for server in servers:
            server.terminate()
            await server.wait()
    print(f"{requests} requests per run, 64 connections, {rounds} rounds, interleaved")
    report(results, list(bridges), faststream=faststream)


def report(results: dict[str, Runs], bridges: Sequence[str], *, faststream: bool) -> None:
    """Every run, the medians and the ratios."""
    width = max(len(name) for name in results)
    for name, runs in results.items():
        for n, (rate, p50, p99) in enumerate(runs, 1):
            print(
                f"  {name:{width}} round {n}: {rate:7.0f} req/s"
                f"  p50 {p50:6.1f} ms  p99 {p99:6.1f} ms"
            )
    medians = {name: statistics.median(r[0] for r in runs) for name, runs in results.items()}
    print(f"median: minimum {medians['minimum']:.0f} req/s")
    if "lean" in medians:
        ratio = medians["lean"] / medians["minimum"]
        print(f"median: lean {medians['lean']:.0f} req/s; ratio lean/minimum {ratio:.2f}")
    if faststream:
        ratio = medians["faststream"] / medians["minimum"]
        print(
            f"median: faststream {medians['faststream']:.0f} req/s;"
            f" ratio faststream/minimum {ratio:.2f}"
        )
    for name in bridges:
        ratio = medians[name] / medians["minimum"]
        line = f"median: {name} {medians[name]:.0f} req/s; ratio {name}/minimum {ratio:.2f}"
        if faststream:
            line += f", {name}/faststream {medians[name] / medians['faststream']:.2f}"
        print(line)


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
    parser.add_argument(
        "--faststream",
        action="store_true",
        help="also the minimum publishing through FastStream's RabbitBroker"
        " (bench/faststream_peer.py), in the same rounds",
    )
    parser.add_argument(
        "--lean",
        action="store_true",
        help="also the minimum plus the bridge's per-webhook additions without a store"
        " (bench/lean.py), in the same rounds",
    )
    args = parser.parse_args(argv)
    asyncio.run(
        run(
            args.rounds,
            args.requests,
            args.processes,
            postgresql=args.postgresql,
            peers=[p for p in ("faststream", "lean") if getattr(args, p)],
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
