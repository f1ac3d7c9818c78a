"""Scheduling decisions with explicit times: on time, overlap, suspend, clock jumps, daylight saving."""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cyberevents.schedule import (
    MAX_LISTED_SLOTS,
    Fate,
    ScheduleError,
    decide,
    due_slots,
    expand,
    next_slot,
    previous_slot,
)

UTC_ZONE = ZoneInfo("UTC")
NEW_YORK = ZoneInfo("America/New_York")
EVERY_30 = "*/30 * * * *"
GRACE = timedelta(seconds=300)


def at(hour: int, minute: int, second: float = 0) -> datetime:
    return datetime(2026, 11, 23, hour, minute, tzinfo=UTC) + timedelta(seconds=second)


def fates(after: datetime, now: datetime, schedule: str = EVERY_30) -> list[tuple[datetime, Fate, float]]:
    due, _ = due_slots(schedule, UTC_ZONE, after, now)
    return [(f.slot, f.fate, f.lateness.total_seconds()) for f in decide(due, now, GRACE)]


def test_an_on_time_tick_runs_its_slot() -> None:
    assert fates(after=at(11, 45), now=at(12, 0, 0.02)) == [(at(12, 0), Fate.RUN, 0.02)]


def test_a_tick_that_comes_early_runs_nothing() -> None:
    assert fates(after=at(11, 45), now=at(11, 59, 59.99)) == []


def test_slots_during_a_long_cycle_coalesce_into_one_catch_up() -> None:
    """A cycle started 12:00 and ended 13:02: 12:30 and 13:00 fell while it ran; 13:00 runs, 12:30 folds in."""
    assert fates(after=at(12, 0), now=at(13, 2)) == [
        (at(12, 30), Fate.COALESCED, 1920.0),
        (at(13, 0), Fate.RUN, 120.0),
    ]


def test_a_catch_up_later_than_the_grace_is_skipped_with_its_lateness() -> None:
    """The old system's 'missed by 9 minutes': now each skipped slot says how late it was."""
    assert fates(after=at(12, 0), now=at(12, 39)) == [(at(12, 30), Fate.MISSED, 540.0)]


def test_exactly_at_the_grace_still_runs() -> None:
    assert fates(after=at(12, 0), now=at(12, 35)) == [(at(12, 30), Fate.RUN, 300.0)]


def test_after_a_suspension_the_owed_slots_are_missed_not_replayed() -> None:
    """The laptop slept from 12:10 to 15:40: seven slots owed, none within the grace, none replayed."""
    result = fates(after=at(12, 10), now=at(15, 40))
    assert [fate for _, fate, _ in result] == [Fate.MISSED] * 7
    assert [slot for slot, _, _ in result] == [at(12, 30) + timedelta(minutes=30 * n) for n in range(7)]


def test_after_a_short_suspension_the_latest_slot_runs_once() -> None:
    result = fates(after=at(12, 10), now=at(13, 3))
    assert result == [(at(12, 30), Fate.COALESCED, 1980.0), (at(13, 0), Fate.RUN, 180.0)]


def test_a_clock_jumping_back_owes_nothing_and_runs_nothing_twice() -> None:
    """Handled up to 13:00; the clock jumps back to 12:20: nothing is due until after 13:00 again."""
    assert fates(after=at(13, 0), now=at(12, 20)) == []
    assert fates(after=at(13, 0), now=at(13, 0, 0.5)) == []
    assert fates(after=at(13, 0), now=at(13, 30, 0.1)) == [(at(13, 30), Fate.RUN, 0.1)]


def test_a_clock_jumping_forward_folds_the_jumped_slots_into_the_current_one() -> None:
    assert fates(after=at(12, 0, 1), now=at(14, 0, 1)) == [
        (at(12, 30), Fate.COALESCED, 5401.0),
        (at(13, 0), Fate.COALESCED, 3601.0),
        (at(13, 30), Fate.COALESCED, 1801.0),
        (at(14, 0), Fate.RUN, 1.0),
    ]


def test_a_clock_jumping_forward_between_slots_misses_them() -> None:
    assert [fate for _, fate, _ in fates(after=at(12, 0, 1), now=at(14, 10))] == [Fate.MISSED] * 4


