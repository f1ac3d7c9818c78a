"""The service's vocabulary: the kinds of events, their states, severities, forms, and the fates of cycles. Plain
enums, importable without the database layer (the command line's grammar uses them; models.py stores them)."""

from __future__ import annotations

import enum

# The most events of one kind a cycle may have: LOGIN_EVENTS and the others, and run-once's counts.
MAX_EVENTS_PER_KIND = 1_000_000


class EventKind(enum.StrEnum):
    LOGIN = "login"
    FIREWALL = "firewall"
    PATCH = "patch"


class EventStatus(enum.StrEnum):
    PENDING = "pending"
    ANALYSED = "analysed"
    FAILED = "failed"  # the last delivery failed; the next cycle tries again
    DEAD_LETTERED = "dead_lettered"  # failed MAX_ATTEMPTS deliveries; `cyberevents requeue` puts it back


class Severity(enum.StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Difficulty(enum.StrEnum):
    """The form of an attack event: a marker a one-line rule sees gives it away, or no single field does."""

    EVIDENT = "evident"
    SUBTLE = "subtle"


class CycleOutcome(enum.StrEnum):
    """The fate of a cycle, or of a schedule slot that never got one."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    COALESCED = "coalesced"  # a slot folded into a later slot's catch-up cycle
    MISSED = "missed"  # a slot skipped: its catch-up would have started later than MISFIRE_GRACE_SECONDS
    TIMED_OUT = "timed_out"
    INTERRUPTED = "interrupted"


class CycleTrigger(enum.StrEnum):
    START = "start"  # RUN_ON_START
    SCHEDULE = "schedule"
    CATCH_UP = "catch_up"  # a slot that fell while another cycle ran
    ONCE = "once"  # run-once
