"""The scorecard: how the agent's verdicts on a cycle's events compare with their ground truth.

An event counts once the agent has answered for it: `flagged` when the verdict's severity is at or above the
detection threshold. Events whose delivery failed, or that are still pending, are counted apart, never as hits
or misses. Pure: the counts come from the database (repository.score_counts), the figures are computed here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .generator import BENIGN
from .models import Difficulty, EventKind, Severity

SEVERITY_ORDER = (Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)


def flagging(threshold: Severity) -> tuple[Severity, ...]:
    """The severities a verdict flags an event with: the threshold and those above it."""
    return SEVERITY_ORDER[SEVERITY_ORDER.index(threshold) :]


@dataclass(frozen=True, slots=True)
class ScenarioCounts:
    """One scenario's events of one kind: answered (and of those, flagged), failed, pending."""

    scenario: str
    kind: EventKind
    answered: int
    flagged: int
    failed: int
    pending: int
    difficulty: Difficulty = Difficulty.EVIDENT  # benign events are all counted as evident

    @property
    def attack(self) -> bool:
        return self.scenario != BENIGN

    @property
    def name(self) -> str:
        """How the row is shown: "brute_force (login, subtle)", "benign (patch)"."""
        form = f", {self.difficulty.value}" if self.attack else ""
        return f"{self.scenario} ({self.kind.value}{form})"

    @property
    def flag_rate(self) -> float | None:
        """Recall for an attack scenario, the false-positive rate for benign events; None before any answer."""
        return self.flagged / self.answered if self.answered else None


@dataclass(frozen=True, slots=True)
class CampaignCounts:
    """One attack campaign: when its first event happened, and its first flagged one, if any was."""

    scenario: str
    campaign: str
    first_event_at: datetime
    first_flagged_at: datetime | None

    @property
    def detected(self) -> bool:
        return self.first_flagged_at is not None

    @property
    def seconds_to_detection(self) -> float | None:
        if self.first_flagged_at is None:
            return None
        return (self.first_flagged_at - self.first_event_at).total_seconds()


@dataclass(frozen=True, slots=True)
class Scorecard:
    threshold: Severity
    scenarios: tuple[ScenarioCounts, ...]
    campaigns: tuple[CampaignCounts, ...]
    scores: Mapping[tuple[bool, int], int]  # answered events per (is an attack, score)

    @property
    def roc_auc(self) -> float | None:
        """Threshold-free: how well the score alone orders attacks above benign events."""
        return roc_auc(self.scores)

    def _sum(self, attack: bool, field: str, difficulty: Difficulty | None = None) -> int:
        return sum(
            getattr(row, field)
            for row in self.scenarios
            if row.attack is attack and difficulty in (None, row.difficulty)
        )

    @property
    def recall(self) -> float | None:
        return self.recall_of(None)

    def recall_of(self, difficulty: Difficulty | None) -> float | None:
        """Recall over the attack events of one form, or of both."""
        answered = self._sum(True, "answered", difficulty)
        return self._sum(True, "flagged", difficulty) / answered if answered else None

    @property
    def false_positive_rate(self) -> float | None:
        answered = self._sum(False, "answered")
        return self._sum(False, "flagged") / answered if answered else None

    @property
    def precision(self) -> float | None:
        flagged = self._sum(True, "flagged") + self._sum(False, "flagged")
        return self._sum(True, "flagged") / flagged if flagged else None

    def as_json(self) -> dict[str, Any]:
        """The scorecard as `run-once --json` prints it."""
        return {
            "threshold": self.threshold.value,
            "recall": self.recall,
            "recall_by_difficulty": {difficulty.value: self.recall_of(difficulty) for difficulty in Difficulty},
            "false_positive_rate": self.false_positive_rate,
            "precision": self.precision,
            "roc_auc": self.roc_auc,
            "scenarios": [
                {
                    "scenario": row.scenario,
                    "kind": row.kind.value,
                    "difficulty": row.difficulty.value,
                    "answered": row.answered,
                    "flagged": row.flagged,
                    "failed": row.failed,
                    "pending": row.pending,
                    "flag_rate": row.flag_rate,
                }
                for row in self.scenarios
            ],
            "campaigns": [
                {
                    "campaign": row.campaign,
                    "scenario": row.scenario,
                    "detected": row.detected,
                    "seconds_to_detection": row.seconds_to_detection,
                }
                for row in self.campaigns
            ],
        }

    def lines(self) -> list[str]:
        """One line per scenario and kind, then the totals: what the daemon logs and run-once prints."""
        lines = []
        for row in self.scenarios:
            rate = "recall" if row.attack else "false positives"
            unscored = f", {row.failed} failed, {row.pending} pending" if row.failed or row.pending else ""
            lines.append(f"{row.name}: {row.flagged}/{row.answered} flagged, {rate} {percent(row.flag_rate)}{unscored}")
        detected = sum(row.detected for row in self.campaigns)
        auc = "–" if self.roc_auc is None else f"{self.roc_auc:.3f}"
        lines.append(
            f"agent at threshold {self.threshold.value}: recall {percent(self.recall)} (evident "
            f"{percent(self.recall_of(Difficulty.EVIDENT))}, subtle {percent(self.recall_of(Difficulty.SUBTLE))}), "
            "false positives "
            f"{percent(self.false_positive_rate)}, precision {percent(self.precision)}, ROC-AUC {auc}, "
            f"campaigns detected {detected}/{len(self.campaigns)}"
        )
        return lines


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def roc_auc(scores: Mapping[tuple[bool, int], int]) -> float | None:
    """The area under the ROC curve from counts of (is an attack, score): the chance that an attack event scores
    above a benign one, ties counting half (the Mann-Whitney statistic). None without both kinds of event."""
    attacks = sum(count for (attack, _), count in scores.items() if attack)
    benign = sum(count for (attack, _), count in scores.items() if not attack)
    if not attacks or not benign:
        return None
    wins, benign_below = 0.0, 0
    for score in sorted({score for _, score in scores}):
        attacks_here, benign_here = scores.get((True, score), 0), scores.get((False, score), 0)
        wins += attacks_here * (benign_below + benign_here / 2)
        benign_below += benign_here
    return wins / (attacks * benign)


