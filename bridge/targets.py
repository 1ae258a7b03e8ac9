"""Settings to target adapters: the one place that knows each target's settings class."""

from __future__ import annotations

from bridge.settings import Config, ConfigError
from handlers import cj
from handlers.base import TargetAdapter


def adapter(config: Config, target: str) -> tuple[TargetAdapter, float]:
    """The adapter for `target` and its per-call timeout in seconds."""
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
        return cj.CJAdapter(cfg, config.target_tokens[target]), c.timeout_s
    raise ConfigError(f"targets.{target}", "not configured")
