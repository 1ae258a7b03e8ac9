"""The overview's bar charts as plain geometry: one bar a minute, one scale for every source."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

WIDTH = 600.0  # the SVG's viewBox; CSS scales it
HEIGHT = 60.0
GAP = 1.0


@dataclass(frozen=True, slots=True)
class Bar:
    """One minute's bar: its box in the viewBox, its count and the minute it stands for."""

    x: float
    y: float
    width: float
    height: float
    count: int
    minute: str  # HH:MM UTC


def bars(per_source: Mapping[str, Sequence[int]], start: datetime) -> dict[str, list[Bar]]:
    """Bars for each source's counts (oldest minute first), scaled by the largest of all."""
    tallest = max((max(counts, default=0) for counts in per_source.values()), default=0) or 1
    charts: dict[str, list[Bar]] = {}
    for source, counts in per_source.items():
        slot = WIDTH / max(len(counts), 1)
        charts[source] = [
            Bar(
                x=round(n * slot, 2),
                y=round(HEIGHT - HEIGHT * count / tallest, 2),
                width=round(slot - GAP, 2),
                height=round(HEIGHT * count / tallest, 2),
                count=count,
                minute=(start + timedelta(minutes=n)).strftime("%H:%M"),
            )
            for n, count in enumerate(counts)
        ]
    return charts
