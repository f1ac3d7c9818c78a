"""The scorecard's figures from counts: recall, false-positive rate, precision, ROC-AUC, campaign detection."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cyberevents.models import EventKind, Severity
from cyberevents.scoring import CampaignCounts, ScenarioCounts, flagging, roc_auc, scorecard

AT = datetime(2026, 11, 30, tzinfo=UTC)


def test_a_threshold_flags_itself_and_what_is_above() -> None:
    assert flagging(Severity.HIGH) == (Severity.HIGH, Severity.CRITICAL)
    assert flagging(Severity.LOW) == (Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)


def test_figures_count_answered_events_only() -> None:
    card = scorecard(
        Severity.HIGH,
        [
            ScenarioCounts("brute_force", EventKind.LOGIN, answered=8, flagged=6, failed=1, pending=1),
            ScenarioCounts("port_scan", EventKind.FIREWALL, answered=2, flagged=0, failed=5, pending=0),
            ScenarioCounts("benign", EventKind.LOGIN, answered=90, flagged=4, failed=3, pending=3),
        ],
        [],
        {},
    )
    assert card.recall == 6 / 10
    assert card.false_positive_rate == 4 / 90
    assert card.precision == 6 / 10
    assert [row.flag_rate for row in card.scenarios] == [6 / 8, 0.0, 4 / 90]
    assert [row.scenario for row in card.scenarios] == ["brute_force", "port_scan", "benign"]  # attacks first


def test_no_answer_yet_is_no_figure_not_zero() -> None:
    card = scorecard(Severity.HIGH, [ScenarioCounts("exfiltration", EventKind.FIREWALL, 0, 0, 0, 7)], [], {})
    assert card.recall is None and card.precision is None and card.false_positive_rate is None
    assert card.scenarios[0].flag_rate is None and card.roc_auc is None


def test_campaign_detection_is_its_first_flagged_event() -> None:
    found = CampaignCounts("brute_force", "bf-1", AT, AT + timedelta(seconds=90))
    missed = CampaignCounts("port_scan", "ps-1", AT, None)
    assert found.detected and found.seconds_to_detection == 90
    assert not missed.detected and missed.seconds_to_detection is None


def test_roc_auc_of_known_orderings() -> None:
    assert roc_auc({(True, 90): 3, (False, 10): 5}) == 1.0  # every attack above every benign event
    assert roc_auc({(True, 10): 3, (False, 90): 5}) == 0.0
    assert roc_auc({(True, 50): 3, (False, 50): 5}) == 0.5  # all tied: chance
    # attacks 20, 80; benign 50, 50: one attack above both, one below both
    assert roc_auc({(True, 20): 1, (True, 80): 1, (False, 50): 2}) == 0.5
    assert roc_auc({(True, 80): 4}) is None


@given(st.lists(st.integers(0, 100), min_size=1, max_size=30), st.lists(st.integers(0, 100), min_size=1, max_size=30))
def test_roc_auc_is_the_share_of_pairs_an_attack_wins(attacks: list[int], benign: list[int]) -> None:
    """Checked against the definition: every (attack, benign) pair, a tie counting half."""
    counts: dict[tuple[bool, int], int] = {}
    for attack, scores in ((True, attacks), (False, benign)):
        for score in scores:
            counts[attack, score] = counts.get((attack, score), 0) + 1
    pairs = list(itertools.product(attacks, benign))
    expected = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)
    assert roc_auc(counts) == pytest.approx(expected)
