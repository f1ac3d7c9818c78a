"""The Scheduler's turn, lateness and wake-ups, on a simulated clock (and once on aiocron's real one)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from cyberevents.models import CycleOutcome, CycleTrigger
from cyberevents.schedule import SlotFate
from cyberevents.scheduler import Scheduler
from cyberevents.settings import Settings
from tests.sim_clock import simulate

NOON = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def settings(schedule: str, zone: str = "UTC") -> Settings:
    return Settings(_env_file=None, schedule=schedule, schedule_tz=zone, run_on_start=False)


async def test_a_wait_for_the_turn_is_seen_by_the_decision_and_its_slots_coalesce() -> None:
    """Helping another replica for 43 s holds the turn: the 12:00:00 slot is decided after it, with 12:00:30."""
    now, turn, stop = [NOON - timedelta(seconds=5)], asyncio.Lock(), asyncio.Event()
    ran: list[tuple[datetime | None, CycleTrigger]] = []
    recorded: list[tuple[datetime, CycleOutcome]] = []
    asked = asyncio.Event()

    async def run_slot(slot: datetime | None, trigger: CycleTrigger) -> None:
        ran.append((slot, trigger))
        stop.set()

    async def record_slot(fate: SlotFate, outcome: CycleOutcome, reason: str) -> None:
        recorded.append((fate.slot, outcome))

    async def wake(until: datetime) -> None:
        now[0] = until
        asked.set()

    async def ran_since(moment: datetime) -> bool:
        return False

    scheduler = Scheduler(
        settings("*/30 * * * * *"), run_slot, record_slot, ran_since, stop, lambda: now[0], turn=turn, wake=wake
    )
    await turn.acquire()  # the daemon is busy helping
    task = asyncio.create_task(scheduler.run())
    await asked.wait()
    now[0] = NOON + timedelta(seconds=43)
    turn.release()
    await asyncio.wait_for(task, 5)
    assert recorded == [(NOON, CycleOutcome.COALESCED)]
    assert ran == [(NOON + timedelta(seconds=30), CycleTrigger.CATCH_UP)]  # one cycle, not two


async def test_a_slot_run_more_than_on_time_late_is_a_catch_up() -> None:
    seen = await simulate("0 * * * *", "UTC", NOON, NOON + timedelta(hours=3), [0, 0, 2])
    triggers = {slot: trigger for slot, trigger, _ in seen.ran}
    assert triggers[NOON + timedelta(hours=1)] is CycleTrigger.SCHEDULE
    late = [(slot, trigger) for slot, trigger, lateness in seen.ran if lateness > timedelta(seconds=1)]
    assert all(trigger is CycleTrigger.CATCH_UP for _, trigger in late)


async def test_from_the_second_pass_of_a_fold_it_waits_for_tomorrow_without_spinning() -> None:
    """New York, 01:10 EST on 1 Nov 2026: `30 1 * * *` already ran at 01:30 EDT; one wake-up, a day ahead."""
    start = datetime(2026, 11, 1, 1, 10, tzinfo=ZoneInfo("America/New_York"), fold=1).astimezone(UTC)
    seen = await simulate("30 1 * * *", "America/New_York", start, start + timedelta(hours=2), [0])
    assert seen.wakes[0][1] == datetime(2026, 11, 2, 6, 30, tzinfo=UTC)
    assert len(seen.wakes) == 1  # that one wake-up, nothing in between
    assert [(slot, trigger) for slot, trigger, _ in seen.ran] == [(seen.wakes[0][1], CycleTrigger.SCHEDULE)]


async def test_aiocron_wakes_it_for_the_next_slot() -> None:
    """The default waker: aiocron's tick, spelled as the slot's instant in UTC, on the real clock."""
    stop = asyncio.Event()
    ran: list[tuple[datetime | None, CycleTrigger]] = []

    async def run_slot(slot: datetime | None, trigger: CycleTrigger) -> None:
        ran.append((slot, trigger))
        stop.set()

    async def record_slot(fate: SlotFate, outcome: CycleOutcome, reason: str) -> None:
        raise AssertionError("nothing is missed or coalesced here")

    async def ran_since(moment: datetime) -> bool:
        return False

    scheduler = Scheduler(settings("* * * * * *", "Pacific/Chatham"), run_slot, record_slot, ran_since, stop)
    await asyncio.wait_for(scheduler.run(), 10)
    [(slot, trigger)] = ran
    assert trigger is CycleTrigger.SCHEDULE
    assert slot is not None
    assert slot.utcoffset() == timedelta(0)
    assert slot.microsecond == 0
