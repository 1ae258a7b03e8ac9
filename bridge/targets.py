"""Settings to target adapters: the one place that knows each target's settings class."""

from __future__ import annotations

from bridge import topology
from bridge.settings import Config, ConfigError
from bridge.worker import WorkerPlan
from handlers import cj
from handlers.base import TargetAdapter


def adapter(config: Config, target: str) -> tuple[TargetAdapter, float, str | None]:
    """The adapter for `target`, its per-call timeout in seconds, and its link platform."""
    settings = config.settings.targets
    if target == "cj" and settings.cj is not None:
        c = settings.cj
        cfg = cj.CJTarget(
            url=c.url,
            enterprise_id=c.enterprise_id,
            action_tracker_id=c.action_tracker_id,
            open_ended_locking=c.open_ended_locking,
            order_id_from=c.order_id_from,
            reasons={**cj.DEFAULT_REASONS, **c.reasons},
            already_done_markers=c.already_done_markers,
        )
        link = "cj" if c.order_id_from == "link" else None
        return cj.CJAdapter(cfg, config.target_tokens[target]), c.timeout_s, link
    raise ConfigError(f"targets.{target}", "not configured")


def target_topology(config: Config, target: str) -> topology.TargetTopology:
    """The queues of `target` as the configuration routes them."""
    settings = config.settings
    return topology.target_topology(
        target,
        settings.routed_sources(target),
        settings.worker.retry_delays,
        settings.worker.poison_attempts,
    )


def plan(config: Config, target: str) -> WorkerPlan:
    """The worker plan for `target`: adapter, timeout, queues fed by its routed sources."""
    settings = config.settings
    sources = settings.routed_sources(target)
    if not sources:
        raise ConfigError("routes", f"no route sends to target {target!r}")
    target_adapter, timeout, link = adapter(config, target)
    return WorkerPlan(
        target, target_adapter, timeout, target_topology(config, target), settings.worker, link
    )
