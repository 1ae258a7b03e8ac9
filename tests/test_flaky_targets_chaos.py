"""Flaky target: CJ answering 30 % 5xx, 10 % timeouts and some 429 with Retry-After.

Every order still ends delivered, each after exactly the scripted failures plus one success
(retries on the schedule, nothing parked, no order called after it was delivered). The script is
drawn from a seeded generator, so a failure is reproducible.
"""

from __future__ import annotations

import random

from bridge.demo.fake_cj import Reply
from tests.harness.pipeline import Pipeline

ORDERS = 40
SEED = 20261123


def failures(rng: random.Random) -> list[Reply]:
    """0 to 3 failures before success: 5xx (30 %), timeouts (10 %), 429 with Retry-After."""
    script: list[Reply] = []
    for _ in range(3):
        roll = rng.random()
        if roll < 0.30:
            script.append(Reply(status=rng.choice([500, 502, 503, 504]), body=b"oops"))
        elif roll < 0.40:
            script.append(Reply(delay=5.0))  # past the pipeline's 1 s timeout
        elif roll < 0.50:
            script.append(Reply(status=429, body=b"", headers={"Retry-After": "1"}))
        else:
            break
    return script


async def test_every_order_ends_delivered_through_a_flaky_cj(pipeline: Pipeline) -> None:
    rng = random.Random(SEED)  # noqa: S311 - a reproducible test script, not cryptography
    scripted: dict[str, int] = {}
    for n in range(ORDERS):
        order = f"flaky-{n}"
        script = failures(rng)
        pipeline.cj.script[order] = script
        scripted[order] = len(script)
    assert sum(scripted.values()) > ORDERS // 2, "the script should fail a good share of calls"
    for order in scripted:
        await pipeline.post(id=order)
    await pipeline.settled("delivered", ORDERS)
    calls = {order: len(pipeline.cj.calls_for(order)) for order in scripted}
    expected = {order: failed + 1 for order, failed in scripted.items()}
    assert calls == expected, "each order: its scripted failures, then one success"
    outcomes = pipeline.worker.outcomes
    assert outcomes["parked"] == 0, f"parked: {outcomes['parked']}"
    assert outcomes["retried"] == sum(scripted.values()), (
        f"retried {outcomes['retried']}, failures scripted {sum(scripted.values())}"
    )
