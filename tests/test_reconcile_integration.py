"""CJ reconciliation end to end: real receiver, worker, RabbitMQ and store (both engines), fake CJ.

The fake CJ records a reversal and a cancellation (zero amounts; DECLINED when the request sent
`status: Declined`, AUTOMATED otherwise) for every cancellation it accepts, except for orders
where a silent failure was planted: accepted, nothing recorded, as when CJ's later validation
refuses a cancellation without a word.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
import structlog
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr

from bridge.amqp import topology
from bridge.amqp.publisher import Publisher
from bridge.demo.fake_cj import ADVERTISER_ID, TOKEN, FakeCJ, Reply
from bridge.executor import Executor
from bridge.metrics import Metrics
from bridge.reconcile import reconciler
from bridge.reconcile import report as reconcile_report
from bridge.settings import Config
from bridge.store.deliveries import Store
from bridge.store.lifecycle import DeliveryState
from bridge.store.tables import transitions
from bridge.targets import plan as worker_plan_for
from bridge.web.app import create_app
from bridge.worker.consumer import Worker
from tests.harness.broker import delete_target_queues, fresh_target_queues
from tests.harness.pipeline import SETTLE_TIMEOUT, Client, Pipeline, pipeline_config
from tests.harness.receiver import ClientFactory, wait_ready

WINDOW = timedelta(hours=1)
NO_GRACE = timedelta(0)


def reconciling(pipeline: Pipeline, **changes: object) -> Config:
    """The pipeline's configuration with CJ's commission API (the fake's) and advertiser id."""
    settings = pipeline.config.settings
    section = settings.targets.cj  # type: ignore[attr-defined]
    section = section.model_copy(
        update={
            "commissions_url": pipeline.cj.commissions_url,
            "advertiser_ids": (ADVERTISER_ID,),
            "reconcile_window": WINDOW,
            "reconcile_grace": NO_GRACE,
            **changes,
        }
    )
    targets = settings.targets.model_copy(update={"cj": section})
    return dataclasses.replace(
        pipeline.config, settings=settings.model_copy(update={"targets": targets})
    )


def ids(orders: tuple[reconcile_report.Checked, ...]) -> list[str]:
    return sorted(order.order_id for order in orders)


async def deliver(pipeline: Pipeline, fine: int, lost: int = 1, times: int = 1) -> list[str]:
    """Post `fine` cancellations CJ declines and `lost` it accepts silently; the lost ids.

    CJ holds each order's original sale record too (posted in the window: only a decline may
    count, not any record of the order).
    """
    tag = uuid.uuid4().hex[:8]
    missing = [f"lost-{n}-{tag}" for n in range(lost)]
    declined = [f"fine-{n}-{tag}" for n in range(fine)]
    for order in missing:
        pipeline.cj.plant_silent_failure(order, times)
    for order in declined + missing:
        pipeline.cj.add_sale(order)
        await pipeline.post(id=order)
    await pipeline.settled("delivered", fine + lost)
    return missing


def without_open_ended_locking(config: Config) -> Config:
    """`config` with a CJ action tracker without open-ended locking: no `status` is sent."""
    settings = config.settings
    section = settings.targets.cj.model_copy(update={"open_ended_locking": False})  # type: ignore[attr-defined]
    targets = settings.targets.model_copy(update={"cj": section})
    return dataclasses.replace(config, settings=settings.model_copy(update={"targets": targets}))


@pytest.fixture
async def plain_pipeline(
    aiohttp_client: ClientFactory,
    amqp_url: str,
    amqp: AbstractRobustConnection,
    cj: FakeCJ,
    database_url: str,
) -> AsyncIterator[Pipeline]:
    """The `pipeline` fixture's wiring, for a tracker without open-ended locking."""
    config = without_open_ended_locking(pipeline_config(amqp_url, cj.url, database_url))
    worker_plan = worker_plan_for(config, "cj")
    channel = await amqp.channel()
    await fresh_target_queues(channel, worker_plan.topology)
    parked = await channel.get_queue(worker_plan.topology.parked.name)
    metrics = Metrics()
    async with Store.open(config.store_url.get_secret_value()) as store:
        client: Client = await aiohttp_client(create_app(config, store, metrics))
        await wait_ready(client)
        async with Worker.running(
            worker_plan, amqp_url, config.settings.broker, store, metrics=metrics
        ) as worker:
            yield Pipeline(client, worker, cj, parked, store, config, metrics)
    await delete_target_queues(channel, worker_plan.topology)


async def once(pipeline: Pipeline, config: Config | None = None) -> reconcile_report.Report:
    plan = reconciler.plan_for(config or reconciling(pipeline))
    async with Executor.running() as executor:
        return await reconciler.reconcile_once(
            plan, pipeline.store, executor, window=WINDOW, grace=NO_GRACE
        )


@pytest.fixture
async def publisher(pipeline: Pipeline, amqp_url: str) -> AsyncIterator[Publisher]:
    plan = reconciler.plan_for(reconciling(pipeline))
    async with Publisher.running(
        amqp_url, pipeline.config.settings.broker, connection_name="test", targets=(plan.topology,)
    ) as running:
        async with asyncio.timeout(SETTLE_TIMEOUT):
            await running.wait_ready()
        yield running


async def requeue(
    pipeline: Pipeline, publisher: Publisher, report: reconcile_report.Report, max_requeues: int = 3
) -> reconcile_report.Report:
    plan = reconciler.plan_for(reconciling(pipeline))
    return await reconciler.requeue(
        report, plan, pipeline.store, publisher, max_requeues=max_requeues
    )


async def test_a_planted_missing_decline_is_found_and_requeued_once(
    pipeline: Pipeline, publisher: Publisher
) -> None:
    """Of four accepted cancellations CJ declined three: the fourth is reported, sent again."""
    (lost,) = await deliver(pipeline, fine=3)
    report = await once(pipeline)
    assert ids(report.missing) == [lost]
    assert len(report.having("declined")) == 3
    assert report.records_seen == 4 + 6  # the sales, a reversal and a decline for 3 of them

    requeued = await requeue(pipeline, publisher, report)
    assert ids(requeued.requeued) == [lost]
    await pipeline.settled("delivered", 5)
    assert {order: len(pipeline.cj.calls_for(order)) for order in pipeline.cj.accepted} == {
        **{order.order_id: 1 for order in report.having("declined")},
        lost: 2,
    }
    (missing,) = report.missing
    delivery = await pipeline.store.delivery(missing.event_id, "cj")
    assert delivery is not None
    # attempts kept, one more
    assert (delivery.state, delivery.attempts) == (DeliveryState.DELIVERED, 2)

    again = await once(pipeline)
    assert again.missing == ()
    assert len(again.having("declined")) == 4


async def test_without_open_ended_locking_cancellations_are_declined_by_their_amounts(
    plain_pipeline: Pipeline,
) -> None:
    """No `status` sent, no DECLINED recorded: the zeroed cancellation records decide.

    An order whose cancellation CJ accepted but never processed, and which was restated
    (a reversal and a new amount, both non-original with a correction reason), is missing.
    """
    pipeline = plain_pipeline
    tag = uuid.uuid4().hex[:8]
    cancelled = [f"plain-{n}-{tag}" for n in range(2)]
    restated = f"restated-{tag}"
    pipeline.cj.plant_silent_failure(restated)
    for order in [*cancelled, restated]:
        pipeline.cj.add_sale(order)
    pipeline.cj.plant_restatement(restated, "60.00")
    for order in [*cancelled, restated]:
        await pipeline.post(id=order)
    await pipeline.settled("delivered", 3)
    assert all("status" not in call.order for call in pipeline.cj.calls)
    assert {r["validationStatus"] for r in pipeline.cj.records if not r["original"]} == {
        "AUTOMATED"
    }

    report = await once(pipeline, reconciling(pipeline))
    assert ids(report.having("declined")) == sorted(cancelled)
    assert ids(report.missing) == [restated]
    assert report.records_seen == 3 + 2 * 2 + 2  # the sales, two pairs, the restatement's pair


async def test_the_requeued_message_is_the_original_event(
    pipeline: Pipeline, publisher: Publisher
) -> None:
    (lost,) = await deliver(pipeline, fine=0)
    report = await once(pipeline)
    first = pipeline.cj.calls_for(lost)[0].order
    await requeue(pipeline, publisher, report)
    await pipeline.settled("delivered", 2)
    second = pipeline.cj.calls_for(lost)[1].order
    assert second == first  # same order, update time and reason: the same event


async def test_the_history_says_the_delivery_was_reopened(
    pipeline: Pipeline, publisher: Publisher
) -> None:
    (lost,) = await deliver(pipeline, fine=0)
    report = await once(pipeline)
    await requeue(pipeline, publisher, report)
    await pipeline.settled("delivered", 2)
    event_id = report.missing[0].event_id
    async with pipeline.store.reading() as connection:
        rows = await connection.execute(
            sa.select(transitions.c.state, transitions.c.detail)
            .where(transitions.c.event_id == event_id)
            .order_by(transitions.c.id)
        )
        history = [(row.state, row.detail or "") for row in rows]
    assert [state for state, _ in history] == [
        "pending",
        DeliveryState.DELIVERED,
        DeliveryState.RETRYING,
        DeliveryState.DELIVERED,
    ]
    assert history[2][1].startswith(
        f"reopened by reconciliation: no decline at CJ for order {lost}"
    )


async def test_a_requeue_the_broker_refuses_is_undone(
    pipeline: Pipeline, publisher: Publisher
) -> None:
    """No work queue to take it: the delivery is `delivered` again, and still reported."""
    await deliver(pipeline, fine=0)
    report = await once(pipeline)
    plan = reconciler.plan_for(reconciling(pipeline))
    nowhere = dataclasses.replace(
        plan.topology, work=topology.QueueSpec(f"cancel-bridge.nowhere-{uuid.uuid4().hex}")
    )
    failed = await reconciler.requeue(
        report,
        dataclasses.replace(plan, topology=nowhere),
        pipeline.store,
        publisher,
        max_requeues=3,
    )
    (order,) = failed.failed
    assert order.action == "requeue failed: broker returned the message as unroutable"
    assert reconcile_report.exit_status(failed) == reconcile_report.EXIT_ERROR
    delivery = await pipeline.store.delivery(order.event_id, "cj")
    assert delivery is not None
    assert delivery.state == DeliveryState.DELIVERED
    assert await pipeline.store.reopen_counts("cj", [order.event_id]) == {order.event_id: 0}
    assert ids((await once(pipeline)).missing) == ids(report.missing)


async def test_requeues_stop_at_the_limit(pipeline: Pipeline, publisher: Publisher) -> None:
    """CJ refusing an order every time: requeued `max_requeues` times, then left to a person."""
    (lost,) = await deliver(pipeline, fine=0, times=2)
    first = await requeue(pipeline, publisher, await once(pipeline), max_requeues=1)
    assert ids(first.requeued) == [lost]
    await pipeline.settled("delivered", 2)
    second = await requeue(pipeline, publisher, await once(pipeline), max_requeues=1)
    assert ids(second.missing) == [lost]
    assert second.requeued == ()
    assert second.missing[0].action == "not requeued: reopened 1 times already"
    assert len(pipeline.cj.calls_for(lost)) == 2


async def test_pages_and_a_rate_limit_on_the_way(pipeline: Pipeline) -> None:
    pipeline.cj.page_size = 1
    pipeline.cj.commission_script = [
        Reply(429, {"message": "Too many requests"}, {"Retry-After": "0"})
    ]
    await deliver(pipeline, fine=2, lost=0)
    report = await once(pipeline)
    assert (len(report.having("declined")), report.missing) == (2, ())
    assert len(pipeline.cj.queries) == 1 + 6  # the 429, then one record a page: 2 sales, 4
    assert [query.get("after") for query in pipeline.cj.queries[1:]] == [
        None,
        *[record["commissionId"] for record in pipeline.cj.records[:5]],
    ]
    assert {tuple(query["advertisers"]) for query in pipeline.cj.queries} == {(ADVERTISER_ID,)}


async def test_a_graphql_error_in_a_200_fails_the_run(pipeline: Pipeline) -> None:
    await deliver(pipeline, fine=1, lost=0)
    pipeline.cj.commission_script = [
        Reply(200, {"data": None, "errors": [{"message": "Not authorized for advertiser"}]})
    ]
    with pytest.raises(reconciler.ReconcileError, match="Not authorized for advertiser"):
        await once(pipeline)


async def test_nothing_delivered_asks_cj_nothing(pipeline: Pipeline) -> None:
    report = await once(pipeline)
    assert (report.orders, pipeline.cj.queries) == ((), [])


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cancel-bridge")
    reconciler.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["reconcile", "cj", *argv])