def test_seconds_schedules_are_supported() -> None:
    due, dropped = due_slots("*/10 * * * * *", UTC_ZONE, at(12, 0), at(12, 0, 35))
    assert due == [at(12, 0, 10), at(12, 0, 20), at(12, 0, 30)]
    assert dropped == 0


def test_a_very_long_gap_lists_only_the_latest_slots() -> None:
    due, dropped = due_slots("* * * * * *", UTC_ZONE, at(0, 0), at(2, 0))
    assert len(due) == MAX_LISTED_SLOTS
    assert due[-1] == at(2, 0)
    assert dropped == 7200 - MAX_LISTED_SLOTS


def test_a_week_gap_is_counted_not_enumerated() -> None:
    """A suspended laptop: a week of a seconds schedule is counted by arithmetic, in milliseconds."""
    started = time.perf_counter()
    due, dropped = due_slots(
        "* * * * * *", NEW_YORK, datetime(2026, 3, 5, tzinfo=UTC), datetime(2026, 3, 12, tzinfo=UTC)
    )
    assert time.perf_counter() - started < 0.5
    assert len(due) + dropped == 7 * 86400  # a wildcard job runs every real second, the spring change included


def test_previous_and_next_slot() -> None:
    assert previous_slot(EVERY_30, UTC_ZONE, at(12, 40)) == at(12, 30)
    assert previous_slot(EVERY_30, UTC_ZONE, at(12, 30)) == at(12, 30)
    assert next_slot(EVERY_30, UTC_ZONE, at(12, 30)) == at(13, 0)
    assert next_slot(EVERY_30, UTC_ZONE, at(12, 29, 59.5)) == at(12, 30)


def test_daylight_saving_fall_back_runs_the_repeated_hour_once() -> None:
    """New York, 1 Nov 2026: 01:00-02:00 happens twice; a 01:30 job still has one slot that day."""
    after = datetime(2026, 11, 1, 0, 0, tzinfo=NEW_YORK)
    now = datetime(2026, 11, 1, 4, 0, tzinfo=NEW_YORK)
    due, _ = due_slots("30 1 * * *", NEW_YORK, after, now)
    assert len(due) == 1
    assert len({slot.astimezone(UTC) for slot in due}) == len(due)


def test_daylight_saving_fall_back_keeps_every_half_hour_slot_distinct() -> None:
    after = datetime(2026, 11, 1, 5, 0, tzinfo=UTC)  # 01:00 EDT
    now = datetime(2026, 11, 1, 7, 0, tzinfo=UTC)  # 02:00 EST, two real hours later
    due, _ = due_slots(EVERY_30, NEW_YORK, after, now)
    instants = [slot.astimezone(UTC) for slot in due]
    assert instants == sorted(set(instants))
    assert all(timedelta(0) < b - a <= timedelta(minutes=60) for a, b in itertools.pairwise(instants))


def test_daylight_saving_spring_forward_does_not_lose_the_skipped_slot() -> None:
    """New York, 8 Mar 2026: 02:00-03:00 does not exist; the 02:30 job runs at 03:00 instead of vanishing."""
    after = datetime(2026, 3, 8, 0, 0, tzinfo=NEW_YORK)
    now = datetime(2026, 3, 8, 4, 0, tzinfo=NEW_YORK)
    due, _ = due_slots("30 2 * * *", NEW_YORK, after, now)
    assert [slot.astimezone(UTC) for slot in due] == [datetime(2026, 3, 8, 7, 0, tzinfo=UTC)]


PARIS, CHATHAM, LORD_HOWE = ZoneInfo("Europe/Paris"), ZoneInfo("Pacific/Chatham"), ZoneInfo("Australia/Lord_Howe")


def local(zone: ZoneInfo, *fields: int, fold: int = 0) -> datetime:
    year, month, day, hour, minute = fields
    return datetime(year, month, day, hour, minute, tzinfo=zone, fold=fold).astimezone(UTC)


def test_the_second_pass_of_the_fold_runs_wildcard_jobs_and_loses_none() -> None:
    """New York, 1 Nov 2026: `0 * * * *` runs 01:00 EDT, 01:00 EST and 02:00 EST."""
    due, _ = due_slots("0 * * * *", NEW_YORK, local(NEW_YORK, 2026, 11, 1, 0, 30), local(NEW_YORK, 2026, 11, 1, 2, 30))
    assert due == [local(NEW_YORK, 2026, 11, 1, 1, 0), local(NEW_YORK, 2026, 11, 1, 1, 0, fold=1),
                   local(NEW_YORK, 2026, 11, 1, 2, 0)]  # fmt: skip