def scorecard(
    threshold: Severity,
    scenarios: Iterable[ScenarioCounts],
    campaigns: Iterable[CampaignCounts],
    scores: Mapping[tuple[bool, int], int],
) -> Scorecard:
    ordered = sorted(
        scenarios,
        key=lambda row: (
            not row.attack,
            row.scenario,
            list(Difficulty).index(row.difficulty),
            list(EventKind).index(row.kind),
        ),
    )
    by_campaign = sorted(campaigns, key=lambda row: (row.scenario, row.first_event_at, row.campaign))
    return Scorecard(threshold, tuple(ordered), tuple(by_campaign), dict(scores))


def combine(cards: Iterable[Scorecard]) -> Scorecard | None:
    """Several cycles' scorecards as one, summed over their events (not an average of their ratios); None for
    none. They must share a threshold: flags at another one are other counts."""
    cards = list(cards)
    if not cards:
        return None
    thresholds = {card.threshold for card in cards}
    if len(thresholds) > 1:
        raise ValueError(
            f"scorecards at different DETECTION_THRESHOLDs ({', '.join(sorted(thresholds))}) do not add up"
        )
    rows: dict[tuple[str, EventKind, Difficulty], list[int]] = {}
    scores: Counter[tuple[bool, int]] = Counter()
    for card in cards:
        for row in card.scenarios:
            totals = rows.setdefault((row.scenario, row.kind, row.difficulty), [0, 0, 0, 0])
            for index, value in enumerate((row.answered, row.flagged, row.failed, row.pending)):
                totals[index] += value
        scores.update(card.scores)
    scenarios = [
        ScenarioCounts(scenario, kind, answered, flagged, failed, pending, form)
        for (scenario, kind, form), (answered, flagged, failed, pending) in rows.items()
    ]
    return scorecard(cards[0].threshold, scenarios, [c for card in cards for c in card.campaigns], scores)


def to_stored(card: Scorecard) -> dict[str, Any]:
    """The counts behind a scorecard, as the ledger keeps them (cycle_scores.counts)."""
    return {
        "scenarios": [
            [row.scenario, row.kind.value, row.answered, row.flagged, row.failed, row.pending, row.difficulty.value]
            for row in card.scenarios
        ],
        "campaigns": [
            [row.scenario, row.campaign, row.first_event_at.isoformat(), _iso(row.first_flagged_at)]
            for row in card.campaigns
        ],
        "scores": [[attack, score, count] for (attack, score), count in sorted(card.scores.items())],
    }


def from_stored(threshold: Severity, counts: Mapping[str, Any]) -> Scorecard:
    return scorecard(
        threshold,
        [_stored_row(*row) for row in counts["scenarios"]],
        [
            CampaignCounts(scenario, campaign, datetime.fromisoformat(first), _moment(flagged))
            for scenario, campaign, first, flagged in counts["campaigns"]
        ],
        {(attack, score): count for attack, score, count in counts["scores"]},
    )


def _stored_row(
    scenario: str, kind: str, answered: int, flagged: int, failed: int, pending: int, difficulty: str = "evident"
) -> ScenarioCounts:
    """A kept row; those kept before the subtle forms existed have no difficulty: they were evident."""
    return ScenarioCounts(scenario, EventKind(kind), answered, flagged, failed, pending, Difficulty(difficulty))


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _moment(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def compare_rows(first: Scorecard, second: Scorecard) -> list[tuple[str, str, str, str]]:
    """Two scorecards side by side: a row per scenario and kind and per figure, each (name, first, second, the
    change from the first)."""
    rows: dict[str, list[ScenarioCounts | None]] = {}
    for index, card in enumerate((first, second)):
        for row in card.scenarios:
            rows.setdefault(row.name, [None, None])[index] = row
    shown: list[tuple[str, str, str, str]] = []
    for name, (one, two) in rows.items():
        a, b = (f"{row.flagged}/{row.answered} {percent(row.flag_rate)}" if row else "–" for row in (one, two))
        shown.append((name, a, b, _change(one.flag_rate if one else None, two.flag_rate if two else None)))
    for figure in ("recall", "false_positive_rate", "precision", "roc_auc"):
        before, after = getattr(first, figure), getattr(second, figure)
        a, b = (percent(value) if figure != "roc_auc" else _decimal(value) for value in (before, after))
        shown.append((figure.replace("_", " "), a, b, _change(before, after)))
    return shown


def compare_lines(first: Scorecard, second: Scorecard, first_name: str, second_name: str) -> list[str]:
    """Two scorecards side by side, as `score --compare` prints them."""
    lines = [f"{'':<40}{first_name:>20}{second_name:>20}{'change':>12}"]
    lines.extend(f"{name:<40}{one:>20}{two:>20}{change:>12}" for name, one, two, change in compare_rows(first, second))
    return lines


def _change(before: float | None, after: float | None) -> str:
    return "–" if before is None or after is None else f"{(after - before) * 100:+.1f} pts"


def _decimal(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"
