"""CJ reconciliation: find cancellations CJ accepted but never declined, and send them again.

CJ answers `cancelOrders` at once but validates later; a refusal then is silent. A validated
cancellation leaves a decline in CJ's Commission Detail records (`handlers.cj.is_decline`: a
non-original record DECLINED on open-ended trackers, with zero amounts on any tracker), so
every CJ delivery the store holds as `delivered` in a window is looked up there. Only
`delivered`: `already_done` means CJ refused the call itself ("already declined", "locked"), so
there is nothing more to wait for and nothing a new call could change.

A delivery younger than the grace period is `waiting` (CJ has not validated it yet); one whose
order CJ declined is `declined`; one without is `missing`; one whose CJ order id is unknown (its
event lacks the field `order_id_from` names, or the order link is gone) is `unknown`.

Requeueing a missing one reopens its delivery in the store first (`delivered` -> `retrying`,
attempts kept; a delivered pair is never claimed again), then publishes the original event,
confirmed, to the CJ work queue, so a worker calls CJ again. A publish that fails undoes the
reopen, and the next run finds the order again. A delivery reopened `max_requeues` times is
left alone (reported, not requeued): CJ keeps refusing it, and a person must look.

The event published is the one stored on arrival (`events.event_json`). Rows recorded before
that column existed are rebuilt from the event columns: same event id, order, source, shop and
reason, with `first_seen` as both times and no order number, source reason or delivery id (an
`order_id_from = "order_number"` target then parks it as unbuildable).

`cancel-bridge reconcile cj` exits 0 when nothing is missing, 3 when something is (requeued or
not), 1 on an error (configuration, store, CJ's answer, broker; also when a requeue failed) and
2 on bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import aio_pika
import orjson
import structlog
from pydantic import SecretStr

from bridge.amqp import topology
from bridge.amqp.messages import copy_with, event_message
from bridge.amqp.publisher import BrokerUnavailable, Publisher
from bridge.background import in_background
from bridge.cli_types import duration_arg
from bridge.executor import Executor, HttpAnswer
from bridge.reconcile.report import (
    EXIT_ERROR,
    EXIT_USAGE,
    TARGET,
    Checked,
    Report,
    as_json,
    compare,
    exit_status,
    iso,
    original_event,
    reopen_detail,
    table,
)
from bridge.settings import Config, ConfigError
from bridge.store.deliveries import Store
from bridge.store.engine import StoreUnavailable
from bridge.store.reopens import DeliveredRow
from bridge.targets import build, target_topology
from contracts.cj import CommissionRecord
from handlers.base import Rejected, RetryLater
from handlers.cj import (
    MAX_WINDOW,
    CJCancelConfig,
    CJCommissions,
    CJTarget,
    CJTargetSettings,
    CommissionsPage,
    commissions,
    commissions_call,
    declined_orders,
    read_commissions,
)

log = structlog.get_logger(__name__)

QUERY_ATTEMPTS = 3  # per page, when CJ answers 429/5xx or does not answer
MAX_PAUSE = 30.0  # seconds between those attempts at most
MAX_PAGES = 1000
CLOCK_SLACK = timedelta(minutes=10)  # CJ's posting clock against ours
READY_TIMEOUT = 15.0  # seconds to wait for the broker before requeueing
REQUEUED_HEADER = "x-requeued-by"
STALE_REOPEN = timedelta(minutes=15)  # a reopened pair no worker took by then is sent again


class ReconcileError(Exception):
    """Reconciliation could not finish; the message says why (never with a secret)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What reconciling CJ needs from the configuration."""

    settings: CJTargetSettings
    cj: CJCancelConfig
    token: SecretStr
    commissions: CJCommissions
    timeout: float
    topology: topology.TargetTopology
    app_id: str


# -- I/O: the store, CJ and the broker ----------------------------------------------------------


def plan_for(config: Config) -> Plan:
    """The CJ target's reconciliation settings and token; `ConfigError` names what is missing."""
    section = getattr(config.settings.targets, TARGET, None)
    if not isinstance(section, CJTargetSettings):
        raise ConfigError("targets.cj", "not configured: reconciliation reads CJ with its token")
    if TARGET not in config.settings.targets_in_use():
        raise ConfigError("routes", "no route sends to cj: there is nothing to reconcile")
    if not section.advertiser_ids:
        raise ConfigError(
            "targets.cj.advertiser_ids",
            "needed to reconcile: the CJ company ids (CIDs) whose commission records show"
            " the declines",
        )
    made = build(config, TARGET)
    if not isinstance(made.adapter, CJTarget):  # pragma: no cover - the registry's own line
        raise ConfigError("targets.cj", "not the CJ adapter")
    return Plan(
        section,
        made.adapter.cfg,
        made.adapter.token,
        commissions(section),
        made.timeout,
        target_topology(config, TARGET),
        config.settings.broker.app_id,
    )


