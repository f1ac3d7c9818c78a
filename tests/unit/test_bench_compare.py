"""bench.compare: a change past the runs' own spread is a regression or a gain; within it, noise."""

from __future__ import annotations

import json
from pathlib import Path

from bench.compare import main, verdict


def test_a_change_is_judged_against_the_noise_the_runs_measured() -> None:
    assert verdict("events_per_second", [1000, 1100], [1040, 1050])[2] == "within noise"  # spread 10 %
    assert verdict("events_per_second", [1000, 1010], [800, 810])[2] == "worse"  # higher is better
    assert verdict("ratio_to_ideal", [1.02, 1.03], [1.20, 1.21])[2] == "worse"  # lower is better
    assert verdict("ratio_to_ideal", [1.20, 1.21], [1.02, 1.03])[2] == "better"


def test_the_exit_code_says_whether_any_case_got_worse(tmp_path: Path) -> None:
    def write(name: str, rate: float) -> Path:
        runs = [{"figure": "events_per_second", "events_per_second": rate * factor} for factor in (1.0, 1.01)]
        path = tmp_path / name
        path.write_text(
            json.dumps(
                {"commit": name, "cases": [{"case": {"events": 2000, "workers": 50, "latency_ms": 0.0}, "runs": runs}]}
            )
        )
        return path

    assert main([str(write("old", 1000)), str(write("same", 1002))]) == 0
    assert main([str(write("old", 1000)), str(write("slower", 700))]) == 1
    (tmp_path / "junk").write_text("not json")
    assert main([str(tmp_path / "old"), str(tmp_path / "junk")]) == 2
    case = {"events": 2000, "workers": 50, "latency_ms": 0.0}
    for runs in ([], [{"figure": "events_per_second", "events_per_second": 0}]):  # nothing to judge; no ratio of 0
        (tmp_path / "empty").write_text(json.dumps({"commit": "x", "cases": [{"case": case, "runs": runs}]}))
        assert main([str(tmp_path / "old"), str(tmp_path / "empty")]) == 2


def test_replicas_are_part_of_a_case(tmp_path: Path) -> None:
    """The same N, W and L with and without replicas are two cases, never compared with each other."""

    def write(name: str, replicas: int) -> Path:
        case = {"events": 30000, "workers": 500, "latency_ms": 2000.0, "replicas": replicas}
        runs = [{"figure": "ratio_to_ideal", "ratio_to_ideal": 1.03 * replicas}]
        (path := tmp_path / name).write_text(json.dumps({"commit": name, "cases": [{"case": case, "runs": runs}]}))
        return path

    assert main([str(write("alone", 1)), str(write("shared", 3))]) == 0  # no case in common: nothing got worse
