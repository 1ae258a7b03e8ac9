"""Which module handles which platform: adding a platform is one line here.

Every platform module names its parts alike (`handlers/base.py`): `<P>SourceSettings`,
`source_secret_envs`, `make_source` for a source; `<P>TargetSettings`, `target_secret_envs`,
`make_target`, `target_probes` for a target.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from contracts.events import Source
from handlers import cj, occ, prime, shoplazza
from handlers.base import SourceSpec, TargetSpec

SOURCES: Mapping[Source, SourceSpec] = MappingProxyType(
    {
        Source.SHOPLAZZA: SourceSpec(
            shoplazza.ShoplazzaSourceSettings,
            shoplazza.source_secret_envs,
            shoplazza.make_source,
        ),
        Source.OCC: SourceSpec(occ.OCCSourceSettings, occ.source_secret_envs, occ.make_source),
        Source.PRIME: SourceSpec(
            prime.PrimeSourceSettings, prime.source_secret_envs, prime.make_source
        ),
    }
)

TARGETS: Mapping[str, TargetSpec] = MappingProxyType(
    {
        "cj": TargetSpec(
            cj.CJTargetSettings,
            cj.target_secret_envs,
            cj.make_target,
            cj.target_probes,
            reconciles=True,
        ),
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