async def run_command(config: Config, *argv: str) -> int:
    """`cancel-bridge reconcile cj ...` as the CLI runs it (its own loop, store and broker)."""
    return await asyncio.to_thread(reconciler.command, parse(*argv), config)


def report_of(out: str) -> dict[str, Any]:
    """The command's JSON report in captured standard output.

    The command sends its own log lines to stderr, but the bridge running in this test process
    logs to standard output meanwhile (the worker settling the requeued order): the report is
    the indented object from a line `{` to its line `}`.
    """
    lines = out.splitlines()
    start = lines.index("{")
    end = lines.index("}", start)
    found: dict[str, Any] = orjson.loads("\n".join(lines[start : end + 1]))
    return found


async def test_the_command_reports_requeues_and_then_finds_none(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    (lost,) = await deliver(pipeline, fine=2)
    config = reconciling(pipeline)
    assert (
        await run_command(config, "--since", "1h", "--grace", "0s") == reconcile_report.EXIT_MISSING
    )
    out = capsys.readouterr().out
    assert lost in out
    assert "3 delivered in the last 1h: 2 declined at CJ, 1 missing" in out

    assert await run_command(config, "--since", "1h", "--grace", "0s", "--json") == 3
    found = report_of(capsys.readouterr().out)
    assert (found["missing"], found["orders"][0]["cj_order_id"]) == (1, lost)

    assert await run_command(config, "--since", "1h", "--grace", "0s", "--requeue", "--json") == 3
    found = report_of(capsys.readouterr().out)
    assert (found["requeued"], found["orders"][0]["action"]) == (1, "requeued")
    await pipeline.settled("delivered", 4)
    assert await run_command(config, "--since", "1h", "--grace", "0s") == reconcile_report.EXIT_OK
    assert "3 declined at CJ, 0 missing" in capsys.readouterr().out


async def test_the_grace_period_defers_judgement(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    (lost,) = await deliver(pipeline, fine=1)
    config = reconciling(pipeline, reconcile_grace=timedelta(minutes=30))
    assert await run_command(config, "--requeue") == reconcile_report.EXIT_OK  # nothing judged yet
    out = capsys.readouterr().out
    assert lost in out
    assert "0 missing, 1 waiting (younger than 30m)" in out
    assert len(pipeline.cj.calls_for(lost)) == 1


@pytest.mark.parametrize(
    ("argv", "status", "problem"),
    [
        (("--since", "32d"), 2, "at most 31d"),
        (("--since", "1h", "--grace", "2h"), 2, "--grace less"),
    ],
)
async def test_bad_windows_exit_2(
    pipeline: Pipeline,
    capsys: pytest.CaptureFixture[str],
    argv: tuple[str, ...],
    status: int,
    problem: str,
) -> None:
    assert await run_command(reconciling(pipeline), *argv) == status
    assert problem in capsys.readouterr().err


async def test_without_advertiser_ids_the_command_says_what_to_set(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        await run_command(reconciling(pipeline, advertiser_ids=())) == reconcile_report.EXIT_ERROR
    )
    assert "targets.cj.advertiser_ids: needed to reconcile" in capsys.readouterr().err


async def test_a_refused_token_is_an_error_and_never_printed(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    await deliver(pipeline, fine=1, lost=0)
    wrong = "wrong-personal-token-77aa"
    config = dataclasses.replace(
        reconciling(pipeline), target_secrets={"cj": {"token_env": SecretStr(wrong)}}
    )
    assert await run_command(config, "--json") == reconcile_report.EXIT_ERROR
    captured = capsys.readouterr()
    assert captured.err.strip() == (
        "cancel-bridge: reconcile cj: cj commission query: credentials refused (HTTP 401)"
    )
    assert wrong not in captured.out + captured.err


async def scheduled_run(config: Config, pipeline: Pipeline) -> reconcile_report.Report | None:
    """The first run of the schedule (it runs at once), awaited through `on_report`."""
    runs: asyncio.Queue[reconcile_report.Report | None] = asyncio.Queue()
    async with reconciler.scheduled(config, pipeline.store, on_report=runs.put_nowait):
        async with asyncio.timeout(SETTLE_TIMEOUT):
            return await runs.get()


async def test_the_schedule_finds_and_requeues_and_logs_without_the_token(
    pipeline: Pipeline,
) -> None:
    (lost,) = await deliver(pipeline, fine=1)
    config = reconciling(pipeline, reconcile_every=timedelta(hours=1), reconcile_requeue=True)
    with structlog.testing.capture_logs() as logs:
        report = await scheduled_run(config, pipeline)
        await pipeline.settled("delivered", 3)
    assert report is not None
    assert ids(report.requeued) == [lost]
    assert len(pipeline.cj.calls_for(lost)) == 2
    (missing,) = [line for line in logs if line["event"] == "reconcile.missing"]
    assert missing["event_id"] == report.missing[0].event_id
    assert (missing["cj_order_id"], missing["action"]) == (lost, "requeued")
    (done,) = [line for line in logs if line["event"] == "reconcile.done"]
    assert (done["checked"], done["missing"], done["requeued"]) == (2, 1, 1)
    assert TOKEN not in repr(logs)


async def test_a_failed_scheduled_run_is_logged_without_the_token(pipeline: Pipeline) -> None:
    await deliver(pipeline, fine=1, lost=0)
    wrong = "wrong-personal-token-88bb"
    config = dataclasses.replace(
        reconciling(pipeline, reconcile_every=timedelta(hours=1)),
        target_secrets={"cj": {"token_env": SecretStr(wrong)}},
    )
    with structlog.testing.capture_logs() as logs:
        assert await scheduled_run(config, pipeline) is None
    (failed,) = [line for line in logs if line["event"] == "reconcile.failed"]
    assert failed["error"] == "cj commission query: credentials refused (HTTP 401)"
    assert wrong not in repr(logs)


async def test_the_schedule_is_off_unless_configured(pipeline: Pipeline) -> None:
    async with reconciler.scheduled(reconciling(pipeline), pipeline.store):
        pass
    assert pipeline.cj.queries == []


async def test_a_second_reconciler_with_an_older_report_does_not_ask_cj_again(
    pipeline: Pipeline, publisher: Publisher
) -> None:
    """Of two reconcilers' reports, the stale one cannot reopen an order CJ since declined.

    One requeues, CJ declines; reopening again on the other's report would ask CJ a third time.
    """
    (lost,) = await deliver(pipeline, fine=0)  # the first call fails silently, the second not
    report_a, report_b = await once(pipeline), await once(pipeline)
    assert ids(report_a.missing) == ids(report_b.missing) == [lost]
    first = await requeue(pipeline, publisher, report_a)
    assert ids(first.requeued) == [lost]
    await pipeline.settled("delivered", 2)  # CJ declined this time
    second = await requeue(pipeline, publisher, report_b)
    assert second.requeued == ()
    (order,) = second.missing
    assert order.action == "not requeued: delivered again since, or no longer delivered"
    assert len(pipeline.cj.calls_for(lost)) == 2
    assert (await once(pipeline)).missing == ()


async def test_a_reopen_whose_message_was_lost_is_sent_again(
    pipeline: Pipeline, publisher: Publisher
) -> None:
    """A pair reopened long ago that no worker took (its message lost) is sent again.

    The process stopped between reopening the pair and publishing its event.
    """
    (lost,) = await deliver(pipeline, fine=0)
    (order,) = (await once(pipeline)).missing
    long_ago = order.delivered_at - reconciler.STALE_REOPEN  # reopened, then the crash
    detail = reconcile_report.reopen_detail(order, long_ago)
    assert await pipeline.store.reopen(
        order.event_id, "cj", long_ago, detail, attempts=order.attempts
    )
    report = await requeue(pipeline, publisher, await once(pipeline))
    assert report.resent == (order.event_id,)
    assert "sent again" in reconcile_report.summary(report, [ADVERTISER_ID])
    await pipeline.settled("delivered", 2)
    assert len(pipeline.cj.calls_for(lost)) == 2
    # Touched when resent: the next run does not send it again while the worker has it.
    assert (await requeue(pipeline, publisher, await once(pipeline))).resent == ()
