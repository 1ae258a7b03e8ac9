"""`cancel-bridge status` text: a plain function of what the store returned."""

from __future__ import annotations

from bridge.store.status import render


def test_nothing_recorded_says_so() -> None:
    assert render("1001", []) == "no cancellation recorded for order 1001"


def test_each_target_with_its_history() -> None:
    found = [
        {
            "event_id": "e-1",
            "source": "shoplazza",
            "shop": "demo.myshoplaza.com",
            "order_id": "1001",
            "reason": "fraud",
            "first_seen": "2025-04-09T12:00:00Z",
            "last_seen": "2025-04-09T12:05:00Z",
            "times_received": 2,
            "links": {"prime": "abc", "shoplazza": "1001"},
            "deliveries": [
                {
                    "target": "cj",
                    "state": "parked",
                    "attempts": 2,
                    "last_error": "cj: Invalid actionTrackerId",
                    "reference": None,
                    "updated_at": "2025-04-09T12:00:01Z",
                    "history": [
                        {"state": "pending", "at": "2025-04-09T12:00:00Z", "detail": None},
                        {"state": "retrying", "at": "2025-04-09T12:00:00Z", "detail": "HTTP 503"},
                        {
                            "state": "parked",
                            "at": "2025-04-09T12:00:01Z",
                            "detail": "cj: Invalid actionTrackerId",
                        },
                    ],
                }
            ],
        }
    ]
    assert render("1001", found).splitlines() == [
        "event e-1: shoplazza demo.myshoplaza.com order 1001 (fraud)",
        "  received 2x, first 2025-04-09T12:00:00Z, last 2025-04-09T12:05:00Z",
        "  links: prime=abc, shoplazza=1001",
        "  cj: parked after 2 attempt(s), last error: cj: Invalid actionTrackerId",
        "    2025-04-09T12:00:00Z  pending",
        "    2025-04-09T12:00:00Z  retrying  HTTP 503",
        "    2025-04-09T12:00:01Z  parked  cj: Invalid actionTrackerId",
    ]
