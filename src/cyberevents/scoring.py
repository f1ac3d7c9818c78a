"""The scorecard: how the agent's verdicts on a cycle's events compare with their ground truth.

An event counts once the agent has answered for it: `flagged` when the verdict's severity is at or above the
detection threshold. Events whose delivery failed, or that are still pending, are counted apart, never as hits
or misses. Pure: the counts come from the database (repository.score_counts), the figures are computed here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .generator import BENIGN
from .models import EventKind, Severity

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

    @property
    def attack(self) -> bool:
        return self.scenario != BENIGN

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
    roc_auc: float | None  # threshold-free: how well the score alone orders attacks above benign events

    def _sum(self, attack: bool, field: str) -> int:
        return sum(getattr(row, field) for row in self.scenarios if row.attack is attack)

    @property
    def recall(self) -> float | None:
        answered = self._sum(True, "answered")
        return self._sum(True, "flagged") / answered if answered else None

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
            "false_positive_rate": self.false_positive_rate,
            "precision": self.precision,
            "roc_auc": self.roc_auc,
            "scenarios": [
                {
                    "scenario": row.scenario,
                    "kind": row.kind.value,
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
            lines.append(
                f"{row.scenario} ({row.kind.value}): {row.flagged}/{row.answered} flagged, "
                f"{rate} {_percent(row.flag_rate)}{unscored}"
            )
        detected = sum(row.detected for row in self.campaigns)
        auc = "–" if self.roc_auc is None else f"{self.roc_auc:.3f}"
        lines.append(
            f"agent at threshold {self.threshold.value}: recall {_percent(self.recall)}, false positives "
            f"{_percent(self.false_positive_rate)}, precision {_percent(self.precision)}, ROC-AUC {auc}, "
            f"campaigns detected {detected}/{len(self.campaigns)}"
        )
        return lines


def _percent(value: float | None) -> str:
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
    ordered = sorted(scenarios, key=lambda row: (not row.attack, row.scenario, list(EventKind).index(row.kind)))
    by_campaign = sorted(campaigns, key=lambda row: (row.scenario, row.first_event_at, row.campaign))
    return Scorecard(threshold, tuple(ordered), tuple(by_campaign), roc_auc(scores))
