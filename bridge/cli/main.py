"""`cancel-bridge`: run the bridge, check a configuration, print the wire schema."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import structlog
from aio_pika.abc import AbstractIncomingMessage

from bridge import logs
from bridge.amqp import asyncapi, parked, topology
from bridge.backstop import command as backstop
from bridge.backstop import subscriptions
from bridge.cli.online import Verdict, check_online
from bridge.demo.scenario import run_demo
from bridge.reconcile import reconciler
from bridge.runtime import StartupError, serve
from bridge.settings import Config, ConfigError, load, redact_url
from bridge.store import links, status
from bridge.store.deliveries import Store
from bridge.store.engine import SCHEMA_HEAD, StoreUnavailable
from bridge.store.lifecycle import StepKind
from bridge.targets import build, plan, target_topology
from contracts.events import Source
from contracts.schema import event_json_schema
from handlers.occ import OCCSourceSettings
from handlers.registry import SOURCES
from handlers.shoplazza import ShoplazzaSourceSettings

CONFIG_ENV = "BRIDGE_CONFIG"
# Characters a bearer token of ours should have: shorter ones load (16 is the floor), with a
# warning from check-config. `openssl rand -hex 32` gives 64.
STRONG_TOKEN = 32
log = structlog.get_logger(__name__)


def _config_path(args: argparse.Namespace, env: Mapping[str, str]) -> Path:
    if args.config:
        return Path(args.config)
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    raise ConfigError("--config", f"no configuration: pass --config FILE or set {CONFIG_ENV}")


def describe(config: Config, path: Path, env: Mapping[str, str]) -> str:
    """What `run` would do with `config`, in words, without any secret."""
    settings = config.settings
    receiver, broker = settings.receiver, settings.broker
    url_origin = (
        f"from {broker.url_env}"
        if env.get(broker.url_env, "").strip()
        else f"{broker.url_env} unset: default"
    )
    lines = [
        f"configuration OK: {path}",
        (
            f"receiver: http://{receiver.host}:{receiver.port}"
            f" (bodies up to {receiver.max_body_bytes} bytes"
            f"{f'; {receiver.processes} processes on the port' if receiver.processes > 1 else ''})"
        ),
        (
            f"broker: {config.amqp_url_redacted} ({url_origin}); confirm timeout"
            f" {broker.confirm_timeout:g}s, 503 answers say Retry-After: {broker.retry_after}"
        ),
        "topology declared on start:",
        *(f"  {line}" for line in topology.describe()),
        "sources:",
    ]
    for source, src in settings.sources.items():
        secrets = len(config.source_secrets[source])
        previous = (
            f", previous secret from {src.previous_secret_env}"
            f" ({'set' if secrets > 1 else 'unset'})"
            if src.previous_secret_env
            else ""
        )
        options = SOURCES[source].options
        signature = (
            f"; HMAC by each signature header's own algorithm (SHA-512 header; plain header"
            f" SHA-1/256/512 by length), {src.key_encoding or 'base64'} key"
            if "algorithm" in options
            else ""
        )
        if "auth" in options:
            how = "bearer tokens from POST /oauth/token" if src.auth == "oauth" else "HTTP Basic"
            signature = (
                f"; {how} for client {src.username}; the order is read from the platform API"
                f" with {src.api.client_id_env if src.api else '?'} (set) before answering"
            )
        lines.append(
            f"  {source.value}: POST /webhooks/{source.value} -> exchange {topology.ORDERS.name},"
            f" routing key {topology.routing_key(source)}; secret from {src.secret_env} (set)"
            f"{previous}{signature}"
        )
    lines.extend(_describe_targets(config))
    lines.extend(_describe_state(config))
    lines.append(f"log level: {settings.log.level}")
    return "\n".join(lines)


def _describe_targets(config: Config) -> list[str]:
    settings = config.settings
    targets = settings.targets_in_use()
    if not targets:
        return ["targets: none routed (receiver only)"]
    worker = settings.worker
    delays = ", ".join(f"{delay:g}s" for delay in worker.retry_delays)
    lines = [
        (
            f"workers: prefetch {worker.prefetch}; retries after {delays} (last repeats) for up to"
            f" {worker.retry_total:g}s; a crashing message is parked after {worker.poison_attempts}"
            f" deliveries; a claim outlives the call timeout by {worker.lease_margin:g}s; a missing"
            f" order link is awaited {worker.no_link_window:g}s"
        ),
        "targets:",
    ]
    for target in targets:
        spec = target_topology(config, target)
        keys = ", ".join(binding.routing_key for binding in spec.bindings)
        lines.append(f"  {target}: {build(config, target).summary}")
        lines.append(f"    queue {spec.work.name} <- {keys}; parked in {spec.parked.name}")
    return lines


def _describe_state(config: Config) -> list[str]:
    settings = config.settings
    store = settings.store
    url = config.store_url.get_secret_value()
    where = (
        f"PostgreSQL {redact_url(url)} (from {store.url_env})"
        if url.startswith(("postgresql://", "postgres://"))
        else f"SQLite file {url.removeprefix('sqlite:///')}"
    )
    receiver = settings.receiver
    api = (
        f"/api/* with the bearer token from {receiver.api_token_env} (set)"
        if config.api_token is not None
        else "/api/* off (401): no [receiver] api_token_env"
    )
    return [
        f"store: {where}; schema upgraded on start; echoes kept {store.echo_ttl / 86400:g} days",
        f"api: {api}",
    ]


def _run_async(coro: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop  # noqa: PLC0415 - optional: absent on Windows
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cancel-bridge",
        description="Order-cancellation webhooks in, confirmed RabbitMQ events out.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (
        ("run", "run the receiver and one worker per routed target"),
        ("receiver", "run the receiver alone, no workers (run more of them to scale out)"),
        ("worker", "run one target's worker alone (run more of them to scale out)"),
        ("check-config", "validate the configuration and print what run would do"),
    ):
        command = commands.add_parser(name, help=text, description=text)
        command.add_argument("--config", metavar="FILE", help=f"TOML file (default: ${CONFIG_ENV})")
        if name == "worker":
            command.add_argument("--target", required=True, help="target name, e.g. cj")
        if name == "check-config":
            command.add_argument(
                "--online",
                action="store_true",
                help="also make harmless calls to each routed platform (tokens, schemas, a read)",
            )
        if name != "check-config":
            command.add_argument(
                "--metrics-port",
                type=int,
                metavar="PORT",
                help="serve /metrics on this port too (default: [metrics] port, if set)",
            )
        if name == "receiver":
            command.add_argument(
                "--slot",
                type=int,
                default=0,
                help="set by run for its receiver processes: metrics on [metrics] port + SLOT",
            )
    commands.add_parser("schema", help="print the JSON Schema of the published event")
    commands.add_parser(
        "asyncapi", help="print the AsyncAPI 3.0 document of the exchange (as /asyncapi.json)"
    )
    status = commands.add_parser(
        "status", help="what happened to an order: its events and each target's state"
    )
    status.add_argument("order_id", metavar="ORDER_ID")
    status.add_argument("--source", help="the platform the order id belongs to, e.g. shoplazza")
    status.add_argument("--json", action="store_true", help="print JSON (as GET /api/orders)")
    status.add_argument("--config", metavar="FILE", help=f"TOML file (default: ${CONFIG_ENV})")
    links_cmd = commands.add_parser("links", help="order links across platforms")
    links_actions = links_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    link_import = links_actions.add_parser(
        "import", help="link orders from a CSV file: a header of platform names, one order a row"
    )
    link_import.add_argument("file", metavar="FILE.csv")
    link_import.add_argument("--config", metavar="FILE", help=f"TOML file (default: ${CONFIG_ENV})")
    db_cmd = commands.add_parser("db", help="the state store")
    db_actions = db_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    upgrade = db_actions.add_parser("upgrade", help="create or upgrade the store's schema")
    upgrade.add_argument("--config", metavar="FILE", help=f"TOML file (default: ${CONFIG_ENV})")
    commands.add_parser(
        "demo", help="one cancellation end to end: fake Shoplazza sender and fake CJ, real broker"
    )
    parked_cmd = commands.add_parser("parked", help="list, replay or drop parked cancellations")
    actions = parked_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, text in (
        ("list", "show the parked messages of a target"),
        ("replay", "move parked messages back to the target's queue"),
        ("drop", "delete parked messages for good"),
    ):
        command = actions.add_parser(action, help=text, description=text)
        command.add_argument("--config", metavar="FILE", help=f"TOML file (default: ${CONFIG_ENV})")
        command.add_argument("--target", required=True, help="target name, e.g. cj")
        if action != "list":
            command.add_argument("--event-id", action="append", default=[], metavar="ID")
            command.add_argument("--all", action="store_true", help="every parked message")
        if action == "drop":
            command.add_argument("--yes", action="store_true", help="confirm --all")
    reconciler.add_parser(commands)
    backstop.add_parser(commands)
    subscriptions.add_parser(commands)
    return parser


def _parked(args: argparse.Namespace, config: Config) -> int:
    url = config.amqp_url.get_secret_value()
    target = args.target
    source_queue = topology.parked_queue(target)
    if args.action == "list":
        rows = asyncio.run(parked.list_rows(url, source_queue, time.time()))
        print(parked.table(rows))  # noqa: T201 - CLI output
        return 0
    wanted = set(args.event_id)
    if bool(wanted) == bool(args.all):
        print("cancel-bridge: give --event-id ID (repeatable) or --all", file=sys.stderr)  # noqa: T201
        return 2
    if args.action == "drop" and args.all and not args.yes:
        print("cancel-bridge: parked drop --all deletes them for good: add --yes", file=sys.stderr)  # noqa: T201
        return 2

    def select(message: AbstractIncomingMessage) -> bool:
        return args.all or message.message_id in wanted

    action: parked.Action = "replay" if args.action == "replay" else "drop"
    moved = asyncio.run(
        parked.replay_or_drop(
            url,
            target,
            action,
            select,
            by=f"with cancel-bridge parked {action}",
            markers=parked.Markers(
                replayed=StepKind.REPLAYED.marker, dropped=StepKind.DROPPED.marker
            ),
            history=lambda: _history(config),
        )
    )
    if action == "replay":
        print(f"replayed {moved} to {topology.work_queue(target)}")  # noqa: T201 - CLI output
    else:
        print(f"dropped {moved} from {source_queue}")  # noqa: T201 - CLI output
    return 0 if moved or args.all else 1


class _Unwritten:
    """The history when the store cannot be opened: the move stands, nothing is written."""

    async def note_parked(self, event_id: str, target: str, now: datetime, detail: str) -> None:
        """Write nothing (the caller already said why)."""
        del event_id, target, now, detail


def _not_written(exc: StoreUnavailable) -> None:
    print(f"cancel-bridge: not written to the store's history: {exc}", file=sys.stderr)  # noqa: T201


@contextlib.asynccontextmanager
async def _history(config: Config) -> AsyncIterator[parked.HistoryWriter]:
    """The store, for the history of a parked move; the move stands if the store is away."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            store = await stack.enter_async_context(Store.open(config.store_url.get_secret_value()))
        except StoreUnavailable as exc:
            _not_written(exc)
            yield _Unwritten()
            return
        try:
            yield store
        except StoreUnavailable as exc:
            _not_written(exc)


