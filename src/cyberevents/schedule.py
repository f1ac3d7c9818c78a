"""Slots as UTC instants under Debian cron's daylight-saving rules, and what each wake-up owes.

aiocron only wakes the daemon; what is owed is decided here from the wall clock, so a late tick, a suspension, a
clock jump or a long cycle get the same rules (README, "The daemon"). cronsim only matches fields on naive wall
times; turning them into instants across a zone's changes is done here. Every loop has a hard bound.
"""

from __future__ import annotations

import enum
import functools
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

# A slot answered later than this counts as a catch-up rather than an on-time tick.
ON_TIME = timedelta(seconds=1)
# After a long suspension a seconds schedule can owe thousands of slots; only the latest are listed.
MAX_LISTED_SLOTS = 100
# Debian's cron settles a clock change by its size: small jumps replay everything, large ones nothing.
SMALL_JUMP, LARGE_CHANGE = timedelta(minutes=4), timedelta(hours=3)
# Hard bounds: wall times inspected per search, the span counted, and how soon a valid schedule must first run.
MAX_STEPS, MAX_COUNTED, YEARS_AHEAD = 1000, timedelta(days=36_600), 10
NICKNAMES = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0"}
NICKNAMES |= {"@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *"}
_SECOND, _TICK = timedelta(seconds=1), timedelta(microseconds=1)


class ScheduleError(ValueError):
    """A schedule that cannot be computed within the hard bounds, named with its zone."""


class Fate(enum.StrEnum):
    RUN, COALESCED, MISSED = "run", "coalesced", "missed"


@dataclass(frozen=True, slots=True)
class SlotFate:
    slot: datetime
    fate: Fate
    lateness: timedelta


def expand(expression: str) -> str:
    """The fields of an expression, nicknames spelled out; a one-line ValueError if it is not one cron runs."""
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text.lower() not in NICKNAMES:
            raise ValueError(f"unknown nickname {text!r}; known: {', '.join(NICKNAMES)}")
        return NICKNAMES[text.lower()]
    if re.search(r"#|\?|\bL|\dL", text.upper()):
        raise ValueError("L, LW, #, ? are not Debian cron syntax; list the days instead, e.g. '0 9 1-7 * MON'")
    if re.search(r"(^|[ ,])\w+/", text):
        raise ValueError("a step needs a range or '*' before it, e.g. '5-59/15' rather than '5/15'")
    text = re.sub(r"\b(\w+)-\1/\d+\b", r"\1", text)  # cronsim reads a one-value range with a step as 'a/n'
    try:
        first = next(CronSim(text, datetime.now(UTC).replace(tzinfo=None)), None)
    except CronSimError as exc:
        if str(exc) == "Bad day-of-month" and re.fullmatch(r"[\d,-]+", text.split()[-3]):
            raise ValueError(f"{text!r} never runs: no month it names has such a day") from None
        raise ValueError(f"not a cron expression ({exc})") from None
    if first is None or first.year > datetime.now(UTC).year + YEARS_AHEAD:
        raise ValueError(f"{text!r} has no slot in the next {YEARS_AHEAD} years")
    return text


@dataclass(frozen=True, slots=True)
class _Cron:
    text: str
    match: CronSim  # day and month matching only
    hours: tuple[int, ...]
    minutes: tuple[int, ...]
    seconds: tuple[int, ...]
    wildcard: bool  # Debian's MIN_STAR / HR_STAR, and a leading `*` in a seconds field

    def matches(self, wall: datetime) -> bool:
        hms = wall.hour in self.hours and wall.minute in self.minutes and wall.second in self.seconds
        return hms and self.day(wall.date())

    def day(self, day: date) -> bool:
        return day.month in self.match.months and self.match.match_day(day)

    def upto(self, wall: datetime) -> int:
        """How many matching times of day fall at or before this wall time's time of day."""
        count = bisect_left(self.hours, wall.hour) * len(self.seconds) * len(self.minutes)
        if wall.hour in self.hours:
            count += bisect_left(self.minutes, wall.minute) * len(self.seconds)
            if wall.minute in self.minutes:
                count += bisect_right(self.seconds, wall.second)
        return count


@functools.lru_cache(maxsize=32)
def _parse(schedule: str) -> _Cron:
    text = expand(schedule)
    match, fields = CronSim(text, datetime(2000, 1, 1)), text.split()
    starred = fields[: len(fields) - 3]  # minute and hour, and seconds if given
    return _Cron(
        text,
        match,
        tuple(sorted(match.hours)),
        tuple(sorted(match.minutes)),
        tuple(sorted(match.seconds)),
        any(field.startswith("*") for field in starred),
    )


