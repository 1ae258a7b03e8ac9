"""Shoplazza's webhook subscriptions, read and judged for `subscriptions check|ensure` (pure).

Shoplazza deletes a subscription after 19 failed deliveries over about two days
(https://www.shoplazza.dev/reference/webhook-best-practices): from then on no webhook comes. The
webhooks API lists and creates subscriptions (docs/platforms/backstop-research.md, section 2):

- list: `GET /openapi/<version>/webhooks`, filters `topic` and `address` (ignored when not
  known: filtered again here); 2022-01 pages with `limit` (at most 250) and `page`
  (https://www.shoplazza.dev/reference/webhook-list-copy), 2026-01 with `page_size` and `cursor`
  and answers `{webhooks, cursor, has_more}` (Shoplazza's CLI);
- create: `POST /openapi/<version>/webhooks`, `{"address", "topic"}` flat in 2022-01
  (https://shoplazza.dev/reference/create-webhook-copy), `{"webhook": {...}}` in 2026-01; the
  answer is `{"webhook": {id, address, topic, format, created_at, updated_at}}`.

A store is `ok` with exactly one `orders/cancelled` subscription at the bridge's address,
`missing` with none (ensure creates it), `duplicated` with several (each webhook would come
twice: one effect all the same, by event id; delete the extras by hand). Subscriptions of the
topic at other addresses are reported, never touched: another system may own them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import orjson

from bridge.backstop.shoplazza_pages import PAGE_SIZE, cursor_paged, read_list

TOPIC = "orders/cancelled"
State = Literal["ok", "missing", "duplicated"]


@dataclass(frozen=True, slots=True)
class Subscription:
    """One webhook subscription of a store."""

    id: str
    address: str
    topic: str


@dataclass(frozen=True, slots=True)
class WebhookPage:
    """A list answer: its subscriptions, and where the next page starts."""

    subscriptions: tuple[Subscription, ...]
    cursor: str | None
    has_more: bool


@dataclass(frozen=True, slots=True)
class Health:
    """A store's `orders/cancelled` subscriptions judged against the bridge's address."""

    state: State
    ours: tuple[Subscription, ...]  # at our address
    elsewhere: tuple[Subscription, ...]  # the topic at other addresses (reported only)


def list_query(version: str, page: int, cursor: str | None) -> tuple[tuple[str, str], ...]:
    """The query of one list page (`page` from 1; `cursor` for 2026-01's second page on)."""
    if cursor_paged(version):
        query: tuple[tuple[str, str], ...] = (("topic", TOPIC), ("page_size", str(PAGE_SIZE)))
        return (*query, ("cursor", cursor)) if cursor else query
    return (("topic", TOPIC), ("limit", str(PAGE_SIZE)), ("page", str(page)))


def read_webhooks(body: bytes) -> WebhookPage:
    """A list answer of either version; `ValueError` when it is not one."""
    answer = read_list(body, "webhooks", "webhook")
    found = [
        Subscription(str(e.get("id", "")), str(e.get("address", "")), str(e.get("topic", "")))
        for e in answer.entries
        if isinstance(e, dict)
    ]
    return WebhookPage(tuple(found), answer.cursor, answer.has_more)


def more_pages(version: str, page: WebhookPage) -> bool:
    """Whether another page follows `page`."""
    if cursor_paged(version):
        return page.has_more and page.cursor is not None
    return len(page.subscriptions) >= PAGE_SIZE


def health(subscriptions: list[Subscription], address: str) -> Health:
    """`ok`, `missing` or `duplicated`, from every subscription the store listed."""
    topic = [s for s in subscriptions if s.topic == TOPIC]
    ours = tuple(s for s in topic if same_address(s.address, address))
    elsewhere = tuple(s for s in topic if not same_address(s.address, address))
    state: State = "ok" if len(ours) == 1 else "missing" if not ours else "duplicated"
    return Health(state, ours, elsewhere)


def same_address(listed: str, ours: str) -> bool:
    """Addresses compared as URLs are written: case-blind scheme and host, no trailing slash."""
    return _normal(listed) == _normal(ours)


def _normal(address: str) -> str:
    scheme, sep, rest = address.strip().partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme.lower()}{sep}{host.lower()}{slash}{path}".rstrip("/")


def create_body(version: str, address: str) -> bytes:
    """The body that subscribes `address` to `orders/cancelled` in `version`."""
    webhook = {"address": address, "topic": TOPIC}
    return orjson.dumps({"webhook": webhook} if cursor_paged(version) else webhook)
