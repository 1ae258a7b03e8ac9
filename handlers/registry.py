"""Which module handles which platform: adding a platform is one line here."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from contracts.events import Source
from handlers import occ, shoplazza
from handlers.base import SourceSpec

SOURCES: Mapping[Source, SourceSpec] = MappingProxyType(
    {
        Source.SHOPLAZZA: SourceSpec(lambda _: shoplazza),
        Source.OCC: SourceSpec(occ.source, frozenset({"algorithm", "key_encoding"})),
    }
)
