"""The daemon's clock: aiocron wakes it up, `schedule` decides what each wake-up owes, cycles never overlap."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import aiocron

from .models import CycleOutcome, CycleTrigger
from .schedule import ON_TIME, Fate, ScheduleError, SlotFate, decide, due_slots, next_slot, previous_slot
from .settings import Settings

log = logging.getLogger(__name__)

# However aiocron's timer drifts (suspension, clock jumps), the wall clock is looked at this often.
WAKE_AT_LEAST_EVERY = 30.0

RunSlot = Callable[[datetime | None, CycleTrigger], Awaitable[None]]
RecordSlot = Callable[[SlotFate, CycleOutcome, str], Awaitable[None]]
RanSince = Callable[[datetime], Awaitable[bool]]
# Returns at `until` on the clock at the latest, or sooner (a stop, a clock that jumped); never trusted as a slot.
Wake = Callable[[datetime], Awaitable[None]]


def now_utc() -> datetime:
    return datetime.now(UTC)


class Scheduler:
    """Runs one cycle at a time, for the slots the schedule owes, until `stop` is set.

    `turn` is held while deciding what is owed and while running it, so that a wait for it (another replica's
    cycle being helped, say) is seen in the clock the decision reads: slots passed meanwhile coalesce into one run.
    """

    def __init__(
        self,
        settings: Settings,
        run_slot: RunSlot,
        record_slot: RecordSlot,
        ran_since: RanSince,
        stop: asyncio.Event,
        clock: Callable[[], datetime] = now_utc,
        *,
        turn: asyncio.Lock | None = None,
        wake: Wake | None = None,
    ) -> None:
        self._settings, self._stop, self._clock = settings, stop, clock
        self._run_slot, self._record_slot, self._ran_since = run_slot, record_slot, ran_since
        self._schedule, self._zone = settings.schedule, settings.zone
        self._grace = timedelta(seconds=settings.misfire_grace_seconds)
        self._turn = asyncio.Lock() if turn is None else turn
        self._wake = self._aiocron_tick if wake is None else wake
        self.next_run: datetime | None = None

    async def run(self) -> None:
        handled, idle = self._clock(), False
        if self._settings.run_on_start:
            async with self._turn:
                await self._run_on_start(self._clock())
        while not self._stop.is_set():
            upcoming = next_slot(self._schedule, self._zone, handled)
            if upcoming <= self._clock() and idle:  # owed but not found: never spin, wait for the next one
                log.error("Slot %s looked owed but was not; waiting for the next", upcoming.isoformat())
                upcoming = next_slot(self._schedule, self._zone, max(handled, self._clock()))
            if upcoming > self._clock():  # otherwise slots passed during the last cycle: settle them at once
                self.next_run = upcoming
                await self._wake(upcoming)
                if self._stop.is_set():
                    return
            async with self._turn:
                now = self._clock()  # read after any wait for the turn, so lateness counts that wait
                due, dropped = due_slots(self._schedule, self._zone, handled, now)
                idle = not due
                if idle:
                    continue  # an early or spurious wake-up: the next real slot is awaited again
                handled, self.next_run = due[-1], None
                if dropped:
                    log.warning("%d earlier slots were owed as well and are not listed one by one: missed", dropped)
                for fate in decide(due, now, self._grace):
                    await self._settle(fate, due[-1])

    async def _run_on_start(self, now: datetime) -> None:
        try:
            latest: datetime | None = previous_slot(self._schedule, self._zone, now)
        except ScheduleError:
            latest = None
        if latest is not None and await self._ran_since(latest):
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
        elif self._clock() - fate.slot <= ON_TIME:  # the records above took time too
            await self._run_slot(fate.slot, CycleTrigger.SCHEDULE)
        else:
            late = (self._clock() - fate.slot).total_seconds()
            log.info("Catch-up cycle for slot %s, starting %.0f s late", fate.slot.isoformat(), late)
            await self._run_slot(fate.slot, CycleTrigger.CATCH_UP)

    async def _aiocron_tick(self, until: datetime) -> None:
        """aiocron's tick at `until`, a stop, or WAKE_AT_LEAST_EVERY. The tick is spelled as that instant in UTC,
        so aiocron never runs its own daylight-saving arithmetic, which can return past instants or not return."""
        at = until.astimezone(UTC)
        if at.microsecond:
            at = at.replace(microsecond=0) + timedelta(seconds=1)
        cron = aiocron.crontab(f"{at.second} {at.minute} {at.hour} {at.day} {at.month} *", start=False, tz=UTC)
        tick = asyncio.ensure_future(cron.next())
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({tick, stopped}, timeout=WAKE_AT_LEAST_EVERY, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cron.stop()
            tick.cancel()
            stopped.cancel()
