"""Live counts of a dispatch: read by the cycle's summary, the progress display and the health server."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .models import EventKind, EventStatus


@dataclass
class KindTally:
    total: int
    analysed: int = 0
    failed: int = 0
    dead_lettered: int = 0
    first_started: float | None = None
    last_finished: float | None = None

    @property
    def done(self) -> int:
        return self.analysed + self.failed

    @property
    def seconds(self) -> float:
        if self.first_started is None or self.last_finished is None:
            return 0.0
        return self.last_finished - self.first_started


@dataclass
class Activity:
    """What this process has under way across all its dispatches (its own cycle's, a redelivery, help with another
    replica's cycle): what /metrics reports, where a Tally counts one dispatch."""

    requests: int = 0  # agent requests in flight
    writing: int = 0  # answers being recorded


@dataclass
class Tally:
    """Live counts of a dispatch, per kind; progress displays and the cycle summary read it."""

    kinds: dict[EventKind, KindTally]
    in_flight: int = 0  # agent requests sent and not yet answered: at most DISPATCH_WORKERS
    writing: int = 0  # answers being recorded
    listeners: list[Callable[[Tally], None]] = field(default_factory=list)
    doing: str = "dispatched"  # what the progress line says of it

    @classmethod
    def of(cls, totals: dict[EventKind, int], doing: str = "dispatched") -> Tally:
        return cls({kind: KindTally(totals.get(kind, 0)) for kind in EventKind}, doing=doing)

    @property
    def total(self) -> int:
        return sum(kind.total for kind in self.kinds.values())

    @property
    def done(self) -> int:
        return sum(kind.done for kind in self.kinds.values())

    @property
    def analysed(self) -> int:
        return sum(kind.analysed for kind in self.kinds.values())

    def started(self, kind: EventKind) -> None:
        self.in_flight += 1
        tally = self.kinds[kind]
        if tally.first_started is None:
            tally.first_started = time.monotonic()

    def answered(self) -> None:
        """The agent has answered (or failed to): the delivery moves from its request to its write."""
        self.in_flight -= 1
        self.writing += 1

    def finished(self, kind: EventKind, status: EventStatus | None, answered: bool = False) -> None:
        """Count a delivery's recorded outcome; None means nothing was recorded and the event stays pending.
        `answered`: the delivery got as far as its write (`answered` was called)."""
        if answered:
            self.writing -= 1
        else:
            self.in_flight -= 1
        if status is None:
            return
        tally = self.kinds[kind]
        tally.last_finished = time.monotonic()
        if status is EventStatus.ANALYSED:
            tally.analysed += 1
        else:
            tally.failed += 1
            tally.dead_lettered += status is EventStatus.DEAD_LETTERED
        for listener in self.listeners:
            listener(self)