def _secret_free(text: str, token: SecretStr) -> str:
    secret = token.get_secret_value()
    return text.replace(secret, "***") if secret else text


async def _page(
    executor: Executor, plan: Plan, since: datetime, before: datetime, after: str | None
) -> CommissionsPage:
    """One page of records, asking again (bounded) while CJ says "later"."""
    call = commissions_call(plan.commissions, plan.token, since, before, after)
    outcome: CommissionsPage | RetryLater | Rejected = RetryLater("not asked")
    for attempt in range(1, QUERY_ATTEMPTS + 1):
        answer = await executor.call(call, within=plan.timeout)
        if isinstance(answer, HttpAnswer):
            outcome = read_commissions(answer.status, answer.headers, answer.body, _now())
        else:
            outcome = answer
        if not isinstance(outcome, RetryLater):
            break
        if attempt < QUERY_ATTEMPTS:
            pause = outcome.after if outcome.after is not None else 2.0**attempt
            log.info("reconcile.query_retry", reason=outcome.reason, pause=min(pause, MAX_PAUSE))
            await asyncio.sleep(min(pause, MAX_PAUSE))  # paced: CJ asked us to wait
    if isinstance(outcome, CommissionsPage):
        return outcome
    reason = outcome.reason
    raise ReconcileError(_secret_free(reason, plan.token))


async def fetch_records(
    executor: Executor, plan: Plan, since: datetime, before: datetime
) -> list[CommissionRecord]:
    """Every commission record posted in [since, before), page after page."""
    records: list[CommissionRecord] = []
    after: str | None = None
    for _ in range(MAX_PAGES):
        page = await _page(executor, plan, since, before, after)
        records.extend(page.records)
        if page.after is None:
            return records
        if page.after == after:
            raise ReconcileError("cj commission query: paging does not advance")
        after = page.after
    raise ReconcileError(f"cj commission query: more than {MAX_PAGES} pages")


async def reconcile_once(
    plan: Plan, store: Store, executor: Executor, *, window: timedelta, grace: timedelta
) -> Report:
    """Check every CJ delivery recorded as `delivered` in the last `window` against CJ."""
    now = _now()
    since = now - window
    link_platform = TARGET if plan.cj.order_id_from == "link" else None
    rows = await store.delivered_between(TARGET, since, now, link_platform)
    if not rows:
        return Report(since, now, grace, (), 0)
    # From the first sighting of the oldest event (a decline answers its first call, which a
    # later requeue's delivery time would pass over), within the span CJ allows.
    first = min(row.first_seen for row in rows)
    start = max(first - CLOCK_SLACK, now + CLOCK_SLACK - MAX_WINDOW)
    records = await fetch_records(executor, plan, start, now + CLOCK_SLACK)
    declined = declined_orders(records)
    return Report(
        since, now, grace, compare(rows, declined, plan.cj, now=now, grace=grace), len(records)
    )


async def requeue(
    report: Report, plan: Plan, store: Store, publisher: Publisher, *, max_requeues: int
) -> Report:
    """Reopen each missing delivery and publish its event to the CJ work queue, confirmed.

    First, pairs reopened earlier whose message no worker took within `STALE_REOPEN` (the
    process may have stopped between reopen and publish) get their event sent again.
    """
    resent = await _resend_stale(plan, store, publisher)
    missing = report.missing
    counts = await store.reopen_counts(TARGET, [order.event_id for order in missing])
    done: dict[str, str] = {}
    for order in missing:
        done[order.event_id] = await _requeue_one(
            order,
            plan,
            store,
            publisher,
            reopened=counts.get(order.event_id, 0),
            max_requeues=max_requeues,
        )
    orders = tuple(
        replace(order, action=done[order.event_id]) if order.event_id in done else order
        for order in report.orders
    )
    return replace(report, orders=orders, resent=resent)


