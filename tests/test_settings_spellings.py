"""Configs written the old ways still load; the deprecation line says what to write now."""

from __future__ import annotations

import pytest

from bridge.settings import parse_settings
from handlers.base import bare_seconds, exact_duration


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (5, 5.0),
        (2.5, 2.5),
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("5s", None),
        (True, None),
        ("\u00b2", None),
    ],
)
def test_the_old_spelling_is_a_number_maybe_in_a_string(value: object, seconds: object) -> None:
    assert bare_seconds(value) == seconds


@pytest.mark.parametrize(
    ("document", "line"),
    [
        (
            {"broker": {"confirm_timeout": "5"}},
            "deprecated: broker.confirm_timeout = '5': write confirm_timeout = \"5s\"",
        ),
        (
            {"store": {"echo_ttl_days": "7"}},
            "deprecated: store.echo_ttl_days = '7': write echo_ttl = \"1w\"",
        ),
        (
            {"worker": {"retry_total": 0.0001}},
            (
                'deprecated: worker.retry_total = 0.0001: write retry_total = "0ms" or near it'
                " (0.0001 has no exact spelling)"
            ),
        ),
    ],
)
def test_numbers_in_strings_load_as_they_did_and_are_named(
    document: dict[str, object], line: str
) -> None:
    """Lax parsing read "5" as 5 seconds before durations had units: it still does."""
    assert parse_settings(document).deprecations == (line,)


def test_the_suggested_spelling_reads_back_exactly_or_is_not_offered_as_exact() -> None:
    assert exact_duration(2.5) == "2500ms"
    assert exact_duration(86400.0) == "1d"
    assert exact_duration(0.0001) is None
    assert exact_duration(1e9) is None  # longer than a duration may be


def test_an_empty_option_of_another_platform_still_loads() -> None:
    """`[sources.occ] aliases = {}` loaded before the per-platform models; it still does."""
    from bridge.settings import resolve  # noqa: PLC0415 - one test needs it

    settings = parse_settings({"sources": {"occ": {"secret_env": "S", "aliases": {}}}})
    assert resolve(settings, {"S": "secret"}).source_handlers
