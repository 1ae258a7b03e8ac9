"""What one target's worker is made of, resolved from the configuration (`bridge/targets.py`)."""

from __future__ import annotations

from dataclasses import dataclass

from bridge.amqp import topology
from bridge.settings import WorkerSettings
from handlers.base import TargetAdapter, TokenAuth


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """Everything one target's worker needs, resolved from the configuration."""

    target: str
    adapter: TargetAdapter
    timeout: float
    topology: topology.TargetTopology
    settings: WorkerSettings
    # The platform name under which order links hold this target's order id; None when the
    # target names orders by the event's own fields.
    link_platform: str | None = None
    # Calls per second per pace key (`HttpCall.pace_key`), where the target limits them.
    rate: float | None = None
    # The target's bearer token, where it needs one (fetched, cached, refreshed on 401).
    auth: TokenAuth | None = None