async def _status(args: argparse.Namespace, config: Config) -> int:
    async with Store.open(config.store_url.get_secret_value()) as store:
        found = await status.order_status(store, args.order_id, args.source)
    if args.json:
        sys.stdout.write(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(status.render(args.order_id, found))  # noqa: T201 - CLI output
    return 0 if found else 1


def _read_links(path: str) -> list[dict[str, str]] | None:
    try:
        return links.parse_csv(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as exc:
        print(f"cancel-bridge: cannot read {path}: {exc}", file=sys.stderr)  # noqa: T201
    except links.LinkError as exc:
        print(f"cancel-bridge: {path}: {exc}", file=sys.stderr)  # noqa: T201 - CLI output
    return None


async def _links_import(args: argparse.Namespace, config: Config) -> int:
    found = args.links
    now = datetime.now(UTC)
    async with Store.open(config.store_url.get_secret_value()) as store:
        for link in found:
            await store.link(link, now)
    print(f"linked {len(found)} orders from {args.file}")  # noqa: T201 - CLI output
    return 0


def _state_command(args: argparse.Namespace, config: Config) -> int:
    """`status` and `links import`: read or write the store."""
    command = _status if args.command == "status" else _links_import
    if args.command == "links":
        args.links = _read_links(args.file)
        if args.links is None:
            return 1
    try:
        return asyncio.run(command(args, config))
    except StoreUnavailable as exc:
        print(f"cancel-bridge: {exc}", file=sys.stderr)  # noqa: T201 - CLI output
        return 1


async def _db_upgrade(config: Config) -> None:
    async with Store.open(config.store_url.get_secret_value()):
        pass  # opening upgrades


def _demo() -> int:
    logs.configure("warning")
    try:
        _run_async(run_demo(print))
    except StartupError as exc:
        print(f"cancel-bridge: {exc}", file=sys.stderr)  # noqa: T201 - CLI output
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `cancel-bridge` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.command in ("schema", "asyncapi"):
        printed = event_json_schema() if args.command == "schema" else asyncapi.document()
        sys.stdout.write(orjson.dumps(printed, option=orjson.OPT_INDENT_2).decode())
        sys.stdout.write("\n")
        return 0
    if args.command == "demo":
        return _demo()
    env = os.environ
    try:
        path = _config_path(args, env)
        config = load(path, env)
    except ConfigError as exc:
        print(f"cancel-bridge: config error: {exc}", file=sys.stderr)  # noqa: T201 - CLI output
        return 1
    return _dispatch(args, config, path, env)


def weak_tokens(config: Config) -> list[str]:
    """A `warning:` line per bearer token of ours shorter than `STRONG_TOKEN` (never its value).

    Only the tokens callers must present to us (`/api/*` and the console, `/metrics`): the
    platforms' tokens we send are theirs to choose.
    """
    settings = config.settings
    ours = (
        ("receiver.api_token_env", settings.receiver.api_token_env, config.api_token),
        ("metrics.token_env", settings.metrics.token_env, config.metrics_token),
    )
    return [
        f"warning: {key} = {name!r}: the token is shorter than {STRONG_TOKEN} characters;"
        " use a longer random one (openssl rand -hex 32)"
        for key, name, token in ours
        if token is not None and len(token.get_secret_value()) < STRONG_TOKEN
    ]


def open_shops(config: Config) -> list[str]:
    """A `warning:` line for each source taking any shop (Shoplazza `shops`, OCC `sites`)."""
    lines = []
    shoplazza = config.source_settings.get(Source.SHOPLAZZA)
    if isinstance(shoplazza, ShoplazzaSourceSettings) and not shoplazza.shops:
        lines.append(
            "warning: sources.shoplazza.shops is not set: X-Shoplazza-Shop-Domain is not signed,"
            " so a signed webhook resent with another shop name is taken as another order; list"
            " the shops this app serves"
        )
    occ_source = config.source_settings.get(Source.OCC)
    if isinstance(occ_source, OCCSourceSettings) and not occ_source.sites:
        lines.append(
            "warning: sources.occ.sites is not set: x-ccsite is not signed, so a signed webhook"
            " resent with another site id is taken as another order; list the tenant's sites"
        )
    return lines


def _check_config(
    args: argparse.Namespace, config: Config, path: Path, env: Mapping[str, str]
) -> int:
    """What run would do; with `--online`, a line per platform on whether its wire holds."""
    lines = (
        describe(config, path, env),
        *config.settings.deprecations,
        *weak_tokens(config),
        *open_shops(config),
    )
    print(*lines, sep="\n")  # noqa: T201 - CLI output
    if not args.online:
        return 0
    verdicts: list[Verdict] = []

    async def check() -> None:
        verdicts.extend(await check_online(config, datetime.now(UTC)))

    _run_async(check())
    print("\n".join(verdict.line() for verdict in verdicts))  # noqa: T201 - CLI output
    return 0 if all(verdict.ok for verdict in verdicts) else 1


def _dispatch(args: argparse.Namespace, config: Config, path: Path, env: Mapping[str, str]) -> int:
    """The commands that need a configuration."""
    if args.command == "parked":
        return _parked(args, config)
    if args.command in ("backstop", "subscriptions", "reconcile"):
        return _polls(args, config, env)
    if args.command in ("status", "links"):
        return _state_command(args, config)
    if args.command == "db":
        _run_async(_db_upgrade(config))
        where = redact_url(config.store_url.get_secret_value())
        print(f"store schema at {SCHEMA_HEAD}: {where}")  # noqa: T201 - CLI output
        return 0
    if args.command == "check-config":
        return _check_config(args, config, path, env)
    return _run(args, config, path, env)


def _polls(args: argparse.Namespace, config: Config, env: Mapping[str, str]) -> int:
    """The commands that ask a platform: backstop, subscriptions, reconcile."""
    if args.command == "backstop":
        return backstop.command(args, config, env)
    if args.command == "subscriptions":
        return subscriptions.command(args, config, env)
    return reconciler.command(args, config)


def _metrics_port(args: argparse.Namespace, config: Config) -> int | None:
    """`--metrics-port`, else `[metrics] port` (plus the slot of a receiver child), else None."""
    if args.metrics_port is not None:
        return int(args.metrics_port)
    port = config.settings.metrics.port
    if port is None:
        return None
    return port + int(getattr(args, "slot", 0))


def _run(args: argparse.Namespace, config: Config, path: Path, env: Mapping[str, str]) -> int:
    """`run`, `receiver` and `worker`: start, serve until a signal, stop."""
    logs.configure(config.settings.log.level)
    more_receivers = None
    if args.command == "worker":
        receiver_on, targets = False, [args.target]
    elif args.command == "receiver":
        receiver_on, targets = True, []
    else:
        receiver_on, targets = bool(config.settings.sources), list(config.settings.targets_in_use())
        more_receivers = (path.resolve(), env)
    try:
        for target in targets:
            plan(config, target)  # refuse an unusable target before starting anything
        _run_async(
            serve(
                config,
                receiver_on=receiver_on,
                targets=targets,
                more_receivers=more_receivers,
                metrics_port=_metrics_port(args, config),
            )
        )
    except ConfigError as exc:
        print(f"cancel-bridge: config error: {exc}", file=sys.stderr)  # noqa: T201 - CLI output
        return 1
    except StartupError as exc:
        print(f"cancel-bridge: {exc}", file=sys.stderr)  # noqa: T201 - CLI output
        return 1
    return 0
