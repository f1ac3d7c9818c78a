"""Differential tests: slot arithmetic and the Scheduler against the Debian cron model of tests/cron_model.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cyberevents.models import CycleTrigger
from cyberevents.schedule import MAX_LISTED_SLOTS, ON_TIME, count_slots, due_slots, next_slot, previous_slot
from tests.cron_model import debian_slots
from tests.sim_clock import simulate

ZONES = ["America/New_York", "Europe/Paris", "Australia/Lord_Howe", "Pacific/Chatham", "Asia/Kolkata", "UTC"]


def _changes(name: str) -> list[datetime]:
    """The zone's changes of offset in 2026 and 2027 (or a few plain instants for zones without any)."""
    zone, found = ZoneInfo(name), []
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    offset = moment.astimezone(zone).utcoffset()
    while moment < datetime(2028, 1, 1, tzinfo=UTC):
        later = moment + timedelta(minutes=15)
        if later.astimezone(zone).utcoffset() != offset:
            offset = later.astimezone(zone).utcoffset()
            found.append(later)
        moment = later
    return found or [datetime(2026, 3, 8, 7, tzinfo=UTC), datetime(2026, 11, 1, 6, tzinfo=UTC)]


CHANGES = [(ZoneInfo(name), change) for name in ZONES for change in _changes(name)]


def _item(low: int, high: int, hot: list[int]) -> st.SearchStrategy[str]:
    number = st.one_of(st.sampled_from(hot), st.integers(low, high)) if hot else st.integers(low, high)
    step = st.integers(2, max(2, (high - low) // 2))
    span = st.tuples(number, number).map(lambda ab: f"{min(ab)}-{max(ab)}")
    return st.one_of(
        st.just("*"), number.map(str), span, st.builds("*/{}".format, step),
        st.builds("{}/{}".format, span, step),
    )  # fmt: skip


def _field(low: int, high: int, hot: list[int] | None = None) -> st.SearchStrategy[str]:
    return st.lists(_item(low, high, hot or []), min_size=1, max_size=3).map(",".join)


EXPRESSIONS = st.builds(
    lambda seconds, minute, hour, dom, dow: " ".join([*seconds, minute, hour, dom, "*", dow]),
    st.one_of(st.just([]), _field(0, 59, [0, 30]).map(lambda f: [f])),
    _field(0, 59, [0, 15, 30, 45]),
    _field(0, 23, [0, 1, 2, 3]),
    st.one_of(st.just("*"), st.just("*"), _field(1, 31)),
    st.one_of(st.just("*"), st.just("*"), _field(0, 7), st.sampled_from(["MON-FRI", "SUN", "SAT,SUN"])),
)
PLACES = st.sampled_from(CHANGES)
NEAR = st.integers(-3 * 3600, 3 * 3600)


def _window(expression: str, change: datetime) -> tuple[datetime, datetime]:
    reach = timedelta(hours=2) if len(expression.split()) == 6 else timedelta(days=1)
    return change - reach, change + reach


@pytest.mark.slow  # hundreds of generated schedules
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EXPRESSIONS, PLACES, st.lists(NEAR, min_size=4, max_size=12))
def test_next_and_previous_slot_agree_with_debian(
    expression: str, place: tuple[ZoneInfo, datetime], shifts: list[int]
) -> None:
    zone, change = place
    start, end = _window(expression, change)
    model = debian_slots(expression, zone, start, end)
    reach = (end - start) / 2 - timedelta(minutes=1)
    for shift in shifts:
        moment = change + min(max(timedelta(seconds=shift), -reach), reach) + timedelta(microseconds=shift % 7 * 1000)
        after = [slot for slot in model if slot > moment]
        upto = [slot for slot in model if slot <= moment]
        following = next_slot(expression, zone, moment)
        assert following == after[0] if after else following >= end, (moment, expression)
        latest = previous_slot(expression, zone, moment)
        assert latest == upto[-1] if upto else latest < start, (moment, expression)


@pytest.mark.slow  # hundreds of generated schedules
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EXPRESSIONS, PLACES, NEAR, NEAR)
def test_owed_slots_agree_with_debian(expression: str, place: tuple[ZoneInfo, datetime], one: int, two: int) -> None:
    zone, change = place
    start, end = _window(expression, change)
    model = debian_slots(expression, zone, start, end)
    reach = (end - start) / 2 - timedelta(minutes=1)
    after, now = sorted(change + min(max(timedelta(seconds=s), -reach), reach) for s in (one, two))
    owed = [slot for slot in model if after < slot <= now]
    assert count_slots(expression, zone, after, now) == len(owed)
    listed, dropped = due_slots(expression, zone, after, now)
    assert listed == owed[-MAX_LISTED_SLOTS:]
    assert dropped == len(owed) - len(listed)


@pytest.mark.slow  # hundreds of generated schedules
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(EXPRESSIONS, PLACES, st.lists(st.sampled_from([0, 0, 1, 20, 400, 3600]), min_size=1, max_size=20))
def test_the_scheduler_across_a_change_loses_nothing_doubles_nothing_and_never_wakes_in_the_past(
    expression: str, place: tuple[ZoneInfo, datetime], durations: list[int]
) -> None:
    zone, change = place
    six = len(expression.split()) == 6
    reach = timedelta(minutes=80) if six else timedelta(hours=3)
    durations = [min(d, 60) if six else d for d in durations]  # fewer owed at once than are listed one by one
    start, end = change - reach, change + reach
    model = [slot for slot in debian_slots(expression, zone, start, end) if slot > start]
    seen = asyncio.run(simulate(expression, zone.key, start, end, durations))
    assert all(asked > at for at, asked in seen.wakes)  # no wake-up in the past, hence no busy loop
    assert len(seen.settled) == len(set(seen.settled))  # none doubled
    assert [slot for slot in seen.settled if slot < end] == model  # none lost
    assert all(trigger is CycleTrigger.CATCH_UP or late <= ON_TIME for _, trigger, late in seen.ran)
    if not any(durations):  # cycles that take no time: every slot runs on time, in order
        assert [(slot, trigger) for slot, trigger, _ in seen.ran if slot < end] == [
            (slot, CycleTrigger.SCHEDULE) for slot in model
        ]