@dataclass(frozen=True, slots=True)
class _Place:
    """Where a wall time falls: `early`/`late` are its instants (a gap's are the jump's)."""

    kind: str  # "normal", "fold" or "gap"
    early: datetime
    late: datetime
    start: datetime  # wall times of the fold or gap: [start, end)
    end: datetime
    size: timedelta

    def instants(self, wildcard: bool) -> list[datetime]:
        """Debian's rule: folds run fixed jobs once, gaps run them at the jump; wildcard jobs follow real time."""
        if self.kind == "normal":
            return [self.early]
        if self.kind == "fold":
            return [self.early, self.late] if wildcard or self.size > LARGE_CHANGE else [self.early]
        if self.size >= LARGE_CHANGE or (wildcard and self.size > SMALL_JUMP):
            return []
        return [self.early]


def _offset(instant: datetime, zone: ZoneInfo) -> timedelta:
    return instant.astimezone(zone).utcoffset() or timedelta(0)


def _turn(zone: ZoneInfo, low: datetime, high: datetime) -> datetime:
    """The first whole second in (low, high] with high's offset: the zone's change between them."""
    target = _offset(high, zone)
    low, high = low.replace(microsecond=0), high.replace(microsecond=0) + (_SECOND if high.microsecond else _TICK * 0)
    for _ in range(64):
        if high - low <= _SECOND:
            return high
        middle = low + ((high - low) // 2 // _SECOND) * _SECOND
        if _offset(middle, zone) == target:
            high = middle
        else:
            low = middle
    raise ScheduleError(f"cannot find the change of offset in {zone} between {low} and {high}")


def _place(wall: datetime, zone: ZoneInfo) -> _Place:
    first, second = (wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1))
    if first == second:
        return _Place("normal", first, first, wall, wall, timedelta(0))
    low, high = min(first, second), max(first, second)
    turn = _turn(zone, low, high)
    before, after = _offset(low, zone), _offset(turn, zone)
    naive = turn.replace(tzinfo=None)
    if first < second:
        return _Place("fold", first, second, naive + after, naive + before, before - after)
    return _Place("gap", turn, turn, naive + before, naive + after, after - before)


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _search(schedule: str, zone: ZoneInfo, moment: datetime, forward: bool) -> datetime:
    try:
        return _bounded_search(_parse(schedule), zone, moment.astimezone(UTC), forward)
    except OverflowError:
        raise ScheduleError(
            f"no slot of {schedule!r} in {zone} near {moment.isoformat()}: out of the calendar"
        ) from None


def _bounded_search(cron: _Cron, zone: ZoneInfo, moment: datetime, forward: bool) -> datetime:
    wall = _wall(moment, zone)
    here = _place(wall, zone)
    best: datetime | None = None
    # A fold is the one place where instants do not follow wall times: the other pass may come first.
    if (
        here.kind == "fold"
        and (moment < here.late) == forward
        and (len(here.instants(cron.wildcard)) == 2 or not forward)
    ):
        best = _other_pass(cron, zone, here, forward)
    try:
        walls = CronSim(cron.text, wall if forward else wall + _TICK, not forward)
        for _ in range(MAX_STEPS):
            place = _place(next(walls), zone)
            found = [i for i in place.instants(cron.wildcard) if (i > moment if forward else i <= moment)]
            if found:
                pick = min(found) if forward else max(found)
                if best is None:
                    return pick
                return min(best, pick) if forward else max(best, pick)
            if place.kind != "normal":
                walls = CronSim(cron.text, place.end - _SECOND if forward else place.start, not forward)
    except (StopIteration, OverflowError):
        pass
    if best is not None:
        return best
    where = f"{'after' if forward else 'at or before'} {moment.isoformat()}"
    raise ScheduleError(f"no slot of {cron.text!r} in {zone} {where} within the search's bounds")


def _other_pass(cron: _Cron, zone: ZoneInfo, fold: _Place, forward: bool) -> datetime | None:
    """The first slot in a fold's second pass, or the last in its first pass."""
    try:
        wall = next(CronSim(cron.text, fold.start - _SECOND if forward else fold.end, not forward))
    except (StopIteration, OverflowError):
        return None
    if not fold.start <= wall < fold.end:
        return None
    place = _place(wall, zone)
    return place.late if forward else place.early


