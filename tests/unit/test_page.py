"""The status page's pure parts: chart geometry, the timeline, the words for a schedule, what configuration shows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cyberevents.charts import bars, sparkline
from cyberevents.generator import BENIGN
from cyberevents.ledger import CycleSummary, KindStat
from cyberevents.models import CycleOutcome, CycleTrigger, Difficulty, EventKind, Severity
from cyberevents.page import configuration, on_time, timeline_marks, trends
from cyberevents.schedule import describe
from cyberevents.scoring import ScenarioCounts, Scorecard
from cyberevents.settings import Settings

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def cycle(id: int, outcome: CycleOutcome, seconds: float | None, late: float = 0.0) -> CycleSummary:
    seed = None if outcome in (CycleOutcome.COALESCED, CycleOutcome.MISSED) else id
    started = AT + timedelta(minutes=30 * id, seconds=late)
    kinds = (KindStat(EventKind.LOGIN, 63, 63, 0, 1.0),) if seed else ()
    return CycleSummary(
        id, started - timedelta(seconds=late), CycleTrigger.SCHEDULE, started, seconds, seed, outcome, None, kinds
    )


def test_the_timeline_puts_the_newest_at_the_right_end_and_heights_by_duration() -> None:
    cycles = [
        cycle(3, CycleOutcome.SUCCEEDED, 10.0),
        cycle(2, CycleOutcome.MISSED, None),
        cycle(1, CycleOutcome.SUCCEEDED, 5.0),
    ]
    marks = timeline_marks(cycles)  # latest first, as the ledger gives them
    assert [mark[0].id for mark in marks] == [1, 2, 3]
    assert [x for _, x, _ in marks] == [941, 961, 981]  # 50 slots of 20: the newest in the last
    assert [height for _, _, height in marks] == [17.0, 6.0, 34.0]
    assert timeline_marks([]) == []
    assert timeline_marks([cycle(1, CycleOutcome.MISSED, None)])[0][2] == 6.0  # no duration: no division


def test_the_cycles_in_one_line() -> None:
    cycles = [cycle(3, CycleOutcome.PARTIAL, 9.0, late=2.5), cycle(2, CycleOutcome.MISSED, None, late=400.0)]
    cycles.append(cycle(1, CycleOutcome.SUCCEEDED, 9.0, late=0.5))
    assert on_time(cycles) == "the last 3: 1 succeeded, 1 partial, 1 missed; started at most 2.5 s after their slots"
    assert on_time([]) == ""


def test_a_sparkline_breaks_where_a_cycle_has_no_value_and_keeps_to_its_box() -> None:
    spark = sparkline([0.0, 1.0, None, 0.5, 2.0], width=100, height=20)
    assert spark.lines == ["0.0,18.0 25.0,2.0", "75.0,10.0 100.0,2.0"]  # a value over the top is drawn at the top
    assert spark.last == (100.0, 2.0)
    assert sparkline([None, 0.5, None, 1.0], width=90).lines == ["30.0,9.0 30.0,9.0", "90.0,2.0 90.0,2.0"]  # alone
    assert sparkline([]).last is None
    assert [(bar.label, bar.length) for bar in bars([("low", 10), ("high", 5), ("none", 0)], width=200)] == [
        ("low", 200.0),
        ("high", 100.0),
        ("none", 0.0),
    ]
    assert bars([("low", 0)])[0].length == 0.0


@pytest.mark.parametrize(
    ("schedule", "said"),
    [
        ("*/30 * * * *", "every 30 minutes, UTC time (*/30 * * * *)"),
        ("*/7 * * * *", "on the cron schedule */7 * * * *, UTC time"),  # not every 7 minutes across the hour
        ("5 * * * *", "every hour at minute 5, UTC time (5 * * * *)"),
        ("30 2 * * *", "every day at 02:30, UTC time (30 2 * * *)"),
        ("@daily", "every day at 00:00, UTC time (@daily)"),
        ("0 9 * * MON-FRI", "on the cron schedule 0 9 * * MON-FRI, UTC time"),
    ],
)
def test_a_schedule_in_words(schedule: str, said: str) -> None:
    assert describe(schedule, "UTC") == said


def test_the_configuration_shown_holds_no_secret() -> None:
    settings = Settings(
        _env_file=None,
        agent_url="https://user:pa55word@agent.example:8443/hook/t0ken?key=s3cret",
        agent_token="tok-never",
        database_url="postgresql://u:dbpa55@db/app",
    )
    shown = dict(configuration(settings).settings)
    assert shown["AGENT_URL"] == "https://agent.example:8443"
    text = repr(configuration(settings))
    assert all(secret not in text for secret in ("pa55word", "t0ken", "s3cret", "tok-never", "dbpa55"))


def test_the_agents_figures_follow_the_scored_cycles_and_a_scenario_missing_from_one_breaks_its_line() -> None:
    def card(flagged: int, with_exfiltration: bool) -> Scorecard:
        rows = [ScenarioCounts("brute_force", EventKind.LOGIN, 4, flagged, 0, 0, Difficulty.EVIDENT)]
        if with_exfiltration:
            rows.append(ScenarioCounts("exfiltration", EventKind.FIREWALL, 2, 1, 0, 0, Difficulty.SUBTLE))
        rows.append(ScenarioCounts(BENIGN, EventKind.LOGIN, 10, 1, 0, 0))
        return Scorecard(Severity.HIGH, tuple(rows), (), {})

    shown = {trend.name: trend for trend in trends({1: ("a", card(4, True)), 2: ("a", card(2, False))})}
    assert shown["recall"].values == [5 / 6, 2 / 4]
    assert shown["false-positive rate"].values == [0.1, 0.1]
    assert shown["brute_force (login, evident)"].values == [1.0, 0.5]
    assert shown["brute_force (login, evident)"].detail == "2/4 flagged"
    assert shown["exfiltration (firewall, subtle)"].values == [0.5, None]
    assert shown["exfiltration (firewall, subtle)"].detail == "none in the latest cycle"
    assert list(shown)[:5] == ["recall", "recall, evident", "recall, subtle", "false-positive rate", "precision"]
