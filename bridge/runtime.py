"""Running the bridge: the receiver and the workers, in one process, until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

import structlog
from aiohttp import web

from bridge.backstop import schedule as backstop
from bridge.limits import connection_cap, raise_open_files
from bridge.metrics import Metrics
from bridge.reconcile import reconciler
from bridge.settings import Config, redact_url
from bridge.store.deliveries import Store
from bridge.store.engine import StoreUnavailable
from bridge.targets import plan
from bridge.tracing import Tracing, TracingUnavailable
from bridge.web import processes
from bridge.web.app import create_app
from bridge.web.connections import CappedSite
from bridge.web.keys import METRICS
from bridge.web.metrics_page import serve_metrics
from bridge.web.webhooks import PUBLISHER
from bridge.worker.consumer import Worker
from handlers.registry import TARGETS

log = structlog.get_logger(__name__)


class StartupError(Exception):
    """The bridge cannot start; the message is the one line the operator sees."""


async def serve(
    config: Config,
    *,
    receiver_on: bool,
    targets: Sequence[str],
    more_receivers: tuple[Path, Mapping[str, str]] | None = None,
    metrics_port: int | None = None,
) -> None:
    """Run the receiver and/or workers until SIGINT or SIGTERM, then drain and close.

    With `more_receivers` (the config file and environment) and `[receiver] processes` above
    one, the receiver's other processes are started and kept running beside this one. With
    `metrics_port`, `/metrics` is also served on a listener of its own.
    """
    # Signals first: as PID 1 in a container, an unhandled SIGTERM during startup is ignored.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    for line in config.settings.deprecations:  # `check-config` prints the same lines
        log.warning("config.deprecated", detail=line)
    plans = [plan(config, target) for target in targets]
    url = config.amqp_url.get_secret_value()
    metrics = Metrics()
    try:
        tracing = Tracing.configure(config.settings.tracing)
    except TracingUnavailable as exc:
        raise StartupError(str(exc)) from None
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(tracing.shutdown)
        store = await stack.enter_async_context(open_store(config))
        if metrics_port is not None:
            try:
                await serve_metrics(config, metrics, metrics_port, stack)
            except OSError as exc:
                host, reason = config.settings.metrics.host, exc.strerror or str(exc)
                raise StartupError(f"cannot listen on {host}:{metrics_port}: {reason}") from None
        if receiver_on:
            app = await start_receiver(config, stack, store, metrics, tracing)
            if more_receivers is not None:
                await _run_extras(config, stack, store, app, more_receivers)
        for worker_plan in plans:
            await stack.enter_async_context(
                Worker.running(
                    worker_plan,
                    url,
                    config.settings.broker,
                    store,
                    metrics=metrics,
                    tracing=tracing,
                    depth_interval=config.settings.metrics.queue_interval,
                )
            )
        if any(TARGETS[target].reconciles for target in targets):
            # Silent failures (CJ's): compared on a schedule with the platform's own records.
            await stack.enter_async_context(reconciler.scheduled(config, store))
        # What startup made lives to the end: keep the collector off it.
        gc.freeze()
        await stop.wait()
        log.info("bridge.stopping")


async def _run_extras(
    config: Config,
    stack: contextlib.AsyncExitStack,
    store: Store,
    app: web.Application,
    more_receivers: tuple[Path, Mapping[str, str]],
) -> None:
    """What `run` adds to its receiver: the other receiver processes, the scheduled backstop."""
    receiver = config.settings.receiver
    path, env = more_receivers
    if receiver.processes > 1:
        await stack.enter_async_context(
            processes.children(receiver.processes - 1, path, env, receiver.shutdown_timeout)
        )
    await stack.enter_async_context(
        backstop.scheduled(config, env, store, app[PUBLISHER], app[METRICS])
    )


@contextlib.asynccontextmanager
async def open_store(config: Config) -> AsyncIterator[Store]:
    """The configured store, upgraded; one that cannot be opened is a `StartupError`."""
    try:
        async with Store.open(config.store_url.get_secret_value()) as store:
            log.info("store.opened", store=redact_url(config.store_url.get_secret_value()))
            yield store
    except StoreUnavailable as exc:
        raise StartupError(f"cannot open the store: {exc}") from None


async def start_receiver(
    config: Config,
    stack: contextlib.AsyncExitStack,
    store: Store | None = None,
    metrics: Metrics | None = None,
    tracing: Tracing | None = None,
) -> web.Application:
    """Start the receiver; `stack` stops it. A port in use is a `StartupError`."""
    receiver = config.settings.receiver
    app = create_app(config, store, metrics, tracing)
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=receiver.shutdown_timeout,
        # aiohttp has no header timeout: its keep-alive timer, armed when a client connects, is
        # the only bound on one that dribbles its headers (aiohttp's default is an hour).
        keepalive_timeout=receiver.header_timeout,
    )
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    soft, _ = raise_open_files()
    cap = connection_cap(receiver.max_connections, soft)
    refused = app[METRICS].connections_refused
    # Several receiver processes share the port; the kernel spreads connections over them.
    site = CappedSite(
        runner,
        receiver.host,
        receiver.port,
        cap=cap,
        retry_after=config.settings.broker.retry_after,
        on_refused=refused.inc,
        reuse_port=receiver.processes > 1,
    )
    try:
        await site.start()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise StartupError(f"cannot listen on {receiver.host}:{receiver.port}: {reason}") from None
    log.info(
        "receiver.listening",
        host=receiver.host,
        port=receiver.port,
        max_connections=cap,
        open_files=soft,
    )
    return app