def test_from_the_second_pass_a_fixed_job_next_runs_tomorrow_not_in_the_past() -> None:
    moment = local(NEW_YORK, 2026, 11, 1, 1, 10, fold=1)
    assert next_slot("30 1 * * *", NEW_YORK, moment) == local(NEW_YORK, 2026, 11, 2, 1, 30)
    assert previous_slot("30 1 * * *", NEW_YORK, moment) == local(NEW_YORK, 2026, 11, 1, 1, 30)


def test_six_fields_follow_the_same_rules() -> None:
    spring = local(NEW_YORK, 2026, 3, 8, 1, 0), local(NEW_YORK, 2026, 3, 8, 4, 0)
    assert due_slots("0 30 2 * * *", NEW_YORK, *spring)[0] == [local(NEW_YORK, 2026, 3, 8, 3, 0)]
    autumn = local(NEW_YORK, 2026, 11, 1, 0, 0), local(NEW_YORK, 2026, 11, 1, 4, 0)
    assert due_slots("0 30 1 * * *", NEW_YORK, *autumn)[0] == [local(NEW_YORK, 2026, 11, 1, 1, 30)]
    listed, dropped = due_slots("*/10 * 1 * * *", NEW_YORK, *autumn)
    assert len(listed) + dropped == 2 * 360


def test_lord_howe_half_hour_fold_keeps_every_two_hours() -> None:
    """Lord Howe, 5 Apr 2026: 02:00 +11 becomes 01:30 +1030; `0 */2 * * *` still runs at 02:00 +1030."""
    due, _ = due_slots(
        "0 */2 * * *", LORD_HOWE, local(LORD_HOWE, 2026, 4, 4, 23, 0), local(LORD_HOWE, 2026, 4, 5, 3, 0)
    )
    assert due == [local(LORD_HOWE, 2026, 4, 5, 0, 0), local(LORD_HOWE, 2026, 4, 5, 2, 0)]


def test_chatham_previous_slot_terminates_and_is_not_after_now() -> None:
    for minutes in range(0, 240, 7):
        moment = datetime(2026, 4, 4, 13, 0, tzinfo=UTC) + timedelta(minutes=minutes)
        assert previous_slot("0 */2 * * *", CHATHAM, moment) <= moment < next_slot("0 */2 * * *", CHATHAM, moment)


def test_paris_previous_fixed_slot_in_the_fold_is_that_day() -> None:
    moment = local(PARIS, 2026, 10, 25, 2, 40, fold=1)
    assert previous_slot("30 2 * * *", PARIS, moment) == local(PARIS, 2026, 10, 25, 2, 30)


def test_beyond_the_calendar_a_clear_error_names_the_schedule_and_zone() -> None:
    with pytest.raises(ScheduleError, match=r"'0 0 1 1 \*'.*Europe/Paris"):
        next_slot("0 0 1 1 *", PARIS, datetime(9999, 6, 1, tzinfo=UTC))


def test_nicknames_are_debian_s() -> None:
    assert expand("@daily") == expand("@midnight") == "0 0 * * *"
    assert expand("@hourly") == "0 * * * *"
    assert next_slot("@weekly", UTC_ZONE, at(12, 0)) == datetime(2026, 11, 29, tzinfo=UTC)  # a Sunday
    assert next_slot("@yearly", UTC_ZONE, at(12, 0)) == next_slot("@annually", UTC_ZONE, at(12, 0))


@pytest.mark.parametrize(
    ("expression", "message"),
    [("0 0 L * *", "not Debian"), ("0 0 * * 5L", "not Debian"), ("0 0 * * MON#2", "not Debian"),
     ("0 0 30 2 *", "never runs"), ("5/15 * * * *", "a step needs a range"), ("@reboot", "unknown nickname")],
)  # fmt: skip
def test_what_debian_would_not_run_is_refused_in_one_line(expression: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        expand(expression)
    assert "\n" not in str(caught.value)


def test_a_one_value_range_with_a_step_is_that_value() -> None:
    assert next_slot("0 0-0/2 * * *", UTC_ZONE, at(0, 30)) == datetime(2026, 11, 24, tzinfo=UTC)
