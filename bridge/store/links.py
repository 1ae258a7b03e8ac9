"""Order links as users give them: a CSV file or a JSON body, checked before anything is stored.

A link names one order on several platforms, e.g. `{"shoplazza": "1001", "prime": "abc",
"cj": "1001"}`. Pure parsing; `Store.link` records them.
"""

from __future__ import annotations

import csv
import io
from typing import Annotated

from pydantic import Field, TypeAdapter, ValidationError

from contracts.events import MAX_ID, PLATFORMS, Platform

MAX_LINKS_PER_REQUEST = 10_000
OrderId = Annotated[str, Field(min_length=1, max_length=MAX_ID, pattern=r"^[^\x00-\x1f\x7f]+$")]
Link = dict[Platform, OrderId]
_ONE = TypeAdapter(Link)
_MANY = TypeAdapter(list[Link])


class LinkError(ValueError):
    """Links that cannot be recorded; the message says which and why."""


def _checked(link: dict[Platform, str], where: str) -> dict[str, str]:
    if len(link) < 2:  # noqa: PLR2004 - a link joins two ids at least
        raise LinkError(f"{where}: a link needs the order's ids on two platforms at least")
    return {str(platform): order_id.strip() for platform, order_id in link.items()}


def _first_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"] if part != "[key]") or "body"
    if first["type"] == "literal_error":
        return f"{where}: unknown platform (known: {', '.join(PLATFORMS)})"
    return f"{where}: {first['msg']}"


def parse_json(body: bytes) -> list[dict[str, str]]:
    """`PUT /api/links`: one link object, or a list of them."""
    try:
        many = (
            _MANY.validate_json(body) if body.lstrip()[:1] == b"[" else [_ONE.validate_json(body)]
        )
    except ValidationError as exc:
        raise LinkError(_first_error(exc)) from None
    if len(many) > MAX_LINKS_PER_REQUEST:
        raise LinkError(f"at most {MAX_LINKS_PER_REQUEST} links per request")
    return [_checked(link, f"link {n}") for n, link in enumerate(many)]


def parse_csv(text: str) -> list[dict[str, str]]:
    """`links import FILE.csv`: a header row of platform names, then one order per row.

    Empty cells are skipped; each row must name the order on two platforms at least.
    """
    rows = csv.reader(io.StringIO(text))
    header = next(rows, None)
    if header is None:
        raise LinkError("line 1: the file is empty (expected a header row of platform names)")
    names = [name.strip().lower() for name in header]
    for name in names:
        if name not in PLATFORMS:
            raise LinkError(f"line 1: unknown platform {name!r} (known: {', '.join(PLATFORMS)})")
    found = []
    for line, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) > len(names):
            raise LinkError(f"line {line}: {len(row)} cells for {len(names)} platforms")
        cells = {name: cell.strip() for name, cell in zip(names, row, strict=False) if cell.strip()}
        try:
            link = _ONE.validate_python(cells)
        except ValidationError as exc:
            raise LinkError(f"line {line}: {_first_error(exc)}") from None
        found.append(_checked(link, f"line {line}"))
    return found
