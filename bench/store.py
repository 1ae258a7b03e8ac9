"""The store alone: CPU per message of the receiver's and the worker's batched statements.

    python -m bench.store                      # SQLite, a scratch file
    DATABASE_URL=postgresql://... python -m bench.store --postgresql   # a scratch database

For each batch size, `--messages` distinct events go through `Store.arrive_many` (the receiver's
record), then `claim_many` + `finish_many` (the worker's claim and outcome), in batches of that
size, one after the other. Prints wall and process CPU time per message for each: what the
store costs the hot paths, without HTTP or the broker.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.scratch_db import scratch_database
from bench.spawn import run_main
from bench.worker import bench_event
from bridge.store.arrivals import Arrival
from bridge.store.claims import Result
from bridge.store.deliveries import Store
from bridge.store.lifecycle import DeliveryState

LEASE = timedelta(seconds=30)


async def measure(store: Store, sizes: Sequence[int], messages: int) -> None:
    """Arrivals, then claims and outcomes, in batches of each size; print per message."""
    now = datetime.now(UTC)
    since = now - timedelta(days=7)
    first = 0
    for size in sizes:
        batches = [
            [bench_event(first + b * size + i, now) for i in range(size)]
            for b in range(max(1, messages // size))
        ]
        first += messages + size
        count = sum(len(batch) for batch in batches)
        wall, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            arrivals = [Arrival(e, now, ("cj",), since, e.to_json()) for e in batch]
            await store.arrive_many(arrivals)
        arrived = (time.perf_counter() - wall, time.process_time() - cpu)
        wall, cpu = time.perf_counter(), time.process_time()
        for batch in batches:
            await store.claim_many(batch, "cj", "bench", LEASE)
            done = datetime.now(UTC)
            results = [
                Result(str(e.event_id), "cj", "bench", DeliveryState.DELIVERED, done, None, "ref")
                for e in batch
            ]
            await store.finish_many(results)
        claimed = (time.perf_counter() - wall, time.process_time() - cpu)
        print(
            f"batches of {size:3}: arrive {arrived[1] / count * 1e6:5.0f} us CPU"
            f" ({arrived[0] / count * 1e6:5.0f} wall), claim+finish"
            f" {claimed[1] / count * 1e6:5.0f} us CPU ({claimed[0] / count * 1e6:5.0f} wall)"
            " per message"
        )


async def run(args: argparse.Namespace) -> int:
    """Open a scratch store of the chosen engine and measure."""
    if args.postgresql:
        server = os.environ.get("DATABASE_URL", "")
        if not server:
            raise SystemExit("--postgresql needs DATABASE_URL (a server for a scratch database)")
        async with scratch_database(server) as url, Store.open(url) as store:
            print(f"PostgreSQL, {args.messages} messages per batch size")
            await measure(store, args.sizes, args.messages)
        return 0
    with tempfile.TemporaryDirectory(prefix="cancel-bridge-store-") as scratch:
        async with Store.open(str(Path(scratch, "bench.db"))) as store:
            print(f"SQLite, {args.messages} messages per batch size")
            await measure(store, args.sizes, args.messages)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.store", description=__doc__)
    parser.add_argument("--messages", type=int, default=4000, help="per batch size (4000)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--postgresql", action="store_true", help="a scratch PostgreSQL store")
    return run_main(run(parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
