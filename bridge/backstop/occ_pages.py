"""OCC's admin order list, read for the backstop: which request, and what a page says (pure).

`GET /ccadmin/v1/orders` ("Get Orders", https://docs.oracle.com/en/cloud/saas/cx-commerce/cxocc/
op-ccadmin-v1-orders-get.html) takes `q` with `queryFormat=SCIM`, `limit`, `offset`, `fields`
and `totalResults`, and answers `{items, limit, offset, totalResults}`; a page holds 250 orders
unless `limit` says otherwise (https://docs.oracle.com/en/cloud/saas/cx-commerce/cxocc/
RESTQueryParams.html). A cancelled order is in state `REMOVED`
(docs/platforms/backstop-research.md, section 3). Two queries:

- by watermark: `state eq "REMOVED" and lastModifiedDate gt "<since>"`. Whether an order's
  `lastModifiedDate` can be queried is **not confirmed** by Oracle; a tenant that refuses it
  answers with its errorModel (a 400, `error_of`), and the poll falls back to
- a sliding window: `state eq "REMOVED" and submittedDate ge "<now - lookback>"` (the filter
  third-party integrations use), every cancelled order submitted in the window; what the store
  has seen is skipped, and orders whose `lastModifiedDate` (when the list shows one) is before
  `since` are left out here (`removed_since`), so a first poll does not publish old history.

Either may add `(siteId eq "a" or siteId eq "b")` for the sites asked about. Offset paging over
a set that changes between pages can skip or repeat rows: each page starts `ROW_OVERLAP` rows
before the previous one ended, and the poll counts each order id once. An order becomes the
event OCC's Cancel Order webhook would have made, by the webhook handler's own parsing
(`event_from_order`): the same event id, so nothing is done twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import orjson
from pydantic import ValidationError

from contracts.events import OrderCancelled
from contracts.occ import OCCOrder
from contracts.timestamps import utc_z
from handlers.base import parse_timestamp
from handlers.occ import REMOVED, error_model
from handlers.occ import event_from_order as occ_event

LIST_PATH = "/ccadmin/v1/orders"
PAGE_SIZE = 250  # OCC's default page (no maximum is published)
ROW_OVERLAP = 10  # rows each page re-reads of the one before: a set that shrank in between
MAX_PAGES = 400  # 97,600 orders a poll at most: past it the poll is cut short (`beyond`)
HTTP_BAD_REQUEST = 400
# Only what the event needs (`fields` keeps pages small; totalResults is dropped unless named).
FIELDS = ",".join(
    (
        *(f"items.{name}" for name in ("id", "siteId", "state", "cancelReason")),
        "items.lastModifiedDate",
        "items.submittedDate",
        "totalResults",
    )
)

QueryBy = Literal["lastModifiedDate", "submittedDate"]
WATERMARK: QueryBy = "lastModifiedDate"  # unconfirmed by Oracle: may be refused
WINDOW: QueryBy = "submittedDate"  # the fallback


@dataclass(frozen=True, slots=True)
class PageRequest:
    """One list call: its path and query (after the admin host)."""

    path: str
    query: tuple[tuple[str, str], ...]
    number: int  # 1 for the first page
    offset: int


@dataclass(frozen=True, slots=True)
class Page:
    """What a page said: its orders (every state), how many it had, and the total if given."""

    orders: tuple[OCCOrder, ...]
    count: int  # entries on the page, readable or not (paging counts rows)
    total: int | None  # `totalResults`
    skipped: int  # entries that are no order we can read (reported, never fatal)


def scim_string(text: str) -> str:
    """`text` as a SCIM string literal: quoted, backslash and quote escaped (RFC 7644 3.4.2.2)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def scim_query(by: QueryBy, since: datetime, sites: Sequence[str] = ()) -> str:
    """The SCIM filter: cancelled (`REMOVED`) orders by `by` from `since`, on `sites` (or any).

    `lastModifiedDate gt` the watermark; `submittedDate ge` the window's start.
    """
    operator = "gt" if by == WATERMARK else "ge"
    clauses = [
        f"state eq {scim_string(REMOVED)}",
        f"{by} {operator} {scim_string(utc_z(since, 'milliseconds'))}",
    ]
    if sites:
        either = " or ".join(f"siteId eq {scim_string(site)}" for site in sites)
        clauses.append(f"({either})" if len(sites) > 1 else either)
    return " and ".join(clauses)


