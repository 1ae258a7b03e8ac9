"""Argument types the commands share (argparse answers a bad one with exit status 2)."""

from __future__ import annotations

import argparse
from datetime import timedelta

from handlers.base import parse_duration


def duration_arg(text: str) -> timedelta:
    """`24h`, `90m`, `7d`, ... as a `timedelta` (`handlers.base.parse_duration`)."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
