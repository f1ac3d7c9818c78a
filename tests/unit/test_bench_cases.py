"""python -m bench's cases: N,W,L_MS with an optional R, each bad one refused in one line."""

from __future__ import annotations

import argparse

import pytest
from bench.run import DEFAULT_CASES, Case


def test_a_case_reads_its_fields_and_its_replicas() -> None:
    assert Case.parse("434,10,200") == Case(434, 10, 200.0, 1)
    assert str(Case.parse("2000,50,-0").latency_ms) == "0.0"  # not -0.0, which prints as -0
    assert Case.parse("30000,500,2000,3") == Case(30000, 500, 2000.0, 3)
    assert Case.parse("30000,500,2000", replicas=3) == Case(30000, 500, 2000.0, 3)  # --replicas 3
    assert Case.parse("30000,500,2000,3", replicas=3).replicas == 3
    for conflicting in ("30000,500,2000,2", "30000,500,2000,x", "30000,500,2000,"):  # R read, whatever --replicas says
        with pytest.raises(argparse.ArgumentTypeError):
            Case.parse(conflicting, replicas=3)


@pytest.mark.parametrize(
    "text", ["1,2", "1,2,3,4,5", "a,2,3", "1,2,x", "0,2,3", "1,0,3", "1,2,-1", "1,2,nan", "1,2,3,0", "1,2,0,3"]
)
def test_a_bad_case_is_refused_in_one_line(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        Case.parse(text)
    assert text in str(refused.value) and "\n" not in str(refused.value)


def test_the_default_run_covers_every_target() -> None:
    cases = [Case.parse(text) for text in DEFAULT_CASES]
    assert Case(20000, 5000, 10000.0) in cases and Case(50000, 10000, 20000.0) in cases  # wide fan-out
    assert Case(30000, 500, 2000.0, 3) in cases  # replicas
    assert {case.events for case in cases if case.latency_ms == 0} >= {1000, 100000}  # memory, machine-bound
