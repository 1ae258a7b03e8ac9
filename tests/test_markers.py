"""Markers follow from file names: `*_integration.py` is `integration`, `*_chaos.py` is `chaos`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.harness.markers import MARKER_OF_SUFFIX, marker_for

TESTS = Path(__file__).parent
EXPLICIT = re.compile(r"pytest\.mark\.(integration|chaos)\b")


@pytest.mark.parametrize(
    ("name", "marker"),
    [
        ("test_run_integration.py", "integration"),
        ("test_cluster_chaos.py", "chaos"),
        ("test_cli.py", None),
        ("test_chaos_words.py", None),
        ("test_integration_notes.py", None),
    ],
)
def test_a_file_name_gives_its_marker(name: str, marker: str | None) -> None:
    """Only the suffix counts."""
    assert marker_for(Path(name)) == marker


def test_every_collected_test_carries_its_file_names_marker_and_no_other(
    request: pytest.FixtureRequest,
) -> None:
    """Every test of a `*_chaos.py` file is `chaos`, no test elsewhere is; so for integration."""
    items = request.session.items
    assert items
    for item in items:
        wanted = marker_for(item.path)
        for marker in MARKER_OF_SUFFIX.values():
            carried = item.get_closest_marker(marker) is not None
            assert carried == (marker == wanted), f"{item.nodeid}: {marker} {carried}"


def test_no_test_file_marks_integration_or_chaos_itself() -> None:
    """The file name is the one place a test's marker is decided."""
    for path in sorted(TESTS.rglob("test_*.py")):
        if path.name == Path(__file__).name:
            continue
        assert not EXPLICIT.search(path.read_text()), f"{path.name} marks its tests itself"
