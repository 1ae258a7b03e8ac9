"""The events list's query string, checked: a `Search`, or a `SearchError` saying what is wrong."""

from __future__ import annotations

import re
from collections.abc import Mapping

from bridge.store.lifecycle import DeliveryState
from bridge.web.console.queries import Search

STATES = tuple(DeliveryState)
MAX_TEXT = 255  # the longest order id or shop the store holds
MAX_PAGE = 10_000
_NAME = re.compile(r"[a-z][a-z0-9_-]{0,31}")  # a source or target name


class SearchError(ValueError):
    """A search parameter the list cannot use; the message names it."""


def _name(params: Mapping[str, str], key: str) -> str | None:
    value = params.get(key, "").strip()
    if not value:
        return None
    if not _NAME.fullmatch(value):
        raise SearchError(f"{key} must be a {key} name (lower case letters, digits, - and _)")
    return value


def parse_search(params: Mapping[str, str]) -> Search:
    """`q` (event id, or start of an order id or shop), `source`, `state`, `target`, `page`."""
    text = params.get("q", "").strip()
    if len(text) > MAX_TEXT:
        raise SearchError(f"the search text is longer than {MAX_TEXT} characters")
    if any(ord(char) < 32 or ord(char) == 127 for char in text):  # noqa: PLR2004 - controls
        raise SearchError("the search text contains control characters")
    state = params.get("state", "").strip() or None
    if state is not None and state not in STATES:
        raise SearchError(f"state must be one of: {', '.join(STATES)}")
    page_text = params.get("page", "").strip() or "1"
    if not (page_text.isascii() and page_text.isdigit()) or not 1 <= int(page_text) <= MAX_PAGE:
        raise SearchError(f"page must be a whole number from 1 to {MAX_PAGE}")
    return Search(
        text=text,
        source=_name(params, "source"),
        state=state,
        target=_name(params, "target"),
        page=int(page_text),
    )


def query_string(search: Search, page: int) -> dict[str, str]:
    """The parameters of `search` at `page`, for the pager's links (empty ones left out)."""
    found = {
        "q": search.text,
        "source": search.source or "",
        "state": search.state or "",
        "target": search.target or "",
    }
    kept = {key: value for key, value in found.items() if value}
    if page > 1:
        kept["page"] = str(page)
    return kept
