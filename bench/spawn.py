"""Bridge processes routed to a fake CJ, for the latency and memory benchmarks.

A configuration is `bench.webhooks.bench_config` (a port, the Shoplazza secret variable, the store
file or DATABASE_URL) plus, for a worker, `[targets.cj]` at the fake CJ and `[routes]`. Each
process is `bench.webhooks.spawned`: `python -m bridge ...` with its output (JSON log lines) in a
file of the run's scratch folder, stopped (SIGTERM, then SIGKILL) when its context ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Mapping
from pathlib import Path

import aio_pika

from bench.scratch_db import scratch_database
from bench.webhooks import SECRET_ENV, BenchError, amqp_url, bench_config
from bridge.demo.fake_cj import TOKEN
from bridge.settings import load
from bridge.targets import target_topology

CJ = "cj"
SQLITE, POSTGRESQL = "SQLite", "PostgreSQL"


def cj_sections(cj_url: str, batch_size: int = 1) -> str:
    """`[targets.cj]` at the fake CJ (its token in CJ_ACCESS_TOKEN) and Shoplazza routed to it.

    `batch_size` orders per `cancelOrders` call (1, the shipped default: each alone).
    """
    return f"""
[targets.cj]
url = "{cj_url}"
enterprise_id = "1234567"
action_tracker_id = 987654
open_ended_locking = true
order_id_from = "order_id"
batch_size = {batch_size}

[routes]
shoplazza = ["{CJ}"]
"""


def write_config(
    path: Path, port: int, store_path: Path, cj_url: str | None, cj_batch: int = 1
) -> Path:
    """Write the benchmark's bridge configuration to `path`; with `cj_url`, CJ is routed."""
    routed = cj_sections(cj_url, cj_batch) if cj_url else ""
    path.write_text(bench_config(port, str(store_path)) + routed)
    return path


@contextlib.asynccontextmanager
async def store_env(engine: str) -> AsyncIterator[dict[str, str]]:
    """The environment of processes sharing one scratch store of `engine`.

    SQLite: no DATABASE_URL, so the configuration's file is used. PostgreSQL: a scratch database
    on the server in this process's DATABASE_URL, dropped on exit.
    """
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    env |= {"AMQP_URL": amqp_url(), "CJ_ACCESS_TOKEN": TOKEN}
    if engine == SQLITE:
        yield env
        return
    server = os.environ.get("DATABASE_URL", "")
    if not server:
        raise BenchError("PostgreSQL needs DATABASE_URL (a server to create a scratch database on)")
    async with scratch_database(server) as url:
        yield env | {"DATABASE_URL": url}


async def delete_cj_queues(config: Path, env: Mapping[str, str]) -> None:
    """Delete the CJ target's queues as `config` names them (a fresh start, or clean-up)."""
    spec = target_topology(load(config, {SECRET_ENV: "unused", **env}), CJ)
    async with await aio_pika.connect(amqp_url()) as connection:
        channel = await connection.channel()
        for queue in spec.queues:
            await channel.queue_delete(queue.name)


def run_main(main: Awaitable[int]) -> int:
    """`asyncio.run` where SIGTERM cancels `main` as Ctrl-C does, so processes are still stopped.

    (A job started in the background of a script ignores SIGINT: SIGTERM is how it is stopped.)
    """

    async def cancellable() -> int:
        task = asyncio.current_task()
        if task is not None:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await main

    try:
        return asyncio.run(cancellable())
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("bench: interrupted", file=sys.stderr)
        return 130