def first_request(by: QueryBy, since: datetime, sites: Sequence[str] = ()) -> PageRequest:
    """The first page of the cancelled orders `scim_query` selects."""
    query = (
        ("queryFormat", "SCIM"),
        ("q", scim_query(by, since, sites)),
        ("fields", FIELDS),
        ("totalResults", "true"),
        ("limit", str(PAGE_SIZE)),
        ("offset", "0"),
    )
    return PageRequest(LIST_PATH, query, 1, 0)


def next_request(current: PageRequest, page: Page) -> PageRequest | None:
    """The page after `page` (`ROW_OVERLAP` rows back), or None at the end.

    The end: `totalResults` reached when the answer gives it, else a page shorter than asked.
    """
    if page.count <= ROW_OVERLAP:
        return None
    if page.total is not None:
        if current.offset + page.count >= page.total:
            return None
    elif page.count < PAGE_SIZE:
        return None
    offset = current.offset + page.count - ROW_OVERLAP
    kept = tuple(item for item in current.query if item[0] != "offset")
    return PageRequest(current.path, (*kept, ("offset", str(offset))), current.number + 1, offset)


def beyond(request: PageRequest | None) -> bool:
    """Whether `request` is a page past `MAX_PAGES`: the poll stops there, cut short."""
    return request is not None and request.number > MAX_PAGES


def read_page(body: bytes) -> Page:
    """A list answer `{items, ..., totalResults}`; `ValueError` when it is not one."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError("the order list is not JSON") from None
    items = document.get("items") if isinstance(document, dict) else None
    if not isinstance(items, list):
        raise ValueError("the order list has no 'items' array")  # noqa: TRY004 - the answer's fault
    orders: list[OCCOrder] = []
    skipped = 0
    for entry in items:
        try:
            orders.append(OCCOrder.model_validate(entry))
        except ValidationError:
            skipped += 1
    total = document.get("totalResults")
    known = isinstance(total, int) and not isinstance(total, bool) and total >= 0
    return Page(tuple(orders), len(items), total if known else None, skipped)


def removed_since(page: Page, since: datetime) -> list[OCCOrder]:
    """The page's cancelled orders not modified before `since` (as far as the page says).

    The state is checked again (the query is OCC's to apply), and an order whose
    `lastModifiedDate` is before `since` is left out: the window query lists every order
    cancelled since the window's start. One without a readable `lastModifiedDate` is kept.
    """
    found = []
    for order in page.orders:
        if order.state != REMOVED:
            continue
        modified = parse_timestamp(order.lastModifiedDate)
        if modified is None or modified >= since:
            found.append(order)
    return found


def latest_update(page: Page, since: datetime) -> datetime:
    """The watermark after `page`: the latest `lastModifiedDate` of its cancelled orders.

    Never before `since`.
    """
    seen = [parse_timestamp(o.lastModifiedDate) for o in page.orders if o.state == REMOVED]
    return max([since, *(moment for moment in seen if moment is not None)])


def event_from_order(order: OCCOrder, received_at: datetime) -> OrderCancelled:
    """The event OCC's Cancel Order webhook for `order` makes (its site the order's `siteId`).

    The webhook handler's own mapping (`handlers.occ.event_from_order`): the same event id.
    `MalformedPayloadError` when no event can be made (no site).
    """
    return occ_event(order, None, received_at)


def refused(status: int) -> bool:
    """Whether OCC refused the query itself: its errorModel comes with 400.

    No errorCode for an unknown or unqueryable attribute is published, so any 400 counts (the
    fallback query is no less valid; if it is refused too, the poll reports the error).
    """
    return status == HTTP_BAD_REQUEST


def error_of(body: bytes) -> str:
    """OCC's errorModel as one short line: `errorCode message` (either may be missing)."""
    code, message = error_model(body)
    return f"{code} {message}".strip()
