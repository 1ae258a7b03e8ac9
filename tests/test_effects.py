"""The pure part of one effect per target order: which rows to bind, and the verdicts."""

from __future__ import annotations

from bridge.store.effects import Owned, bind_rows, decide, owned


def test_one_row_per_order_in_order_key_order_with_its_lowest_event() -> None:
    pairs = {"e3": "O2", "e1": "O2", "e2": "O1", "e4": "O3"}
    assert bind_rows(pairs) == [("O1", "e2"), ("O2", "e1"), ("O3", "e4")]


def test_the_pairs_another_event_holds() -> None:
    pairs = {"e1": "O1", "e2": "O1", "e3": "O2"}
    assert owned(pairs, {"O1": "e1", "O2": "e9"}) == {
        "e2": Owned("e1", "O1"),
        "e3": Owned("e9", "O2"),
    }


def test_verdicts_follow_the_holders_own_pair() -> None:
    lost = {
        "a": Owned("h-delivered", "O1"),
        "b": Owned("h-done", "O2"),
        "c": Owned("h-pending", "O3"),
        "d": Owned("h-calling", "O4"),
        "e": Owned("h-retrying", "O5"),
        "f": Owned("h-parked", "O6"),
        "g": Owned("h-parked", "O6"),  # a second heir to the same order waits for the first
        "h": Owned("h-duplicate", "O7"),
        "i": Owned("h-gone", "O8"),  # no pair: nothing will act
    }
    states = {
        "h-delivered": "delivered",
        "h-done": "already_done",
        "h-pending": "pending",
        "h-calling": "calling",
        "h-retrying": "retrying",
        "h-parked": "parked",
        "h-duplicate": "duplicate",
    }
    verdicts = decide(lost, states)
    assert sorted(verdicts.settle) == ["a", "b"]
    assert sorted(verdicts.wait) == ["c", "d", "e", "g"]
    assert sorted(verdicts.take_over) == ["f", "h", "i"]
