"""Shoplazza's webhook subscriptions judged and written (pure: `backstop/shoplazza_webhooks`)."""

from __future__ import annotations

import orjson
import pytest

from bridge.backstop.shoplazza_webhooks import (
    TOPIC,
    Subscription,
    create_body,
    health,
    list_query,
    more_pages,
    read_webhooks,
    same_address,
)

OURS = "https://bridge.example.com/webhooks/shoplazza"


def sub(n: int, address: str = OURS, topic: str = TOPIC) -> Subscription:
    """Subscription `n`."""
    return Subscription(str(n), address, topic)


def test_one_subscription_at_our_address_is_ok() -> None:
    judged = health(
        [sub(1), sub(2, topic="orders/create"), sub(3, "https://other.example/h")], OURS
    )
    assert judged.state == "ok"
    assert [s.id for s in judged.ours] == ["1"]
    assert [s.address for s in judged.elsewhere] == ["https://other.example/h"]  # reported only


@pytest.mark.parametrize(
    ("listed", "state"),
    [
        ([], "missing"),
        ([sub(1, topic="orders/updated")], "missing"),  # another topic is not ours
        ([sub(1, "https://other.example/h")], "missing"),
        ([sub(1), sub(2)], "duplicated"),
    ],
)
def test_none_or_several_is_not_ok(listed: list[Subscription], state: str) -> None:
    assert health(listed, OURS).state == state


def test_addresses_compare_as_urls_are_written() -> None:
    assert same_address("HTTPS://Bridge.Example.com/webhooks/shoplazza/", OURS)
    assert not same_address(
        "https://bridge.example.com/Webhooks/shoplazza", OURS
    )  # paths keep case
    assert not same_address("http://bridge.example.com/webhooks/shoplazza", OURS)


def test_the_create_body_follows_the_version() -> None:
    assert orjson.loads(create_body("2022-01", OURS)) == {"address": OURS, "topic": TOPIC}
    assert orjson.loads(create_body("2026-01", OURS)) == {
        "webhook": {"address": OURS, "topic": TOPIC}
    }


def test_list_pages_by_number_then_by_cursor() -> None:
    assert dict(list_query("2022-01", 2, None)) == {"topic": TOPIC, "limit": "250", "page": "2"}
    assert dict(list_query("2026-01", 2, "c1")) == {
        "topic": TOPIC,
        "page_size": "250",
        "cursor": "c1",
    }
    full = read_webhooks(orjson.dumps({"webhooks": [{"id": str(n)} for n in range(250)]}))
    assert more_pages("2022-01", full)
    last = read_webhooks(orjson.dumps({"webhooks": [], "cursor": "", "has_more": None}))
    assert not more_pages("2026-01", last)  # has_more null is the end


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"webhook": {}}', b'{"webhooks": {}}'])
def test_an_answer_that_is_no_list_is_a_value_error(body: bytes) -> None:
    with pytest.raises(ValueError, match="webhook list"):
        read_webhooks(body)
