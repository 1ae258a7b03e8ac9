"""The platform setup guides (docs/platforms/): their configuration is real, their links resolve."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from bridge.settings import parse_settings

GUIDES = Path(__file__).resolve().parents[1] / "docs" / "platforms"
PLATFORMS = ("shoplazza", "prime", "occ", "cj")


def toml_blocks(name: str) -> list[dict[str, Any]]:
    text = (GUIDES / f"{name}.md").read_text(encoding="utf-8")
    return [tomllib.loads(block) for block in re.findall(r"```toml\n(.*?)```", text, re.DOTALL)]


def merged(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """The guides' sections in one file; their `[routes]` lists joined."""
    whole: dict[str, dict[str, Any]] = {}
    for document in documents:
        for section, body in document.items():
            into = whole.setdefault(section, {})
            for key, value in body.items():
                if section == "routes":
                    into[key] = sorted({*into.get(key, ()), *value})
                else:
                    assert key not in into, f"[{section}.{key}] is in two guides"
                    into[key] = value
    return whole


@pytest.mark.parametrize("name", PLATFORMS)
def test_each_guide_shows_its_configuration(name: str) -> None:
    blocks = toml_blocks(name)
    assert blocks, f"docs/platforms/{name}.md shows no configuration"
    assert any(name in block.get("targets", {}) for block in blocks)


def test_the_guides_configuration_together_is_a_valid_file() -> None:
    """Every key a guide shows exists with a valid value (unknown keys are errors)."""
    settings = parse_settings(merged([b for name in PLATFORMS for b in toml_blocks(name)]))
    assert set(settings.targets_in_use()) == set(PLATFORMS)
    assert settings.deprecations == ()  # the guides write today's spellings
    cj = settings.targets.cj  # type: ignore[attr-defined]
    assert (cj.open_ended_locking, cj.order_id_from) == (True, "order_id")  # as cj.md shows


def test_links_between_the_guides_resolve() -> None:
    anchors = set(re.findall(r'<a id="([a-z0-9-]+)">', (GUIDES / "assumptions.md").read_text()))
    for path in sorted(GUIDES.glob("*.md")):
        for target, anchor in re.findall(
            r"\]\(([a-z-]+\.md)(?:#([a-z0-9-]+))?\)", path.read_text()
        ):
            assert (GUIDES / target).is_file(), f"{path.name} links to missing {target}"
            if anchor and target == "assumptions.md":
                assert anchor in anchors, f"{path.name} links to missing row #{anchor}"


def test_the_readme_links_resolve() -> None:
    root = GUIDES.parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(((?:docs|bench|tests|bridge)/[^)#\s]+)", readme):
        assert (root / target).exists(), f"README links to missing {target}"


def test_the_example_configuration_uncommented_is_a_valid_file() -> None:
    """docs/config.example.toml with every commented section and key switched on."""
    text = (GUIDES.parent / "config.example.toml").read_text(encoding="utf-8")
    switched_on = "\n".join(
        re.sub(r"^# (?=\[|[A-Za-z_\"][A-Za-z0-9_.\"-]* = )", "", line) for line in text.splitlines()
    )
    settings = parse_settings(tomllib.loads(switched_on))
    assert all(getattr(settings.targets, name) is not None for name in PLATFORMS)
    assert set(settings.sources) == {"shoplazza", "prime", "occ"}
    assert settings.targets.prime.test_order_id  # type: ignore[attr-defined]
