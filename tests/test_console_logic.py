"""The console's pure parts: bar geometry, search parameters, an event's timeline, the spool."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from bridge.store.spool import Spooled, SpoolState
from bridge.web.console.chart import HEIGHT, WIDTH, bars
from bridge.web.console.filters import SearchError, parse_search, query_string
from bridge.web.console.queries import Search
from bridge.web.console.spooled import age, spool_json, spool_page, spool_row
from bridge.web.console.timeline import timeline

START = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)


def test_bars_share_one_scale_and_label_their_minute() -> None:
    charts = bars({"shoplazza": [0, 2, 4], "occ": [1, 0, 0]}, START)
    tall = charts["shoplazza"][2]
    assert (tall.height, tall.y, tall.count, tall.minute) == (HEIGHT, 0.0, 4, "20:02")
    assert charts["shoplazza"][1].height == HEIGHT / 2
    assert charts["occ"][0].height == HEIGHT / 4  # the same scale as shoplazza's
    assert charts["shoplazza"][0].height == 0
    assert charts["shoplazza"][2].x + charts["shoplazza"][2].width < WIDTH


def test_bars_of_nothing_are_flat() -> None:
    charts = bars({"prime": [0] * 60}, START)
    assert {bar.height for bar in charts["prime"]} == {0.0}
    assert charts["prime"][59].minute == "20:59"
    assert bars({}, START) == {}


def test_search_parameters() -> None:
    assert parse_search({}) == Search()
    wanted = parse_search(
        {"q": "  1001 ", "source": "occ", "state": "parked", "target": "cj", "page": "3"}
    )
    assert wanted == Search(text="1001", source="occ", state="parked", target="cj", page=3)
    assert query_string(wanted, 4) == {
        "q": "1001",
        "source": "occ",
        "state": "parked",
        "target": "cj",
        "page": "4",
    }
    assert query_string(Search(text="x"), 1) == {"q": "x"}


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"page": "0"}, "page must be"),
        ({"page": "-1"}, "page must be"),
        ({"page": "two"}, "page must be"),
        ({"page": "²"}, "page must be"),
        ({"page": "10001"}, "page must be"),
        ({"state": "lost"}, "state must be one of"),
        ({"source": "Shop Lazza"}, "source must be"),
        ({"target": "cj;drop"}, "target must be"),
        ({"q": "x" * 256}, "longer than 255"),
        ({"q": "10\x0001"}, "control characters"),
    ],
)
def test_bad_search_parameters_say_what_is_wrong(params: dict[str, str], says: str) -> None:
    with pytest.raises(SearchError, match=says):
        parse_search(params)


EVENT = {
    "event_id": "e-1",
    "source": "shoplazza",
    "shop": "demo.myshoplaza.com",
    "order_id": "1001",
    "first_seen": "2026-11-23T20:00:00Z",
    "last_seen": "2026-11-23T20:00:09.5Z",
    "times_received": 2,
    "deliveries": [
        {
            "target": "cj",
            "state": "parked",
            "updated_at": "2026-11-23T20:00:02Z",
            "history": [
                {"state": "pending", "at": "2026-11-23T20:00:00Z", "detail": None},
                {"state": "retrying", "at": "2026-11-23T20:00:00.250Z", "detail": "HTTP 503"},
                {"state": "parked", "at": "2026-11-23T20:00:02Z", "detail": "cj: Order not found"},
            ],
        },
        {
            "target": "shoplazza",
            "state": "calling",
            "updated_at": "2026-11-23T20:00:01Z",
            "history": [{"state": "pending", "at": "2026-11-23T20:00:00Z", "detail": None}],
        },
    ],
}


def test_reconciliation_steps_are_not_attempts() -> None:
    reopened = "reopened by reconciliation: no decline at CJ for order 1001"
    delivery = {
        "target": "cj",
        "state": "delivered",
        "updated_at": "2026-11-23T21:00:01Z",
        "history": [
            {"state": "pending", "at": "2026-11-23T20:00:00Z", "detail": None},
            {"state": "delivered", "at": "2026-11-23T20:00:01Z", "detail": "sub-1"},
            {"state": "retrying", "at": "2026-11-23T21:00:00Z", "detail": reopened},
            {"state": "delivered", "at": "2026-11-23T21:00:01Z", "detail": "sub-2"},
            {
                "state": "delivered",
                "at": "2026-11-23T21:00:02Z",
                "detail": f"reopen undone: {reopened}",
            },
        ],
    }
    steps = timeline({**EVENT, "times_received": 1, "deliveries": [delivery]})
    assert [(s.kind, s.title) for s in steps[2:]] == [
        ("delivered", "attempt 1: delivered"),
        ("reopened", "reopened by reconciliation"),
        ("delivered", "attempt 2: delivered"),
        ("delivered", "reopen undone"),
    ]


def test_a_duplicate_of_another_events_order_is_no_attempt() -> None:
    holder = "0b5a8d2e-1c1f-5a9e-8f3e-2d6c1b0a9f8e"
    detail = f"same cj order 1001 as event {holder}"
    delivery = {
        "target": "cj",
        "state": "duplicate",
        "updated_at": "2026-11-23T20:00:01Z",
        "history": [
            {"state": "pending", "at": "2026-11-23T20:00:00Z", "detail": None},
            {"state": "duplicate", "at": "2026-11-23T20:00:01Z", "detail": detail},
        ],
    }
    steps = timeline({**EVENT, "times_received": 1, "deliveries": [delivery]})
    assert [(s.kind, s.title, s.detail) for s in steps[2:]] == [
        ("duplicate", "not called: cj knows this order through another event", detail)
    ]


def test_what_an_operator_did_is_a_step_not_an_attempt() -> None:
    """Replay and drop from the console show as their own steps; attempts keep counting."""
    delivery = {
        "target": "cj",
        "state": "delivered",
        "updated_at": "2026-11-23T21:00:01Z",
        "history": [
            {"state": "pending", "at": "2026-11-23T20:00:00Z", "detail": None},
            {"state": "parked", "at": "2026-11-23T20:00:01Z", "detail": "cj: Invalid id"},
            {
                "state": "parked",
                "at": "2026-11-23T20:30:00Z",
                "detail": "replayed from the parked queue: in the console, to cancel-bridge.cj",
            },
            {"state": "delivered", "at": "2026-11-23T20:30:01Z", "detail": "sub-1"},
            {
                "state": "parked",
                "at": "2026-11-23T20:40:00Z",
                "detail": "dropped from the parked queue: in the console, for good",
            },
        ],
    }
    steps = timeline({**EVENT, "times_received": 1, "deliveries": [delivery]})
    assert [(s.kind, s.title) for s in steps[2:]] == [
        ("parked", "attempt 1: parked"),
        ("replayed", "replayed from the parked queue"),
        ("delivered", "attempt 2: delivered"),
        ("dropped", "dropped from the parked queue"),
    ]


def test_the_timeline_in_time_order_with_each_answer() -> None:
    steps = [(s.at, s.target, s.title, s.detail) for s in timeline(EVENT)]
    assert steps == [
        ("2026-11-23T20:00:00Z", None, "received from shoplazza (demo.myshoplaza.com)", None),
        ("2026-11-23T20:00:00Z", "cj", "accepted, queued for cj", None),
        ("2026-11-23T20:00:00Z", "shoplazza", "accepted, queued for shoplazza", None),
        ("2026-11-23T20:00:00.250Z", "cj", "attempt 1: failed, will retry", "HTTP 503"),
        ("2026-11-23T20:00:01Z", "shoplazza", "attempt 1: calling", None),
        ("2026-11-23T20:00:02Z", "cj", "attempt 2: parked", "cj: Order not found"),
        (
            "2026-11-23T20:00:09.5Z",
            None,
            "received again (the platform sent it 2 times)",
            None,
        ),
    ]


@pytest.mark.parametrize(
    ("seconds", "says"),
    [
        (0, "0 s"),
        (59.9, "59 s"),
        (60, "1 min 0 s"),
        (3599, "59 min 59 s"),
        (3600, "1 h 0 min"),
        (86399, "23 h 59 min"),
        (90000, "1 d 1 h"),
        (-5, "0 s"),  # a clock stepped back: not a negative age
    ],
)
def test_ages_read_at_a_glance(seconds: float, says: str) -> None:
    assert age(START, START + timedelta(seconds=seconds)) == says


def spooled(row_id: int, body: bytes, at: datetime, seen: int = 1) -> Spooled:
    return Spooled(row_id, f"e-{row_id}", "shoplazza", body, seen, at)


BODY = orjson.dumps(
    {
        "event_id": "e-1",
        "source": "shoplazza",
        "shop": "demo.myshoplaza.com",
        "order_id": "1001",
        "reason": "payment_declined",
    }
)


def test_a_spooled_event_shows_its_order_from_the_body() -> None:
    row = spool_row(spooled(1, BODY, START, seen=3), START + timedelta(seconds=75))
    assert (row.event_id, row.source, row.seen, row.spooled_at) == ("e-1", "shoplazza", 3, START)
    assert (row.shop, row.order_id) == ("demo.myshoplaza.com", "1001")
    assert row.reason == "payment_declined"
    assert row.age == "1 min 15 s"


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"shop": 7, "order_id": ""}', b"", b"\xff"],
)
def test_an_unreadable_body_shows_blanks_not_an_error(body: bytes) -> None:
    row = spool_row(spooled(2, body, START), START)
    assert (row.event_id, row.shop, row.order_id, row.reason) == ("e-2", None, None, None)


def test_the_spool_page_keeps_the_order_and_counts_what_is_not_listed() -> None:
    later = START + timedelta(minutes=2)
    events = [spooled(1, BODY, START), spooled(2, BODY, later)]
    page = spool_page(SpoolState(5, START), events, START + timedelta(hours=2, minutes=3))
    assert [row.event_id for row in page.rows] == ["e-1", "e-2"]
    assert (page.depth, page.more, page.oldest, page.oldest_age) == (5, 3, START, "2 h 3 min")
    # Read apart, the depth may lag the rows: it never shows fewer than are listed.
    lagging = spool_page(SpoolState(0, None), events, later)
    assert (lagging.depth, lagging.more, lagging.oldest) == (2, 0, START)
    empty = spool_page(SpoolState(0, None), [], START)
    assert (empty.depth, empty.rows, empty.oldest, empty.oldest_age) == (0, (), None, None)


def test_the_overview_says_how_long_the_oldest_has_waited() -> None:
    now = START + timedelta(seconds=42)
    assert spool_json(SpoolState(2, START), now) == {
        "depth": 2,
        "oldest": "2026-11-23T20:00:00Z",
        "oldest_age_seconds": 42,
        "waiting": "oldest 42 s ago",
    }
    assert spool_json(SpoolState(0, None), now) == {
        "depth": 0,
        "oldest": None,
        "oldest_age_seconds": None,
        "waiting": "",
    }
