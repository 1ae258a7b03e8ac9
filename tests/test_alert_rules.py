"""The example alert rules (docs/prometheus-alerts.yml) name metrics and labels that exist."""

from __future__ import annotations

import re
from pathlib import Path

from bridge.metrics import Metrics

RULES = Path(__file__).parent.parent / "docs" / "prometheus-alerts.yml"
SELECTOR = re.compile(r"\b(cancel_bridge_[a-z_]+)(?:\{([^}]*)\})?")
MATCHER = re.compile(r"([a-z_]+)\s*(?:=~|!~|!=|=)")
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


def exposed() -> dict[str, set[str]]:
    """Every sample name the metrics can expose, with the labels it may carry."""
    found: dict[str, set[str]] = {}
    metrics = Metrics()
    for family in metrics.registry.collect():
        # prometheus_client keeps a metric's label names on the metric, not in its family.
        labels = set(getattr(metrics, _attribute(metrics, family.name))._labelnames)
        for suffix in SUFFIXES[family.type]:
            found[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return found


def _attribute(metrics: Metrics, name: str) -> str:
    for attribute, value in vars(metrics).items():
        if getattr(value, "_name", None) == name:
            return attribute
    raise AssertionError(name)


def test_every_metric_and_label_in_the_alert_rules_exists() -> None:
    """A renamed metric or label would silence an alert: the rules must follow the code."""
    known = exposed()
    text = RULES.read_text(encoding="utf-8")
    used = SELECTOR.findall(text)
    assert len(used) >= 8
    for name, matchers in used:
        assert name in known, f"{name} is not a metric the bridge exposes"
        for label in MATCHER.findall(matchers):
            assert label in known[name], f"{name} has no label {label}"


def test_a_wrong_name_would_be_caught() -> None:
    """The check itself fails on a metric that does not exist."""
    assert "cancel_bridge_parked_total" not in exposed()
    assert "cancel_bridge_webhooks_total" in exposed()
