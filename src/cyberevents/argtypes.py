"""argparse types for the command line's values: each a number in its range, an ISO time or a span of cycle ids,
or one line saying what was expected."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

Number = TypeVar("Number", int, float)


def within(kind: Callable[[str], Number], low: Number, high: Number) -> Callable[[str], Number]:
    """An argparse type: a `kind` number from `low` to `high` (NaN is outside every range)."""

    def parse(text: str) -> Number:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low:,} and {high:,}, got {text}")
        return value

    parse.__name__ = "number"  # argparse names the type in "invalid number value: 'x'"
    return parse


def timestamp(text: str) -> datetime:
    """An argparse type: an ISO time, UTC unless it says otherwise."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time such as 2026-11-30T12:00:00+00:00: {text!r}") from None
    if not 1900 <= moment.year <= 9000:  # a window near the calendar's ends would overflow it
        raise argparse.ArgumentTypeError(f"must be between the years 1900 and 9000, got {text}")
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cycle_span(text: str) -> tuple[int, int]:
    """An argparse type: a cycle id, or a span of them, "3-7"."""
    first, dash, last = text.partition("-")
    ids = within(int, 1, 2**63 - 1)
    try:
        span = (ids(first), ids(last) if dash else ids(first))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a cycle id or a span of them such as 3-7: {text!r}") from None
    if span[0] > span[1]:
        raise argparse.ArgumentTypeError(f"a span runs from the lower id to the higher, got {text}")
    return span
