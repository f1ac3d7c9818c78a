"""Prometheus metrics, in a registry of the service's own (no process-global state).

Two kinds: this process's (counters of what it did, what it has in flight), which add up across replicas; and the
database's (the backlog, the last success, the last scorecard), the same on every replica, read from the ledger
when scraped: aggregate those with max(), never sum()."""

from __future__ import annotations

from datetime import datetime

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .scoring import Scorecard
from .vocabulary import CycleOutcome, EventKind

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
        self.in_flight = Gauge(
            "cyberevents_dispatch_in_flight", "Agent requests in flight, in this process", registry=self.registry
        )
        self.writing = Gauge(
            "cyberevents_dispatch_writes_pending",
            "Agent answers being recorded, in this process",
            registry=self.registry,
        )
        self.retries = Counter(
            "cyberevents_agent_retries", "Agent requests repeated after a transient failure", registry=self.registry
        )
        self.responses = Counter(
            "cyberevents_agent_responses",
            "Agent requests by how they ended: the response's status class, or timeout, or unreachable",
            ["status_class"],
            registry=self.registry,
        )
        self.loop_lag = Gauge(
            "cyberevents_event_loop_lag_seconds",
            "How late this process's event loop last woke for a one-second timer",
            registry=self.registry,
        )
        self.pending = Gauge(
            "cyberevents_pending_events",
            "Database-wide (max() across replicas): events waiting for a verdict",
            registry=self.registry,
        )
        self.dead_lettered = Gauge(
            "cyberevents_dead_lettered_events",
            "Database-wide (max() across replicas): events that failed MAX_ATTEMPTS deliveries (`cyberevents requeue`)",
            registry=self.registry,
        )
        self.ready = Gauge(
            "cyberevents_ready",
            "1 while /readyz passes or warns: the database answers, the schema is at head, not draining",
            registry=self.registry,
        )
        self.circuit_open = Gauge(
            "cyberevents_agent_circuit_open",
            "1 while dispatch pauses because most agent calls fail",
            registry=self.registry,
        )
        self.last_success = Gauge(
            "cyberevents_last_success_timestamp_seconds",
            "Database-wide (max() across replicas), from the run ledger: Unix time the last cycle that analysed "
            "every event ended, whichever process ran it",
            registry=self.registry,
        )
        self.flag_rate = Gauge(
            "cyberevents_score_flag_rate",
            "Database-wide, from the ledger: the last scored cycle's share of answered events flagged, per scenario, "
            "kind and form (recall for an attack scenario, the false-positive rate for benign events)",
            ["scenario", "kind", "difficulty"],
            registry=self.registry,
        )
        self.score = Gauge(
            "cyberevents_score",
            "Database-wide, from the ledger: the last scored cycle's recall, false_positive_rate, precision, roc_auc",
            ["figure"],
            registry=self.registry,
        )
        # The process's CPU, memory, file descriptors and start time, read from /proc when scraped (no thread), the
        # interpreter's version, and its garbage collector.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        for status_class in ("2xx", "3xx", "4xx", "5xx", "timeout", "unreachable"):
            self.responses.labels(status_class)
        for outcome in CycleOutcome:
            if outcome is not CycleOutcome.RUNNING:
                self.cycles.labels(outcome.value)
        for kind in EventKind:
            for result in ("analysed", "failed"):
                self.events.labels(kind.value, result)

    def observe_delivery(self, kind: EventKind, seconds: float, analysed: bool, attempts: int) -> None:
        self.dispatch_seconds.labels(kind.value).observe(seconds)
        self.events.labels(kind.value, "analysed" if analysed else "failed").inc()
        self.retries.inc(attempts - 1)

    def observe_response(self, status_class: str) -> None:
        self.responses.labels(status_class).inc()

    def observe_ledger(self, last_success: datetime | None, score: Scorecard | None) -> None:
        """What the run ledger says, whichever replica wrote it: the last success, the last scorecard."""
        if last_success is not None:
            self.last_success.set(last_success.timestamp())
        if score is not None:
            self.observe_score(score)

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
