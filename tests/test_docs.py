"""The documents hold to the code.

The configuration reference and the example file match the settings models, every link and
anchor resolves, the layout page matches the layering test's arrows.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import BaseModel, create_model

from bridge.settings import BrokerSettings, Settings, parse_settings
from tests.test_layering import FOLDER_ARROWS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
EXAMPLE = DOCS / "config.example.toml"


def _generator() -> ModuleType:
    """docs/gen_config_reference.py, a script (docs/ is no package): loaded from its path."""
    name = "gen_config_reference"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, DOCS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


GEN = _generator()
problems: Callable[..., list[str]] = GEN.problems
document_keys: Callable[..., set[str]] = GEN.document_keys
settings_keys: Callable[..., list[Any]] = GEN.settings_keys
regenerate: Callable[..., str] = GEN.regenerate


def all_keys(root: type[BaseModel] | None = None) -> set[str]:
    return {key.key for key in settings_keys(root)}


def switched_on(text: str) -> str:
    """A TOML file with every commented section and key switched on (as the platform test)."""
    return "\n".join(
        re.sub(r"^# (?=\[|[A-Za-z_\"][A-Za-z0-9_.\"-]* = )", "", line) for line in text.splitlines()
    )


# -- the configuration reference --------------------------------------------------------------


def test_the_reference_documents_every_key_and_nothing_else() -> None:
    """Every settings key is in docs/configuration.md with a description; each row is a key.

    Types and defaults are the models' (else: run docs/gen_config_reference.py).
    """
    assert problems(CONFIGURATION.read_text(encoding="utf-8")) == []


def test_the_reference_covers_every_registered_platform() -> None:
    keys = all_keys()
    from handlers.registry import SOURCES, TARGETS  # noqa: PLC0415 - next to its use

    for target in TARGETS:
        assert any(key.startswith(f"targets.{target}.") for key in keys), target
    for source in SOURCES:
        assert any(key.startswith(f"sources.{source.value}.") for key in keys), source


def _with_broker(broker: type[BaseModel]) -> type[BaseModel]:
    """`Settings` whose `[broker]` is `broker`."""
    return create_model("WiderSettings", __base__=Settings, broker=(broker, broker()))


def test_a_new_field_without_documentation_fails() -> None:
    """A field added to a settings model and not documented is reported.

    Regenerating the reference does not make it pass: the new row has no description.
    """
    wider = create_model("WiderBroker", __base__=BrokerSettings, heartbeat=(int, 60))
    root = _with_broker(wider)
    text = CONFIGURATION.read_text(encoding="utf-8")
    assert "broker.heartbeat" in all_keys(root)
    assert "settings key broker.heartbeat is not documented" in problems(text, root)
    regenerated = regenerate(text, root)
    assert "| `broker.heartbeat` | integer | `60` | UNDOCUMENTED |" in regenerated
    assert problems(regenerated, root) == ["settings key broker.heartbeat has no description"]
    described = regenerated.replace("| UNDOCUMENTED |", "| Seconds between heartbeats. |")
    assert problems(described, root) == []


def test_a_documented_key_that_does_not_exist_fails() -> None:
    text = CONFIGURATION.read_text(encoding="utf-8")
    row = "| `broker.url_env` |"
    assert row in text
    stale = text.replace(row, "| `broker.gone` | string | unset | Removed. |\n" + row, 1)
    assert "documented key broker.gone is no settings key" in problems(stale)


def test_a_stale_default_fails() -> None:
    text = CONFIGURATION.read_text(encoding="utf-8")
    line = next(line for line in text.splitlines() if line.startswith("| `receiver.port` |"))
    stale = text.replace(line, line.replace("`8080`", "`8000`"))
    assert stale != text
    assert any("out of date" in problem for problem in problems(stale))


def test_durations_and_their_defaults_come_from_the_models() -> None:
    """A duration field is shown as a duration, its default written with a unit."""
    wider = create_model(
        "DurationBroker", __base__=BrokerSettings, heartbeat=(timedelta, timedelta(minutes=90))
    )
    (key,) = [key for key in settings_keys(_with_broker(wider)) if key.key == "broker.heartbeat"]
    assert key.kind == "duration"
    assert key.default in ('`"90m"`', '`"1h30m"`')


def test_the_generator_keeps_descriptions_and_changes_nothing_when_current() -> None:
    text = CONFIGURATION.read_text(encoding="utf-8")
    assert regenerate(text) == text


# -- the example configuration ----------------------------------------------------------------


def test_the_example_file_sets_every_key_and_only_keys() -> None:
    """docs/config.example.toml, its commented lines switched on, names every settings key."""
    document = tomllib.loads(switched_on(EXAMPLE.read_text(encoding="utf-8")))
    found = document_keys(document)
    assert sorted(all_keys() - found) == [], "keys missing from docs/config.example.toml"
    assert sorted(found - all_keys()) == [], "keys in docs/config.example.toml that do not exist"


def test_the_example_key_mapper_sees_unknown_and_missing_keys() -> None:
    """Guard against a vacuous pass: a made-up key and a left-out one are both seen."""
    found = document_keys({"broker": {"url_env": "X", "bogus": 1}, "routes": {"occ": ["cj"]}})
    assert found == {"broker.url_env", "broker.bogus", "routes.<name>"}
    nested = {"targets": {"shoplazza": {"shops": {"a.example": {"token_env": "T"}}}}}
    assert document_keys(nested) == {"targets.shoplazza.shops.<name>.token_env"}


def _toml_blocks(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    return [tomllib.loads(block) for block in re.findall(r"```toml\n(.*?)```", text, re.DOTALL)]


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(lambda: tomllib.loads(EXAMPLE.read_text(encoding="utf-8")), id="example"),
        pytest.param(
            lambda: tomllib.loads(switched_on(EXAMPLE.read_text(encoding="utf-8"))),
            id="example-switched-on",
        ),
        pytest.param(lambda: _toml_blocks(CONFIGURATION)[0], id="configuration.md"),
    ],
)
def test_the_examples_are_valid_in_the_current_spelling(
    document: Callable[[], Mapping[str, Any]],
) -> None:
    """Valid files, with no old spelling (a bare number for a duration, a renamed key)."""
    settings = parse_settings(document())
    assert tuple(getattr(settings, "deprecations", ())) == ()


# -- links ------------------------------------------------------------------------------------

_FENCE = re.compile(r"^```.*?^```", re.DOTALL | re.MULTILINE)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """A heading's id as GitHub makes it: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors_of(text: str) -> set[str]:
    """The ids a Markdown document has: its headings' (numbered when repeated) and `<a id>`s."""
    found: set[str] = set(re.findall(r'<a (?:id|name)="([^"]+)"', text))
    seen: dict[str, int] = {}
    for heading in re.findall(r"^#{1,6} (.+)$", _FENCE.sub("", text), re.MULTILINE):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(path: Path) -> list[str]:
    """Each link of the Markdown file at `path` to a missing file or a missing anchor."""
    text = path.read_text(encoding="utf-8")
    broken = []
    for target in _LINK.findall(_FENCE.sub("", text)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif (
            anchor
            and linked.suffix == ".md"
            and anchor not in anchors_of(linked.read_text(encoding="utf-8"))
        ):
            broken.append(f"{target} (no such anchor)")
    return broken


DOCUMENTS = sorted(
    [ROOT / "README.md", *DOCS.glob("*.md"), *(DOCS / "platforms").glob("*.md")],
    key=str,
)


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_link_resolves(path: Path) -> None:
    assert broken_links(path) == []


def test_the_link_checker_sees_broken_links(tmp_path: Path) -> None:
    """Guard against a vacuous pass: missing files and anchors, here and elsewhere, are seen."""
    (tmp_path / "other.md").write_text("# A title\n\n## Second, part\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        '# Page\n\n<a id="kept"></a>\n[a](other.md#a-title) [b](other.md#second-part)'
        " [c](#page) [d](#kept) [e](https://example.com/x)\n"
        "[f](missing.md) [g](other.md#nope) [h](#nowhere)\n"
        "```md\n[i](inside-code.md)\n```\n",
        encoding="utf-8",
    )
    assert broken_links(page) == [
        "missing.md (no such file)",
        "other.md#nope (no such anchor)",
        "#nowhere (no such anchor)",
    ]


# -- the README and the layout page -----------------------------------------------------------


def test_the_readme_links_every_document_and_names_the_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for name in (
        "configuration.md",
        "operations.md",
        "wire-contract.md",
        "development.md",
        "config.example.toml",
        "platforms/shoplazza.md",
        "platforms/prime.md",
        "platforms/occ.md",
        "platforms/cj.md",
        "platforms/assumptions.md",
    ):
        assert f"](docs/{name}" in readme, name
    assert "The test command is `pytest`" in readme
    assert "docker compose up --build" in readme
    assert "cancel-bridge run --config docs/config.example.toml" in readme


def test_the_layout_page_shows_the_layering_tests_arrows() -> None:
    """docs/development.md's table of bridge/'s folders is tests/test_layering.py's arrows.

    Every folder, each with the folders it may import.
    """
    text = (DOCS / "development.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `bridge/([a-z_]+)/` \|.*\| (.+) \|$", text, re.MULTILINE)
    shown = {folder: frozenset(re.findall(r"`([a-z_]+)`", allowed)) for folder, allowed in rows}
    assert shown == dict(FOLDER_ARROWS)
    folders = {p.name for p in (ROOT / "bridge").iterdir() if (p / "__init__.py").exists()}
    assert folders == set(shown)
