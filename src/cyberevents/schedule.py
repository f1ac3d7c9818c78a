"""Scheduling decisions as pure functions of the cron expression, slot times and the wall clock.

aiocron only wakes the daemon up. What to run is decided here, from the wall clock, so that a late tick, a
suspended process, a clock that jumped or a cycle that outlasted its interval all get the same rules:
never two cycles at once; slots that fell while a cycle ran are coalesced into one catch-up cycle for the
latest of them, if it can start within the misfire grace; otherwise every one of them is skipped as missed.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim

# A slot answered later than this counts as a catch-up rather than an on-time tick.
ON_TIME = timedelta(seconds=1)
# After a long suspension a seconds schedule can owe thousands of slots; only the latest are listed.
MAX_LISTED_SLOTS = 1000


class Fate(enum.StrEnum):
    RUN = "run"
    COALESCED = "coalesced"
    MISSED = "missed"


@dataclass(frozen=True, slots=True)
class SlotFate:
    slot: datetime
    fate: Fate
    lateness: timedelta

    @property
    def on_time(self) -> bool:
        return self.lateness <= ON_TIME


def due_slots(schedule: str, zone: ZoneInfo, after: datetime, now: datetime) -> tuple[list[datetime], int]:
    """Slots in (after, now], oldest first, at most MAX_LISTED_SLOTS of the latest; and how many were left out."""
    slots: list[datetime] = []
    dropped = 0
    for slot in CronSim(schedule, after.astimezone(zone)):
        if slot > now:
            break
        if slot <= after:  # CronSim starts from whole seconds
            continue
        slots.append(slot)
        if len(slots) > MAX_LISTED_SLOTS:
            slots.pop(0)
            dropped += 1
    return slots, dropped


def previous_slot(schedule: str, zone: ZoneInfo, now: datetime) -> datetime:
    """The latest slot at or before `now`."""
    # Reverse iteration starts strictly before its start time, unless that has microseconds to strip.
    return next(iter(CronSim(schedule, (now + timedelta(microseconds=1)).astimezone(zone), reverse=True)))


def next_slot(schedule: str, zone: ZoneInfo, now: datetime) -> datetime:
    """The first slot after `now`."""
    return next(iter(CronSim(schedule, now.astimezone(zone))))


def decide(due: list[datetime], now: datetime, grace: timedelta) -> list[SlotFate]:
    """The fate of each due slot: the latest runs if it can start within `grace`, the others fold into it."""
    if not due:
        return []
    latest = due[-1]
    if now - latest > grace:
        return [SlotFate(slot, Fate.MISSED, now - slot) for slot in due]
    return [SlotFate(slot, Fate.COALESCED, now - slot) for slot in due[:-1]] + [
        SlotFate(latest, Fate.RUN, now - latest)
    ]
