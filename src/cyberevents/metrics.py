"""Prometheus metrics, in a registry of the service's own (no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .models import CycleOutcome, EventKind
from .scoring import Scorecard

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.cycles = Counter(
            "cyberevents_cycles", "Cycles and schedule slots, by outcome", ["outcome"], registry=self.registry
        )
        self.events = Counter(
            "cyberevents_events", "Events dispatched, by kind and outcome", ["kind", "outcome"], registry=self.registry
        )
        self.dispatch_seconds = Histogram(
            "cyberevents_dispatch_seconds",
            "Time from sending an event to the agent to having its answer",
            ["kind"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.cycle_seconds = Histogram(
            "cyberevents_cycle_duration_seconds",
            "Duration of whole cycles",
            buckets=(1, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600),
            registry=self.registry,
        )
        self.in_flight = Gauge("cyberevents_dispatch_in_flight", "Agent requests in flight", registry=self.registry)
        self.pending = Gauge("cyberevents_pending_events", "Events waiting for a verdict", registry=self.registry)
        self.dead_lettered = Gauge(
            "cyberevents_dead_lettered_events",
            "Events that failed MAX_ATTEMPTS deliveries (see `cyberevents requeue`)",
            registry=self.registry,
        )
        self.circuit_open = Gauge(
            "cyberevents_agent_circuit_open",
            "1 while dispatch pauses because most agent calls fail",
            registry=self.registry,
        )
        self.last_success = Gauge(
            "cyberevents_last_success_timestamp_seconds",
            "Unix time the last cycle that analysed every event ended",
            registry=self.registry,
        )
        self.flag_rate = Gauge(
            "cyberevents_score_flag_rate",
            "Last scored cycle: share of answered events flagged, per scenario, kind and form "
            "(recall for an attack scenario, the false-positive rate for benign events)",
            ["scenario", "kind", "difficulty"],
            registry=self.registry,
        )
        self.score = Gauge(
            "cyberevents_score",
            "Last scored cycle: recall, false_positive_rate, precision, roc_auc",
            ["figure"],
            registry=self.registry,
        )
        for outcome in CycleOutcome:
            if outcome is not CycleOutcome.RUNNING:
                self.cycles.labels(outcome.value)
        for kind in EventKind:
            for result in ("analysed", "failed"):
                self.events.labels(kind.value, result)

    def observe_delivery(self, kind: EventKind, seconds: float, analysed: bool) -> None:
        self.dispatch_seconds.labels(kind.value).observe(seconds)
        self.events.labels(kind.value, "analysed" if analysed else "failed").inc()

    def observe_score(self, card: Scorecard) -> None:
        """The last scored cycle's figures; a figure with nothing to measure yet is left out, not shown as 0."""
        self.flag_rate.clear()
        self.score.clear()
        for row in card.scenarios:
            if row.flag_rate is not None:
                self.flag_rate.labels(row.scenario, row.kind.value, row.difficulty.value).set(row.flag_rate)
        figures = {
            "recall": card.recall,
            "false_positive_rate": card.false_positive_rate,
            "precision": card.precision,
            "roc_auc": card.roc_auc,
        }
        for figure, value in figures.items():
            if value is not None:
                self.score.labels(figure).set(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)
