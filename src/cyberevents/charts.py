"""The geometry of the page's charts, drawn as SVG by the templates: numbers in, coordinates out (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Spark:
    """A small line chart of a figure over the last cycles; a cycle without a value breaks the line."""

    width: int
    height: int
    lines: list[str]  # polyline points, one run of values each
    last: tuple[float, float] | None  # where the latest value is drawn


def sparkline(values: Sequence[float | None], width: int = 160, height: int = 18, top: float = 1.0) -> Spark:
    """`values` (0 to `top`) from left to right, the highest at the top."""
    step = width / max(len(values) - 1, 1)
    runs: list[list[str]] = [[]]
    last = None
    for index, value in enumerate(values):
        if value is None:
            runs.append([])
            continue
        x, y = round(index * step, 1), round(height - 2 - (height - 4) * min(value / top, 1.0), 1)
        runs[-1].append(f"{x},{y}")
        last = (x, y)
    lines = [" ".join(run if len(run) > 1 else run * 2) for run in runs if run]  # a lone value drawn as a dot
    return Spark(width, height, lines, last)


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: int
    length: float  # of the longest bar's `width`


def bars(counts: Sequence[tuple[str, int]], width: int = 220) -> list[Bar]:
    """Horizontal bars, the longest `width` long."""
    longest = max((value for _, value in counts), default=0) or 1
    return [Bar(label, value, round(width * value / longest, 1)) for label, value in counts]
