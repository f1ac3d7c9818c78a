"""A model of Debian cron, from its cron.c main loop and entry.c parser, for the differential schedule tests.

The model, stated (and written independently of cronsim and of cyberevents.schedule):
- Fields: `*`, `n`, `a-b`, each with an optional `/step`, comma lists; month and weekday names; weekday 7 is
  Sunday. Day of month and day of week are ORed, unless either field starts with `*`, then ANDed.
  Five fields run at second 0; six fields put seconds first and make the loop below tick every second.
- An entry is *wildcard* when its minute or hour field (or, with six fields, its seconds field) starts with `*`.
- The loop wakes at every tick of real time. `clock` is the local wall time in ticks; `virtual` the last local
  tick it settled. With diff = clock - virtual (in ticks of u seconds):
  diff == 1: every entry matching `clock` runs (the usual case);
  0 < diff, (diff - 1)·u <= 4 min: every entry, for each tick virtual+1 .. clock;
  0 < diff, (diff - 1)·u < 3 h: wildcard entries for `clock`, fixed ones for each tick virtual+1 .. clock;
  diff <= 0, (1 - diff)·u <= 3 h: wildcard entries for `clock`, and `virtual` stays (the clock went back);
  otherwise: every entry matching `clock`, and `virtual` jumps to `clock`.
- A job started several times at one instant (several skipped ticks matched) is one slot: slots are instants.
- For speed, five minutes whose offset is the same at both ends (and at the tick before) is taken as having no change,
  so the usual case holds for each of its ticks; the zones tested change their offset months apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
EPOCH = datetime(1970, 1, 1)


def _number(text: str, names: list[str], first: int) -> int:
    return names.index(text.upper()) + first if text.upper() in names else int(text)


def _field(text: str, low: int, high: int, names: list[str] | None = None) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        span, _, step = item.partition("/")
        if span == "*":
            start, end = low, high
        elif "-" in span:
            a, b = span.split("-")
            start, end = _number(a, names or [], low), _number(b, names or [], low)
        else:
            start = end = _number(span, names or [], low)
        values.update(range(start, end + 1, int(step) if step else 1))
    return values


@dataclass(frozen=True)
class Entry:
    seconds: set[int]
    minutes: set[int]
    hours: set[int]
    doms: set[int]
    months: set[int]
    dows: set[int]
    day_and: bool
    wildcard: bool
    six: bool

    @classmethod
    def parse(cls, expression: str) -> Entry:
        fields = expression.split()
        six = len(fields) == 6
        seconds = _field(fields[0], 0, 59) if six else {0}
        minute, hour, dom, month, dow = fields[-5:]
        dows = {d % 7 for d in _field(dow, 0, 7, DAYS)}
        starred = [minute, hour] + ([fields[0]] if six else [])
        return cls(
            seconds, _field(minute, 0, 59), _field(hour, 0, 23), _field(dom, 1, 31), _field(month, 1, 12, MONTHS),
            dows, dom.startswith("*") or dow.startswith("*"), any(f.startswith("*") for f in starred), six,
        )  # fmt: skip

    def day(self, day: date) -> bool:
        dom, dow = day.day in self.doms, (day.weekday() + 1) % 7 in self.dows
        return day.month in self.months and ((dom and dow) if self.day_and else (dom or dow))

    def matches(self, wall: datetime) -> bool:
        hms = wall.second in self.seconds and wall.minute in self.minutes and wall.hour in self.hours
        return hms and self.day(wall.date())


def debian_slots(expression: str, zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """The instants in [start, end) at which the model starts the job; `start` should be away from any change."""
    entry = Entry.parse(expression)
    unit = 1 if entry.six else 60
    step = timedelta(seconds=unit)

    def local(instant: datetime) -> int:
        wall = instant.astimezone(zone).replace(tzinfo=None)
        return int((wall - EPOCH).total_seconds()) // unit

    def runs(tick: int, wild: bool, fixed: bool) -> bool:
        return (wild if entry.wildcard else fixed) and entry.matches(EPOCH + tick * step)

    moment = datetime.fromtimestamp(start.timestamp() // unit * unit, UTC)
    moment += step if moment < start else timedelta(0)
    virtual = local(moment - step)
    slots: list[datetime] = []
    small, large = timedelta(minutes=4), timedelta(hours=3)
    while moment < end:
        stretch = min(moment + timedelta(minutes=5), end)
        offsets = {(instant.astimezone(zone).utcoffset()) for instant in (moment - step, moment, stretch)}
        if len(offsets) == 1 and local(moment) - virtual == 1:
            wall = moment.astimezone(zone).replace(tzinfo=None, microsecond=0)
            base, first = moment - timedelta(seconds=wall.second), wall.replace(second=0)
            for minute in range(int((stretch - base) / timedelta(minutes=1)) + 1):
                top = first + timedelta(minutes=minute)
                if top.minute in entry.minutes and top.hour in entry.hours and entry.day(top.date()):
                    for second in sorted(entry.seconds):
                        when = base + timedelta(minutes=minute, seconds=second)
                        if moment <= when < stretch:
                            slots.append(when)
            virtual, moment = local(stretch - step), stretch
            continue
        clock = local(moment)
        diff = clock - virtual
        if diff == 1:
            fired, virtual = runs(clock, True, True), clock
        elif diff > 0 and (diff - 1) * step <= small:
            fired = any(runs(tick, True, True) for tick in range(virtual + 1, clock + 1))
            virtual = clock
        elif diff > 0 and (diff - 1) * step < large:
            fired = runs(clock, True, False) or any(runs(t, False, True) for t in range(virtual + 1, clock + 1))
            virtual = clock
        elif diff <= 0 and (1 - diff) * step <= large:
            fired = runs(clock, True, False)
        else:
            fired, virtual = runs(clock, True, True), clock
        if fired:
            slots.append(moment)
        moment += step
    return slots
