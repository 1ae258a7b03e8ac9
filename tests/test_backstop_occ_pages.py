"""The OCC backstop's pure part: the SCIM query, paging with overlap, pages, and the events.

Plain calls, no I/O. The event a listed order makes is the one OCC's Cancel Order webhook for it
makes (the same handler parses both); the fake's SCIM subset is checked here too, since the
integration tests trust it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from bridge.backstop import occ_pages
from bridge.backstop.occ_pages import (
    MAX_PAGES,
    PAGE_SIZE,
    ROW_OVERLAP,
    Page,
    PageRequest,
    beyond,
    error_of,
    event_from_order,
    first_request,
    latest_update,
    next_request,
    read_page,
    refused,
    removed_since,
    scim_query,
)
from contracts.events import CancelReason, OrderCancelled
from contracts.occ import OCCOrder
from handlers.base import MalformedPayloadError
from handlers.occ import OCCSource
from tests.fakes.occ import QueryError, parse_scim

SINCE = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
NOW = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)


def test_the_watermark_query_asks_for_removed_orders_modified_since() -> None:
    assert scim_query("lastModifiedDate", SINCE) == (
        'state eq "REMOVED" and lastModifiedDate gt "2026-12-01T08:30:00.000Z"'
    )


def test_the_window_query_asks_by_submitted_date_and_sites() -> None:
    assert scim_query("submittedDate", SINCE, ["siteUS"]) == (
        'state eq "REMOVED" and submittedDate ge "2026-12-01T08:30:00.000Z" and siteId eq "siteUS"'
    )
    assert scim_query("submittedDate", SINCE, ["siteUS", 'si"te\\EU']).endswith(
        ' and (siteId eq "siteUS" or siteId eq "si\\"te\\\\EU")'
    )


def test_the_first_request_is_scim_with_the_default_page() -> None:
    request = first_request("lastModifiedDate", SINCE)
    query = dict(request.query)
    assert request.path == "/ccadmin/v1/orders"
    assert (request.number, request.offset) == (1, 0)
    assert query["queryFormat"] == "SCIM"
    assert query["q"] == scim_query("lastModifiedDate", SINCE)
    assert (query["limit"], query["offset"], query["totalResults"]) == ("250", "0", "true")
    fields = query["fields"].split(",")
    assert "totalResults" in fields  # dropped by `fields` unless named (RESTQueryParams)
    assert {"items.id", "items.siteId", "items.state", "items.lastModifiedDate"} <= set(fields)


def page_of(count: int, total: int | None) -> Page:
    return Page((), count, total, 0)


def test_each_page_starts_some_rows_back_until_the_total_is_reached() -> None:
    first = first_request("lastModifiedDate", SINCE)
    second = next_request(first, page_of(PAGE_SIZE, 600))
    assert second is not None
    assert (second.number, second.offset) == (2, PAGE_SIZE - ROW_OVERLAP)
    assert dict(second.query)["offset"] == str(PAGE_SIZE - ROW_OVERLAP)
    assert dict(second.query)["q"] == dict(first.query)["q"]
    assert [key for key, _ in second.query].count("offset") == 1
    third = next_request(second, page_of(PAGE_SIZE, 600))
    assert third is not None
    assert third.offset == 2 * (PAGE_SIZE - ROW_OVERLAP)
    assert next_request(third, page_of(120, 600)) is None  # 480 + 120 rows: all of them


def test_without_a_total_a_short_page_is_the_last() -> None:
    first = first_request("submittedDate", SINCE)
    assert next_request(first, page_of(PAGE_SIZE, None)) is not None
    assert next_request(first, page_of(PAGE_SIZE - 1, None)) is None
    assert next_request(first, page_of(0, 5)) is None  # an empty page ends it, whatever the total


def test_paging_past_max_pages_is_cut_short() -> None:
    last = PageRequest("/ccadmin/v1/orders", (), MAX_PAGES, 10**6)
    assert not beyond(last)
    assert beyond(next_request(last, page_of(PAGE_SIZE, 10**9)))
    assert not beyond(None)


def test_a_page_is_read_with_its_total_and_unreadable_items_counted() -> None:
    body = orjson.dumps(
        {
            "items": [
                {"id": "o1", "siteId": "siteUS", "state": "REMOVED"},
                {"siteId": "siteUS"},  # no id: skipped
                {"id": 30413, "state": "SUBMITTED", "priceInfo": {"amount": 3}},
            ],
            "totalResults": 3,
        }
    )
    page = read_page(body)
    assert [order.id for order in page.orders] == ["o1", "30413"]
    assert (page.count, page.total, page.skipped) == (3, 3, 1)
    assert read_page(b'{"items": [], "totalResults": true}').total is None


@pytest.mark.parametrize("body", [b"<html>", b"[]", b'{"items": {}}', b'{"total": 3}'])
def test_an_answer_that_is_no_list_is_an_error(body: bytes) -> None:
    with pytest.raises(ValueError, match="order list"):
        read_page(body)


def order(order_id: str, state: str = "REMOVED", modified: str | None = None) -> OCCOrder:
    return OCCOrder(id=order_id, siteId="siteUS", state=state, lastModifiedDate=modified)


def test_only_removed_orders_not_modified_before_since_are_kept() -> None:
    page = Page(
        (
            order("kept", modified="2026-12-01T09:00:00.000Z"),
            order("at-since", modified="2026-12-01T08:30:00.000Z"),
            order("older", modified="2026-11-30T09:00:00.000Z"),
            order("undated"),
            order("open", state="SUBMITTED", modified="2026-12-02T09:00:00.000Z"),
            order("pending", state="PENDING_REMOVE", modified="2026-12-02T09:00:00.000Z"),
        ),
        6,
        6,
        0,
    )
    assert [o.id for o in removed_since(page, SINCE)] == ["kept", "at-since", "undated"]


def test_the_watermark_is_the_newest_removed_orders_modification() -> None:
    page = Page(
        (
            order("a", modified="2026-12-01T10:00:00Z"),
            order("b", modified="2026-12-01T11:15:00.250Z"),
            order("c", state="SUBMITTED", modified="2026-12-02T00:00:00Z"),
            order("d", modified="not a date"),
        ),
        4,
        None,
        0,
    )
    assert latest_update(page, SINCE) == datetime(2026, 12, 1, 11, 15, 0, 250000, tzinfo=UTC)
    assert latest_update(Page((), 0, 0, 0), SINCE) == SINCE


def webhook_event(body: dict[str, object], site: str) -> OrderCancelled:
    event = OCCSource().parse({"x-ccsite": site}, orjson.dumps(body), NOW)
    assert isinstance(event, OrderCancelled)
    return event


def test_a_listed_order_makes_the_event_its_webhook_makes() -> None:
    """Same event id, reason, source reason and cancel time: no double effect."""
    item = {
        "id": "o30413",
        "siteId": "siteUS",
        "state": "REMOVED",
        "cancelReason": "paymentNotReceived",
        "lastModifiedDate": "2026-12-01T10:00:00.000Z",
    }
    listed = event_from_order(OCCOrder.model_validate(item), NOW)
    hooked = webhook_event({"order": item}, "siteUS")
    assert listed.model_dump(exclude={"delivery_id"}) == hooked.model_dump(exclude={"delivery_id"})
    assert listed.reason == CancelReason.PAYMENT_DECLINED
    assert listed.cancelled_at == datetime(2026, 12, 1, 10, tzinfo=UTC)


def test_a_listed_order_without_a_date_or_reason_reads_like_its_webhook() -> None:
    listed = event_from_order(OCCOrder(id="o2", siteId="siteEU", state="REMOVED"), NOW)
    assert (listed.shop, listed.reason, listed.cancelled_at) == ("siteEU", CancelReason.OTHER, NOW)
    assert listed.event_id == webhook_event({"order": {"id": "o2"}}, "siteEU").event_id


def test_a_listed_order_without_a_site_makes_no_event() -> None:
    with pytest.raises(MalformedPayloadError, match="no site"):
        event_from_order(OCCOrder(id="o3", state="REMOVED"), NOW)


def test_a_400_is_a_refused_query_and_its_error_model_is_shown() -> None:
    assert refused(400)
    assert not any(refused(status) for status in (200, 401, 403, 404, 429, 500))
    body = b'{"errorCode": "12345", "message": "Invalid query", "status": "400"}'
    assert error_of(body) == "12345 Invalid query"
    assert error_of(b'{"message": "Invalid query", "status": "400"}') == "Invalid query"
    assert error_of(b"<html>") == ""


# -- the fake's SCIM subset: what the integration tests rely on ------------------------------

FACTS: dict[str, str | datetime | None] = {
    "state": "REMOVED",
    "siteId": "siteUS",
    "submittedDate": datetime(2026, 11, 20, tzinfo=UTC),
    "lastModifiedDate": datetime(2026, 12, 1, 9, tzinfo=UTC),
}
ALL = frozenset(FACTS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (scim_query("lastModifiedDate", SINCE), True),
        (scim_query("lastModifiedDate", SINCE + timedelta(hours=1)), False),
        (scim_query("submittedDate", SINCE - timedelta(days=12), ["siteEU", "siteUS"]), True),
        (scim_query("submittedDate", SINCE, ["siteUS"]), False),
        ('state eq "SUBMITTED" or siteId eq "siteUS" and state eq "REMOVED"', True),
        ('(state eq "SUBMITTED" or siteId eq "siteUS") and state eq "X"', False),
        ('submittedDate le "2026-11-20T00:00:00Z" and submittedDate lt "2026-11-21"', True),
    ],
)
def test_the_fakes_scim_subset(text: str, expected: bool) -> None:  # noqa: FBT001 - a row
    assert parse_scim(text, ALL)(FACTS) is expected


@pytest.mark.parametrize(
    "text",
    [
        'lastModifiedDate gt "2026-12-01T00:00:00Z"',  # not queryable in this tenant
        'state co "REM"',
        "state eq REMOVED",
        '(state eq "REMOVED"',
        'submittedDate gt "yesterday"',
        'state eq "REMOVED" and',
    ],
)
def test_the_fake_refuses_what_it_does_not_know(text: str) -> None:
    with pytest.raises(QueryError):
        parse_scim(text, ALL - {"lastModifiedDate"})


def test_the_module_names_its_two_queries() -> None:
    assert (occ_pages.WATERMARK, occ_pages.WINDOW) == ("lastModifiedDate", "submittedDate")
