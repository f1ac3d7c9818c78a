"""The Scheduler driven by a simulated clock: wake-ups jump the clock, cycles take the time they are given."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cyberevents.models import CycleOutcome, CycleTrigger
from cyberevents.schedule import SlotFate
from cyberevents.scheduler import Scheduler
from cyberevents.settings import Settings


@dataclass
class Seen:
    now: datetime
    ran: list[tuple[datetime, CycleTrigger, timedelta]] = field(default_factory=list)
    recorded: list[tuple[datetime, CycleOutcome]] = field(default_factory=list)
    wakes: list[tuple[datetime, datetime]] = field(default_factory=list)  # (clock when asked, asked for)

    @property
    def settled(self) -> list[datetime]:
        return sorted([slot for slot, _, _ in self.ran] + [slot for slot, _ in self.recorded])


async def simulate(
    expression: str, zone: str, start: datetime, end: datetime, durations: list[int], grace: float = 300
) -> Seen:
    """Run the Scheduler from `start` until it has settled every slot before `end`; cycles last `durations` s."""
    seen, stop, cycles = Seen(start), asyncio.Event(), iter(durations * 10_000)
    settings = Settings(
        _env_file=None, schedule=expression, schedule_tz=zone, run_on_start=False, misfire_grace_seconds=grace
    )

    async def run_slot(slot: datetime | None, trigger: CycleTrigger) -> None:
        assert slot is not None
        seen.ran.append((slot, trigger, seen.now - slot))
        seen.now += timedelta(seconds=next(cycles, 0))
        if slot >= end:  # every slot before the end is settled by now
            stop.set()

    async def record_slot(fate: SlotFate, outcome: CycleOutcome, reason: str) -> None:
        seen.recorded.append((fate.slot, outcome))
        if fate.slot >= end:
            stop.set()

    async def ran_since(moment: datetime) -> bool:
        return False

    async def wake(until: datetime) -> None:
        seen.wakes.append((seen.now, until))
        assert len(seen.wakes) < 100_000, "the scheduler keeps waking up"
        seen.now = max(seen.now, until)

    scheduler = Scheduler(settings, run_slot, record_slot, ran_since, stop, lambda: seen.now, wake=wake)
    await asyncio.wait_for(scheduler.run(), 60)
    return seen
