"""Settings to worker plans: each target's registry line makes its adapter."""

from __future__ import annotations

from bridge.amqp import topology
from bridge.settings import Config, ConfigError
from bridge.worker.plan import WorkerPlan
from handlers.base import TargetBuild
from handlers.registry import TARGETS


def build(config: Config, target: str) -> TargetBuild:
    """`target`'s adapter and how to drive it, from its section and secrets."""
    section = getattr(config.settings.targets, target, None)
    if section is None or target not in TARGETS:
        raise ConfigError(f"targets.{target}", "not configured")
    return TARGETS[target].make(section, config.target_secrets.get(target, {}))


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
    made = build(config, target)
    return WorkerPlan(
        target,
        made.adapter,
        made.timeout,
        target_topology(config, target),
        settings.worker,
        made.link_platform,
        made.rate,
        made.auth,
    )