async def _resend_stale(plan: Plan, store: Store, publisher: Publisher) -> tuple[str, ...]:
    now = _now()
    sent = []
    for row in await store.stale_reopens(TARGET, now - STALE_REOPEN, now):
        try:
            await publisher.to_queue(plan.topology.work.name, _requeued(plan, row), "reconcile")
        except BrokerUnavailable as exc:  # still reopened: the next run tries again
            log.warning("reconcile.resend_failed", event_id=row.event_id, detail=str(exc))
            continue
        log.warning("reconcile.resent", event_id=row.event_id, target=TARGET)
        sent.append(row.event_id)
    return tuple(sent)


def _requeued(plan: Plan, row: DeliveredRow) -> aio_pika.Message:
    """The original event's message, marked as requeued by reconciliation."""
    event = original_event(row)
    return copy_with(event_message(event, app_id=plan.app_id), {REQUEUED_HEADER: "reconcile"})


async def _requeue_one(  # noqa: PLR0913 - the order, where it goes, and the limit
    order: Checked,
    plan: Plan,
    store: Store,
    publisher: Publisher,
    *,
    reopened: int,
    max_requeues: int,
) -> str:
    if reopened >= max_requeues:
        return f"not requeued: reopened {reopened} times already"
    now = _now()
    detail = reopen_detail(order, now)
    if not await store.reopen(order.event_id, TARGET, now, detail, attempts=order.attempts):
        return "not requeued: delivered again since, or no longer delivered"
    message = copy_with(
        event_message(order.event, app_id=plan.app_id), {REQUEUED_HEADER: "reconcile"}
    )
    try:
        await publisher.to_queue(plan.topology.work.name, message, "reconcile")
    except BrokerUnavailable as exc:
        await store.undo_reopen(order.event_id, TARGET, _now(), detail)
        return f"requeue failed: {exc}"
    return "requeued"


def _now() -> datetime:
    return datetime.now(UTC)


async def _ready(publisher: Publisher) -> None:
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await publisher.wait_ready()
    except TimeoutError:
        raise ReconcileError(
            f"broker not reachable within {READY_TIMEOUT:g}s: nothing requeued"
        ) from None


