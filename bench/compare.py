"""Compare two `python -m bench --json` result files: a case whose judging figure got worse by more than the runs'
own spread flags a regression.

    python -m bench.compare old.json new.json

For each case in both files, the figure that judges it (the ratio to the ideal for latency-bound cases, lower is
better; events/s for machine-bound ones, higher is better) is compared by its median. The noise is what the runs
themselves measured: the larger of the two files' spreads (max over min of a case's runs, less one). A change
within it is noise; past it, `worse` or `better`. Exits 1 if any case got worse.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any


def figures(path: Path) -> tuple[str, dict[tuple[int, int, float, int], tuple[str, list[float]]]]:
    """A result file's commit, and per case (N, W, L, R) its judging figure's name and its runs' values."""
    data = json.loads(path.read_text())
    cases = {}
    for entry in data["cases"]:
        case = entry["case"]
        if not entry["runs"]:
            raise ValueError(f"case {case}: no runs")
        name = entry["runs"][0]["figure"]
        key = (case["events"], case["workers"], case["latency_ms"], case.get("replicas", 1))
        values = [float(run[name]) for run in entry["runs"]]
        if not all(0 < value < math.inf for value in values):
            raise ValueError(f"case {key}: {name} must be a positive number in every run")
        cases[key] = (name, values)
    return data["commit"], cases


def spread(values: list[float]) -> float:
    return max(values) / min(values) - 1 if len(values) > 1 and min(values) > 0 else 0.0


def verdict(name: str, old: list[float], new: list[float]) -> tuple[float, float, str]:
    """The change of the median (new over old, less one), the noise, and what the change is."""
    change = statistics.median(new) / statistics.median(old) - 1
    noise = max(spread(old), spread(new))
    worse = change > noise if name == "ratio_to_ideal" else change < -noise
    better = change < -noise if name == "ratio_to_ideal" else change > noise
    return change, noise, "worse" if worse else "better" if better else "within noise"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    args = parser.parse_args(argv)
    try:
        (old_commit, old), (new_commit, new) = figures(args.old), figures(args.new)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"bench.compare: not a `python -m bench --json` file: {exc}", file=sys.stderr)
        return 2
    rows: list[Any] = [
        "| N | W | L (ms) | R | figure | old | new | change | noise | |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    regressions = 0
    for key in sorted(old.keys() & new.keys()):
        name, before = old[key]
        _, after = new[key]
        change, noise, said = verdict(name, before, after)
        regressions += said == "worse"
        events, workers, latency, replicas = key
        rows.append(
            f"| {events} | {workers} | {latency:g} | {replicas} | {name} | {statistics.median(before):.3f} | "
            f"{statistics.median(after):.3f} | {change:+.1%} | ±{noise:.1%} | {said} |"
        )
    print(f"{old_commit} → {new_commit}")
    print("\n".join(rows))
    if missing := sorted(old.keys() ^ new.keys()):
        print(f"cases in one file only: {missing}", file=sys.stderr)
    return 1 if regressions else 0


if __name__ == "__main__":
    raise SystemExit(main())
