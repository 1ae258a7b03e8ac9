"""Which module handles which platform: adding a platform is one line here."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from contracts.events import Source
from handlers import cj, occ, prime, shoplazza
from handlers.base import SourceSpec, TargetSpec

SOURCES: Mapping[Source, SourceSpec] = MappingProxyType(
    {
        Source.SHOPLAZZA: SourceSpec(lambda _: shoplazza),
        Source.OCC: SourceSpec(occ.source, frozenset({"algorithm", "key_encoding"})),
        Source.PRIME: SourceSpec(
            prime.source,
            frozenset({"auth", "username", "aliases", "api"}),
            required=frozenset({"username", "api"}),
        ),
    }
)

TARGETS: Mapping[str, TargetSpec] = MappingProxyType(
    {
        "cj": TargetSpec(cj.CJSettings, cj.secret_envs, cj.make, cj.probes),
        "shoplazza": TargetSpec(
            shoplazza.ShoplazzaTargetSettings,
            shoplazza.target_secret_envs,
            shoplazza.make_target,
            shoplazza.target_probes,
        ),
        "occ": TargetSpec(
            occ.OCCTargetSettings, occ.target_secret_envs, occ.make_target, occ.target_probes
        ),
        "prime": TargetSpec(
            prime.PrimeTargetSettings,
            prime.target_secret_envs,
            prime.make_target,
            prime.target_probes,
        ),
    }
)
