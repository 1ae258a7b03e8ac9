"""Pacing per key: slots `1 / rate` apart, keys independent (plain calls with a given clock)."""

from __future__ import annotations

import pytest

from bridge.worker.pacing import Pacer


def test_calls_to_one_key_are_spaced_and_other_keys_are_not_held_up() -> None:
    pacer = Pacer(rate=2.0)
    waits = [pacer.reserve("shop-a", now=100.0) for _ in range(5)]
    assert waits == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert pacer.reserve("shop-b", now=100.0) == 0.0


def test_an_idle_key_starts_fresh() -> None:
    pacer = Pacer(rate=2.0)
    pacer.reserve("shop-a", now=100.0)
    pacer.reserve("shop-a", now=100.0)
    assert pacer.reserve("shop-a", now=110.0) == 0.0
    assert pacer.reserve("shop-a", now=110.2) == pytest.approx(0.3)
