"""The daemon's clock: aiocron wakes it up, `schedule` decides what each wake-up owes, cycles never overlap."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import aiocron

from .models import CycleOutcome, CycleTrigger
from .schedule import Fate, SlotFate, decide, due_slots, next_slot, previous_slot
from .settings import Settings

log = logging.getLogger(__name__)

# However aiocron's timer drifts (suspension, clock jumps), the wall clock is looked at this often.
WAKE_AT_LEAST_EVERY = 30.0

RunSlot = Callable[[datetime | None, CycleTrigger], Awaitable[None]]
RecordSlot = Callable[[SlotFate, CycleOutcome, str], Awaitable[None]]
RanSince = Callable[[datetime], Awaitable[bool]]


def now_utc() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    """Runs one cycle at a time, for the slots the schedule owes, until `stop` is set."""

    def __init__(
        self,
        settings: Settings,
        run_slot: RunSlot,
        record_slot: RecordSlot,
        ran_since: RanSince,
        stop: asyncio.Event,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self._settings, self._stop, self._clock = settings, stop, clock
        self._run_slot, self._record_slot, self._ran_since = run_slot, record_slot, ran_since
        self._schedule, self._zone = settings.schedule, settings.zone
        self._grace = timedelta(seconds=settings.misfire_grace_seconds)
        self.next_run: datetime | None = None

    async def run(self) -> None:
        handled = self._clock()
        if self._settings.run_on_start:
            await self._run_on_start(handled)
        while not self._stop.is_set():
            now = self._clock()
            due, dropped = due_slots(self._schedule, self._zone, handled, now)
            if not due:
                self.next_run = next_slot(self._schedule, self._zone, max(handled, now))
                await self._sleep_until_tick()
                continue
            handled = due[-1]
            self.next_run = None
            if dropped:
                log.warning("%d earlier slots were owed as well and are not listed one by one: missed", dropped)
            for fate in decide(due, now, self._grace):
                await self._settle(fate, due[-1])

    async def _run_on_start(self, now: datetime) -> None:
        latest = previous_slot(self._schedule, self._zone, now)
        if await self._ran_since(latest):
            log.info("RUN_ON_START: a cycle already ran since the latest slot (%s); waiting for the next", latest)
            return
        await self._run_slot(None, CycleTrigger.START)

    async def _settle(self, fate: SlotFate, latest: datetime) -> None:
        late = fate.lateness.total_seconds()
        if fate.fate is Fate.MISSED:
            reason = f"missed by {late:.0f} s (MISFIRE_GRACE_SECONDS={self._grace.total_seconds():g})"
            log.warning("Slot %s %s", fate.slot.isoformat(), reason)
            await self._record_slot(fate, CycleOutcome.MISSED, reason)
        elif fate.fate is Fate.COALESCED:
            reason = f"fell while a cycle ran; coalesced into the catch-up cycle of slot {latest.isoformat()}"
            log.info("Slot %s %s", fate.slot.isoformat(), reason)
            await self._record_slot(fate, CycleOutcome.COALESCED, reason)
        elif self._stop.is_set():
            return
        elif fate.on_time:
            await self._run_slot(fate.slot, CycleTrigger.SCHEDULE)
        else:
            log.info("Catch-up cycle for slot %s, starting %.0f s late", fate.slot.isoformat(), late)
            await self._run_slot(fate.slot, CycleTrigger.CATCH_UP)

    async def _sleep_until_tick(self) -> None:
        """Until aiocron's next tick, a stop, or WAKE_AT_LEAST_EVERY; a fresh crontab each time, so that
        aiocron's fire time is computed from now rather than from a loop-time offset taken long ago."""
        cron = aiocron.crontab(self._schedule, start=False, tz=self._zone)
        tick = asyncio.ensure_future(cron.next())
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({tick, stopped}, timeout=WAKE_AT_LEAST_EVERY, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cron.stop()
            tick.cancel()
            stopped.cancel()
