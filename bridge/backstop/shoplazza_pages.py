"""Shoplazza's order list, read for the backstop: which request, and what a page says (pure).

Shoplazza recommends polling its Open API because webhooks are not always delivered
(https://www.shoplazza.dev/reference/webhook-best-practices). The list (`GET
/openapi/<version>/orders`, scope `read_order`) has no filter on the cancel time, so the backstop
asks for `status=cancelled` orders updated since its watermark (`updated_at_min`) and re-checks
the status itself: the API answers 200 with the unfiltered list when it does not know a
parameter (Shoplazza's CLI notes). Paging differs by version
(docs/platforms/backstop-research.md, section 1):

- 2022-01 (https://shoplazza.dev/reference/order-list-3): `limit` (at most 250) and `page`
  (from 1); the answer is `{count, next_token, orders}` and no parameter to send `next_token`
  back is documented, so pages are asked by number until one comes back short.
- 2026-01 (Shoplazza's CLI, `GET /openapi/2026-01/orders`): `page_size` (at most 250) and
  `cursor`; the answer is `{orders, cursor, has_more}`, `has_more` possibly null (not true: the
  end).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import orjson
from pydantic import ValidationError

from contracts.shoplazza import ShoplazzaOrder
from contracts.timestamps import utc_z
from handlers.base import parse_timestamp

PAGE_SIZE = 250  # the most either version returns at once
CURSOR_FROM = "2026-01"  # the first API version that pages by cursor
MAX_PAGES = 400  # 100,000 orders a shop per poll: past it the poll is cut short (`beyond`)


@dataclass(frozen=True, slots=True)
class PageRequest:
    """One list call: its path and query (after the store's base URL)."""

    path: str
    query: tuple[tuple[str, str], ...]
    number: int  # 1 for the first page


@dataclass(frozen=True, slots=True)
class Page:
    """What a page said: its orders (every status), and where the next one starts."""

    orders: tuple[ShoplazzaOrder, ...]
    cursor: str | None  # 2026-01's next cursor
    has_more: bool
    skipped: int  # entries that are no order we can read (reported, never fatal)


def cursor_paged(version: str) -> bool:
    """Whether `version`'s lists page by cursor (2026-01 on), not by page number."""
    return version >= CURSOR_FROM


def first_request(version: str, since: datetime) -> PageRequest:
    """The first page of cancelled orders updated since `since`."""
    size = "page_size" if cursor_paged(version) else "limit"
    query: tuple[tuple[str, str], ...] = (
        ("status", "cancelled"),
        ("updated_at_min", utc_z(since, "seconds")),
        (size, str(PAGE_SIZE)),
    )
    if not cursor_paged(version):
        query = (*query, ("page", "1"))
    return PageRequest(f"/openapi/{version}/orders", query, 1)


def next_request(version: str, current: PageRequest, page: Page) -> PageRequest | None:
    """The page after `page`, or None at the end (`beyond` says when it is past `MAX_PAGES`)."""
    kept = tuple(item for item in current.query if item[0] not in ("page", "cursor"))
    if cursor_paged(version):
        if not page.has_more or not page.cursor:
            return None
        return PageRequest(current.path, (*kept, ("cursor", page.cursor)), current.number + 1)
    if len(page.orders) + page.skipped < PAGE_SIZE:
        return None
    return PageRequest(current.path, (*kept, ("page", str(current.number + 1))), current.number + 1)


def beyond(request: PageRequest | None) -> bool:
    """Whether `request` is a page past `MAX_PAGES`: the poll stops there, cut short."""
    return request is not None and request.number > MAX_PAGES


@dataclass(frozen=True, slots=True)
class ListAnswer:
    """A Shoplazza list answer: its entries, and 2026-01's cursor and `has_more` (if any)."""

    entries: list[object]
    cursor: str | None
    has_more: bool  # only a true `has_more` is more: null is the end (Shoplazza's CLI notes)


def read_list(body: bytes, key: str, what: str) -> ListAnswer:
    """A list answer of either version with its `key` array; `ValueError` otherwise."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError(f"the {what} list is not JSON") from None
    entries = document.get(key) if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"the {what} list has no {key!r} array")  # noqa: TRY004 - the answer's fault
    cursor = document.get("cursor")
    return ListAnswer(
        entries,
        cursor if isinstance(cursor, str) and cursor else None,
        document.get("has_more") is True,
    )


def read_page(body: bytes) -> Page:
    """A list answer of either version; `ValueError` when it is not one."""
    answer = read_list(body, "orders", "order")
    orders: list[ShoplazzaOrder] = []
    skipped = 0
    for entry in answer.entries:
        try:
            orders.append(ShoplazzaOrder.model_validate(entry))
        except ValidationError:
            skipped += 1
    return Page(tuple(orders), answer.cursor, answer.has_more, skipped)


def cancelled(page: Page) -> list[ShoplazzaOrder]:
    """The page's cancelled orders (the filter is checked again here: see the docstring)."""
    return [order for order in page.orders if (order.status or "").lower() == "cancelled"]


def latest_update(page: Page, since: datetime) -> datetime:
    """The watermark after `page`: the latest `updated_at` it shows, never before `since`."""
    seen = [parse_timestamp(order.updated_at) for order in page.orders]
    return max([since, *(moment for moment in seen if moment is not None)])
