"""Markers follow from file names; `conftest.py` applies them to every collected test.

`test_x_integration.py` is `integration`, `test_x_chaos.py` is `chaos` (`pytest -m chaos` runs
the chaos suite); no other file gets either.
"""

from __future__ import annotations

from pathlib import Path

MARKER_OF_SUFFIX = {"_integration": "integration", "_chaos": "chaos"}


def marker_for(path: Path) -> str | None:
    """The marker a test file's name gives its tests, if any."""
    for suffix, marker in MARKER_OF_SUFFIX.items():
        if path.stem.endswith(suffix):
            return marker
    return None
