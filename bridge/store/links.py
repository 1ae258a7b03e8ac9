"""Order links: parsed as users give them (a CSV file or a JSON body), recorded, looked up.

A link names one order on several platforms, e.g. `{"shoplazza": "1001", "prime": "abc",
"cj": "1001"}`. `parse_json` and `parse_csv` check links before anything is stored (pure);
`OrderLinks.link` records them as groups (rows sharing `group_id` are one order), and the
receiver links an event's aliases to its order.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated

import sqlalchemy as sa
from pydantic import Field, TypeAdapter, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from bridge.store.engine import Engines
from bridge.store.tables import links
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


class OrderLinks(Engines):
    """Recording order links and reading them back."""

    async def link(self, ids: Mapping[str, str], now: datetime) -> str:
        """Record that `ids` (platform -> order id) name one order; returns its group.

        Groups that share an id are merged; a platform's id given here replaces another id of
        the same platform in the group (last write wins).
        """
        for attempt in range(3):
            try:
                async with self._write() as connection:
                    return await _link(connection, ids, now)
            except IntegrityError:  # a concurrent link inserted one of the ids: read again
                if attempt == 2:  # noqa: PLR2004 - the last try
                    raise
        raise AssertionError  # pragma: no cover - the loop returns or raises

    async def linked_order(self, platform: str, order_id: str, wanted: str) -> str | None:
        """The order id on platform `wanted` of the order `order_id` on `platform`."""
        mine = links.alias("mine")
        async with self._read() as connection:
            found = await connection.scalar(
                sa.select(links.c.order_id)
                .join(mine, mine.c.group_id == links.c.group_id)
                .where(
                    mine.c.platform == platform,
                    mine.c.order_id == order_id,
                    links.c.platform == wanted,
                )
            )
        return None if found is None else str(found)

    async def links_of(self, platform: str, order_id: str) -> dict[str, str]:
        """Every platform's id of the order `order_id` on `platform` (itself included)."""
        mine = links.alias("mine")
        async with self._read() as connection:
            rows = await connection.execute(
                sa.select(links.c.platform, links.c.order_id)
                .join(mine, mine.c.group_id == links.c.group_id)
                .where(mine.c.platform == platform, mine.c.order_id == order_id)
            )
            return {row.platform: row.order_id for row in rows}


async def _link(connection: AsyncConnection, ids: Mapping[str, str], now: datetime) -> str:
    wanted = sa.or_(
        *(sa.and_(links.c.platform == p, links.c.order_id == o) for p, o in ids.items())
    )
    found = (await connection.execute(sa.select(links).where(wanted))).all()
    groups = sorted({row.group_id for row in found})
    group = groups[0] if groups else str(uuid.uuid4())
    if len(groups) > 1:
        await connection.execute(
            links.update().where(links.c.group_id.in_(groups[1:])).values(group_id=group)
        )
    for platform, order_id in ids.items():
        # This platform's other ids in the group are replaced by the one given now.
        await connection.execute(
            links.delete().where(
                links.c.group_id == group,
                links.c.platform == platform,
                links.c.order_id != order_id,
            )
        )
    known = {(row.platform, row.order_id) for row in found}
    for platform, order_id in ids.items():
        if (platform, order_id) in known:
            await connection.execute(
                links.update()
                .where(links.c.platform == platform, links.c.order_id == order_id)
                .values(group_id=group, updated_at=now)
            )
        else:
            await connection.execute(
                links.insert().values(
                    platform=platform, order_id=order_id, group_id=group, updated_at=now
                )
            )
    return group