def describe(schedule: str, zone: str) -> str:
    """The common schedules in words (an interval that divides the hour, a minute of the hour, a time of day), the
    others as their expression; always with the time zone."""
    fields = expand(schedule).split()
    said = None
    if len(fields) == 5 and fields[1:] == ["*"] * 4:
        if (every := re.fullmatch(r"\*/(\d+)", fields[0])) and 60 % int(every[1]) == 0:
            said = f"every {every[1]} minutes"
        elif fields[0].isdigit():
            said = f"every hour at minute {fields[0]}"
    elif len(fields) == 5 and fields[2:] == ["*"] * 3 and fields[0].isdigit() and fields[1].isdigit():
        said = f"every day at {int(fields[1]):02d}:{int(fields[0]):02d}"
    return f"{said}, {zone} time ({schedule})" if said else f"on the cron schedule {schedule}, {zone} time"


def next_slot(schedule: str, zone: ZoneInfo, after: datetime) -> datetime:
    """The first slot strictly after `after`, in UTC: never in the past, so nothing waits on it twice."""
    return _search(schedule, zone, after, forward=True)


def previous_slot(schedule: str, zone: ZoneInfo, now: datetime) -> datetime:
    """The latest slot at or before `now`, in UTC."""
    return _search(schedule, zone, now, forward=False)


def count_slots(schedule: str, zone: ZoneInfo, after: datetime, upto: datetime) -> int:
    """How many slots fall in (after, upto], by arithmetic on whole days rather than one by one."""
    cron = _parse(schedule)
    after, upto = after.astimezone(UTC), upto.astimezone(UTC)
    after = max(after, upto - MAX_COUNTED)
    here = _place(_wall(after, zone), zone)
    fold = here if here.kind == "fold" and after >= here.late else None
    total, start = 0, _wall(after, zone)
    for turn in [*_turns(zone, after, upto), None]:
        end = _wall(upto if turn is None else turn - _TICK, zone)
        if fold is not None and len(fold.instants(cron.wildcard)) == 1:
            start = max(start, fold.end - _TICK)
        total += _count_walls(cron, start, end)
        if turn is None:
            return total
        before, now = _offset(turn - _SECOND, zone), _offset(turn, zone)
        naive = turn.replace(tzinfo=None)
        place = _place(naive + min(before, now), zone)
        fold = place if place.kind == "fold" else None
        if place.kind == "gap" and place.instants(cron.wildcard) and not cron.matches(place.end):
            total += _count_walls(cron, place.start - _TICK, place.end - _SECOND) > 0
        start = naive + now - _TICK
    return total


def _turns(zone: ZoneInfo, after: datetime, upto: datetime) -> list[datetime]:
    """The zone's changes in (after, upto], found by looking at its offset once a day."""
    turns, low = [], after
    while low < upto:
        high = min(low + timedelta(days=1), upto)
        if _offset(high, zone) != _offset(low, zone):
            turns.append(_turn(zone, low, high))
        low = high
    return turns


def _count_walls(cron: _Cron, start: datetime, end: datetime) -> int:
    """Matching wall times in (start, end]."""
    if end <= start:
        return 0
    total, day = 0, start.date()
    per_day = len(cron.hours) * len(cron.minutes) * len(cron.seconds)
    while day <= end.date():
        if cron.day(day):
            top = cron.upto(end) if day == end.date() else per_day
            bottom = cron.upto(start) if day == start.date() else 0
            total += top - bottom
        day += timedelta(days=1)
    return total


def due_slots(schedule: str, zone: ZoneInfo, after: datetime, now: datetime) -> tuple[list[datetime], int]:
    """Slots in (after, now], oldest first: at most MAX_LISTED_SLOTS of the latest, and how many were left out."""
    slots: list[datetime] = []
    moment = now
    while len(slots) < MAX_LISTED_SLOTS:
        slot = previous_slot(schedule, zone, moment)
        if slot <= after:
            return slots[::-1], 0
        slots.append(slot)
        moment = slot - _TICK
    return slots[::-1], count_slots(schedule, zone, after, moment)


def decide(due: list[datetime], now: datetime, grace: timedelta) -> list[SlotFate]:
    """The fate of each due slot: the latest runs if it can start within `grace`, the others fold into it."""
    if due and now - due[-1] > grace:
        return [SlotFate(slot, Fate.MISSED, now - slot) for slot in due]
    return [SlotFate(slot, Fate.COALESCED if slot != due[-1] else Fate.RUN, now - slot) for slot in due]