# -- the command line ---------------------------------------------------------------------------


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]  # argparse's own generic
    """`cancel-bridge reconcile cj [--since 24h] [--grace 2h] [--requeue] [--json]`."""
    text = "find cancellations CJ accepted but never declined (and send them again)"
    parser = commands.add_parser(
        "reconcile",
        help=text,
        description=text,
        epilog="exit status: 0 none missing, 3 missing found, 1 error, 2 bad arguments",
    )
    parser.add_argument("target", choices=(TARGET,), help="the target to reconcile")
    parser.add_argument(
        "--since",
        type=duration_arg,
        metavar="DURATION",
        help="deliveries recorded this far back: 24h, 90m, 7d (default: reconcile_window)",
    )
    parser.add_argument(
        "--grace",
        type=duration_arg,
        metavar="DURATION",
        help="younger deliveries are not expected at CJ yet (default: reconcile_grace)",
    )
    parser.add_argument(
        "--requeue", action="store_true", help="reopen the missing ones and send them again"
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--config", metavar="FILE", help="TOML file (default: $BRIDGE_CONFIG)")


def command(args: argparse.Namespace, config: Config) -> int:
    """Run `cancel-bridge reconcile cj`; the exit status (see the module docstring)."""
    try:
        plan = plan_for(config)
    except ConfigError as exc:
        print(f"cancel-bridge: config error: {exc}", file=sys.stderr)  # noqa: T201 - CLI output
        return EXIT_ERROR
    window: timedelta = args.since or plan.settings.reconcile_window
    grace: timedelta = plan.settings.reconcile_grace if args.grace is None else args.grace
    if not timedelta(0) < window <= MAX_WINDOW or grace >= window:
        problem = f"--since must be more than 0 and at most {MAX_WINDOW.days}d, and --grace less"
        print(f"cancel-bridge: reconcile: {problem}", file=sys.stderr)  # noqa: T201 - CLI output
        return EXIT_USAGE
    try:
        with _logs_to_stderr():
            report = asyncio.run(_command(plan, config, window, grace, requeueing=args.requeue))
    except (ReconcileError, StoreUnavailable, BrokerUnavailable) as exc:
        print(f"cancel-bridge: reconcile cj: {exc}", file=sys.stderr)  # noqa: T201 - CLI output
        return EXIT_ERROR
    if args.json:
        sys.stdout.write(orjson.dumps(as_json(report), option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(table(report, plan.commissions.advertiser_ids, _now()))  # noqa: T201 - CLI output
    return exit_status(report)


@contextlib.contextmanager
def _logs_to_stderr() -> Iterator[None]:
    """Standard output is the report (JSON with --json): log lines, warnings up, go to stderr."""
    saved = structlog.get_config()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    try:
        yield
    finally:
        structlog.configure(**saved)


async def _command(
    plan: Plan, config: Config, window: timedelta, grace: timedelta, *, requeueing: bool
) -> Report:
    async with (
        Store.open(config.store_url.get_secret_value()) as store,
        Executor.running(connections=4) as executor,
    ):
        report = await reconcile_once(plan, store, executor, window=window, grace=grace)
        if not (requeueing and report.missing):
            return report
        async with Publisher.running(
            config.amqp_url.get_secret_value(),
            config.settings.broker,
            connection_name="reconcile",
            targets=(plan.topology,),
        ) as publisher:
            await _ready(publisher)
            return await requeue(
                report, plan, store, publisher, max_requeues=plan.settings.reconcile_max_requeues
            )


# -- on a schedule, inside `run` ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def scheduled(
    config: Config, store: Store, *, on_report: Callable[[Report | None], None] | None = None
) -> AsyncIterator[None]:
    """Reconcile CJ every `reconcile_every` (first at once) while the context lasts.

    Off (nothing runs) unless `[targets.cj] reconcile_every` is set and a route sends to CJ.
    With `reconcile_requeue`, missing ones are requeued. Each run logs what it found;
    `on_report` sees each run's report, or None for a run that failed (logged; tests await it).
    """
    section = getattr(config.settings.targets, TARGET, None)
    if (
        not isinstance(section, CJTargetSettings)
        or section.reconcile_every is None
        or TARGET not in config.settings.targets_in_use()
    ):
        yield
        return
    plan = plan_for(config)
    async with contextlib.AsyncExitStack() as stack:
        executor = await stack.enter_async_context(Executor.running(connections=4))
        publisher = None
        if section.reconcile_requeue:
            publisher = await stack.enter_async_context(
                Publisher.running(
                    config.amqp_url.get_secret_value(),
                    config.settings.broker,
                    connection_name="reconcile",
                    targets=(plan.topology,),
                )
            )
        async with in_background(
            _every(plan, store, executor, publisher, on_report), "reconcile-cj"
        ):
            yield


async def _every(
    plan: Plan,
    store: Store,
    executor: Executor,
    publisher: Publisher | None,
    on_report: Callable[[Report | None], None] | None,
) -> None:
    every = plan.settings.reconcile_every
    assert every is not None  # noqa: S101 - `scheduled` runs only with it set
    while True:
        report = await _scheduled_once(plan, store, executor, publisher)
        if on_report is not None:
            on_report(report)
        await asyncio.sleep(every.total_seconds())  # the schedule itself


async def _scheduled_once(
    plan: Plan, store: Store, executor: Executor, publisher: Publisher | None
) -> Report | None:
    settings = plan.settings
    try:
        report = await reconcile_once(
            plan,
            store,
            executor,
            window=settings.reconcile_window,
            grace=settings.reconcile_grace,
        )
        if publisher is not None and report.missing:
            await _ready(publisher)
            report = await requeue(
                report, plan, store, publisher, max_requeues=settings.reconcile_max_requeues
            )
    except (ReconcileError, StoreUnavailable) as exc:
        log.warning("reconcile.failed", target=TARGET, error=str(exc))
        return None
    except Exception:  # a bug here must not end `run`: logged, and the next run tries again
        log.exception("reconcile.crashed", target=TARGET)
        return None
    _log(report, plan.commissions.advertiser_ids)
    return report


def _log(report: Report, advertisers: Sequence[str]) -> None:
    for order in report.orders:
        if order.status in ("missing", "unknown"):
            log.warning(
                "reconcile.missing" if order.status == "missing" else "reconcile.unknown",
                event_id=order.event_id,
                target=TARGET,
                order_id=order.order_id,
                cj_order_id=order.cj_order_id,
                delivered_at=iso(order.delivered_at),
                reference=order.reference,
                action=order.action,
            )
    if report.orders and not report.records_seen:
        log.warning("reconcile.no_records", advertiser_ids=list(advertisers))
    log.info(
        "reconcile.done",
        target=TARGET,
        checked=len(report.orders),
        declined=len(report.having("declined")),
        missing=len(report.missing),
        waiting=len(report.having("waiting")),
        unknown=len(report.having("unknown")),
        requeued=len(report.requeued),
        requeue_failed=len(report.failed),
        records_seen=report.records_seen,
    )
