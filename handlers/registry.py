"""Which module handles which platform: adding a platform is one line here."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from contracts.events import Source
from handlers import shoplazza
from handlers.base import SourceHandler

SOURCES: Mapping[Source, SourceHandler] = MappingProxyType({Source.SHOPLAZZA: shoplazza})
