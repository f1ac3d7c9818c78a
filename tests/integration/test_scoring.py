"""A cycle's scorecard, from the database, against an independent count of the same events."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from cyberevents import report, repository
from cyberevents.agent_client import MAX_VERSION
from cyberevents.cycle import CycleRequest, CycleResult, run_cycle
from cyberevents.db import session_factory
from cyberevents.generator import BENIGN, Counts
from cyberevents.models import Difficulty, Severity
from cyberevents.resources import open_service
from cyberevents.retention import prune
from cyberevents.scoring import flagging, scorecard
from cyberevents.service import Daemon
from cyberevents.tally import Tally
from tests.agents import Responder, bundled_rules, raw_agent, recording_agent
from tests.conftest import MakeSettings
from tests.integration.test_daemon import daemon_settings, get, running
from tests.support import wait_until

FLAGGED = {"high", "critical"}


def rules_but_every_seventh_fails(request: dict[str, Any]) -> web.Response:
    """The bundled agent's own rules, and a 500 for every seventh event: failed events to count apart."""
    if request["event_id"] % 7 == 0:
        return web.Response(status=500, text="down")
    return bundled_rules(request)


async def test_the_scorecard_matches_an_independent_count(make_settings: MakeSettings, engine: AsyncEngine) -> None:
    async with (
        recording_agent(respond=rules_but_every_seventh_fails) as agent,
        open_service(
            make_settings(generator_seed=7, agent_url=agent.url, agent_max_retries=0, dispatch_workers=4)
        ) as resources,
    ):
        request = CycleRequest(Counts(63, 319, 52))

        def stop_after_300(progress: Tally) -> None:
            if progress.done >= 300:
                request.stop.set()  # the rest stays pending: counted apart too

        request.tally.listeners.append(stop_after_300)
        result = await run_cycle(resources, request)
    assert result is not None

    async with session_factory(engine)() as session:
        found = await repository.score_counts(session, [result.cycle_id], flagging(Severity.HIGH))
        rows = (
            await session.execute(
                text(
                    """
                    SELECT g.scenario, e.kind, g.difficulty, e.status, a.severity, a.score, g.campaign, e.occurred_at
                    FROM events e JOIN ground_truth g ON g.event_id = e.id
                    LEFT JOIN event_analyses a ON a.event_id = e.id
                    """
                )
            )
        ).all()
    card = scorecard(Severity.HIGH, *found)

    expected: Counter[tuple[str, str, str, str]] = Counter()
    scores: Counter[tuple[bool, int]] = Counter()
    first: dict[str, Any] = {}
    first_flagged: dict[str, Any] = {}
    for scenario, kind, difficulty, status, severity, points, campaign, at in rows:
        answered = status == "analysed"
        flagged = answered and severity in FLAGGED
        outcome = "flagged" if flagged else "answered" if answered else "pending" if status == "pending" else "failed"
        expected[scenario, kind, difficulty, outcome] += 1
        if answered:
            scores[scenario != BENIGN, points] += 1
        if campaign is not None:
            first[campaign] = min(first.get(campaign, at), at)
            if flagged:
                first_flagged[campaign] = min(first_flagged.get(campaign, at), at)

    for row in card.scenarios:
        key = (row.scenario, row.kind.value, row.difficulty.value)
        assert row.flagged == expected[*key, "flagged"]
        assert row.answered == expected[*key, "flagged"] + expected[*key, "answered"]
        assert row.failed == expected[*key, "failed"]
        assert row.pending == expected[*key, "pending"]
    assert sum(r.answered + r.failed + r.pending for r in card.scenarios) == len(rows) == 434
    assert sum(r.failed for r in card.scenarios) > 0 and sum(r.pending for r in card.scenarios) > 0
    assert dict(scores) == found[2]
    assert {c.campaign: (c.first_event_at, c.first_flagged_at) for c in card.campaigns} == {
        campaign: (at, first_flagged.get(campaign)) for campaign, at in first.items()
    }
    assert card.recall is not None and card.false_positive_rate is not None and card.roc_auc is not None


async def test_the_daemon_shows_the_last_scorecard_in_status_and_metrics(make_settings: MakeSettings) -> None:
    async with recording_agent(respond=bundled_rules) as agent:
        settings = daemon_settings(
            make_settings, agent.url, run_on_start=True, schedule="0 0 1 1 *", dispatch_workers=10,
            login_events=63, firewall_events=319, patch_events=52,
        )  # fmt: skip
        daemon = Daemon(settings, asyncio.Event())
        async with running(daemon):
            await wait_until(lambda: daemon.state.last is not None, within=60)
            last = daemon.state.last
            assert last is not None and last.score is not None
            _, status = await get(f"{daemon.health_url}/status")
            _, exposition = await get(f"{daemon.health_url}/metrics")
    card = last.score
    assert status["last_cycle"]["score"] == json.loads(json.dumps(card.as_json()))
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }
    assert samples["cyberevents_score", (("figure", "recall"),)] == card.recall
    assert samples["cyberevents_score", (("figure", "roc_auc"),)] == card.roc_auc
    for row in card.scenarios:
        labels = (("difficulty", row.difficulty.value), ("kind", row.kind.value), ("scenario", row.scenario))
        assert samples["cyberevents_score_flag_rate", labels] == row.flag_rate
    assert {row.scenario for row in card.scenarios} >= {"brute_force", "port_scan", "unpatched_critical", "benign"}


def blind(request: dict[str, Any]) -> web.Response:
    """An agent that sees nothing: every event low."""
    return web.json_response({"severity": "low", "score": 5, "summary": "nothing to see"})


async def scored_cycle(make_settings: MakeSettings, respond: Responder, **settings: Any) -> CycleResult:
    async with (
        recording_agent(respond=respond) as agent,
        open_service(make_settings(agent_url=agent.url, generator_seed=7, **settings)) as resources,
    ):
        result = await run_cycle(resources, CycleRequest(Counts(63, 319, 52), seed=7))  # the same events each time
    assert result is not None and result.score is not None
    return result


async def test_a_later_cycle_brings_an_earlier_scorecard_up_to_date(
    make_settings: MakeSettings, engine: AsyncEngine
) -> None:
    first = await scored_cycle(make_settings, rules_but_every_seventh_fails, agent_max_retries=0)
    kept = await report.kept_scorecards(engine, [first.cycle_id], 1)
    assert kept[first.cycle_id][1] == first.score and sum(row.failed for row in first.score.scenarios) > 0

    await scored_cycle(make_settings, bundled_rules, agent_label="rules v2")  # redelivers the failed events
    kept = await report.kept_scorecards(engine, None, 2)
    agent, now = kept[first.cycle_id]
    assert sum(row.failed for row in now.scenarios) == 0
    assert sum(row.answered for row in now.scenarios) == 434
    assert agent == "127.0.0.1"  # the agent that first answered for it: its leftovers do not relabel it
    async with session_factory(engine)() as session:
        live = scorecard(
            Severity.HIGH, *await repository.score_counts(session, [first.cycle_id], flagging(Severity.HIGH))
        )
    assert now == live


async def test_two_agents_compare_per_scenario(make_settings: MakeSettings, engine: AsyncEngine) -> None:
    rules = await scored_cycle(make_settings, bundled_rules)
    seeing_nothing = await scored_cycle(make_settings, blind)
    spans = [(rules.cycle_id, rules.cycle_id), (seeing_nothing.cycle_id, seeing_nothing.cycle_id)]
    lines = report.render_comparison(await report.kept_spans(engine, spans), as_json=False).splitlines()
    assert lines[0].split() == ["cycle", f"#{rules.cycle_id}", "cycle", f"#{seeing_nothing.cycle_id}", "change"]
    [brute_force] = [line for line in lines if line.startswith("brute_force (login, evident)")]
    assert brute_force.split()[-2].startswith("-")  # recall fell, on the same events
    assert rules.score is not None
    [by_rules] = [row for row in rules.score.scenarios if row.name == "brute_force (login, evident)"]
    flagged_by_rules, answered = by_rules.flagged, by_rules.answered
    expected = [f"{flagged_by_rules}/{answered}", f"{flagged_by_rules / answered:.1%}", f"0/{answered}", "0.0%"]
    assert brute_force.split()[3:7] == expected
    [recall] = [line for line in lines if line.startswith("recall")]
    assert rules.score is not None and rules.score.recall is not None
    assert recall.split()[-2:] == [f"{-rules.score.recall * 100:+.1f}", "pts"]
    kept = await report.kept_scorecards(engine, [rules.cycle_id, seeing_nothing.cycle_id], 1)
    combined = json.loads(report.render_scorecards(kept, as_json=True))
    assert combined["cycles"] == [rules.cycle_id, seeing_nothing.cycle_id]
    assert sum(row["answered"] for row in combined["scenarios"]) == 868  # summed over events, both cycles


async def test_the_version_an_agent_reports_is_kept_clean_with_its_scorecard(
    make_settings: MakeSettings, engine: AsyncEngine
) -> None:
    """The header is the agent's to fill (raw bytes here, which no HTTP server library would send): control
    characters dropped, an echoed token redacted even when a control character splits it, the length capped."""
    token = "tok-Version-7Hq"
    body = b'{"severity": "high", "score": 80, "summary": "odd"}'

    def answer(authorization: str) -> bytes:
        split = f"{authorization[:12]}\x07{authorization[12:]}"  # a control character inside the token
        version = f"v2.1\x1b[31m\x07 {split} ".encode() + b"x" * 500
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Agent-Version: " + version
            + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )  # fmt: skip

    async with raw_agent() as agent:
        agent.answer = answer
        settings = make_settings(agent_url=agent.url, agent_token=token, agent_label="triage", dispatch_workers=2)
        async with open_service(settings) as resources:
            result = await run_cycle(resources, CycleRequest(Counts(3, 3, 3)))
    assert result is not None and result.analysed == 9
    [(label, _)] = (await report.kept_scorecards(engine, [result.cycle_id], 1)).values()
    assert label.startswith("triage (v2.1[31m Bearer ***") and token not in label
    assert len(label) == len("triage ()") + MAX_VERSION


async def test_scorecards_are_chosen_by_the_time_their_cycles_started(
    make_settings: MakeSettings, engine: AsyncEngine
) -> None:
    first = await scored_cycle(make_settings, bundled_rules)
    second = await scored_cycle(make_settings, blind)
    assert set(await report.kept_scorecards(engine, None, 1, (None, None))) == {first.cycle_id, second.cycle_id}
    assert set(await report.kept_scorecards(engine, None, 1, (second.started_at, None))) == {second.cycle_id}
    assert set(await report.kept_scorecards(engine, None, 1, (None, second.started_at))) == {first.cycle_id}


async def test_a_scorecard_older_than_retention_is_kept_as_it_was(
    make_settings: MakeSettings, engine: AsyncEngine
) -> None:
    """Retention prunes an old cycle's analysed events: scoring it again would forget them, so it is not."""
    first = await scored_cycle(make_settings, rules_but_every_seventh_fails, agent_max_retries=0)
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE events SET created_at = now() - interval '40 days'"))
        await connection.execute(text("UPDATE cycles SET started_at = now() - interval '40 days'"))
    await scored_cycle(make_settings, bundled_rules, retention_days=30)  # prunes, and redelivers the failed ones
    await prune(session_factory(engine), days=30)  # again, now that the failed ones are analysed: all events go
    async with session_factory(engine)() as session:
        left = await session.scalar(text("SELECT count(*) FROM events WHERE cycle_id = :id"), {"id": first.cycle_id})
    assert left == 0  # every event of the old cycle was pruned
    kept = await report.kept_scorecards(engine, [first.cycle_id], 1)
    assert kept[first.cycle_id][1] == first.score  # its scorecard outlives them, as it was


async def test_the_bundled_agent_misses_most_subtle_forms(make_settings: MakeSettings) -> None:
    """Its rules look at one event at a time, so they see the markers of the evident forms and not the rest."""
    async with open_service(make_settings(generator_seed=7)) as resources:  # the bundled agent, in-process
        result = await run_cycle(resources, CycleRequest(Counts(63, 319, 52)))
    assert result is not None and result.score is not None
    evident, subtle = (result.score.recall_of(difficulty) for difficulty in Difficulty)
    assert evident is not None and subtle is not None
    assert subtle < evident - 0.25
    forms = {(row.scenario, row.difficulty) for row in result.score.scenarios if row.attack and row.answered}
    assert len(forms) == 10  # both forms of all five scenarios


async def test_two_spans_of_cycles_compare_summed_over_their_events(
    make_settings: MakeSettings, engine: AsyncEngine
) -> None:
    cycles = [await scored_cycle(make_settings, respond) for respond in (bundled_rules, bundled_rules, blind, blind)]
    ids = [cycle.cycle_id for cycle in cycles]
    sides = await report.kept_spans(engine, [(ids[0], ids[1]), (ids[2], ids[3])])
    compared = json.loads(report.render_comparison(sides, as_json=True))["compare"]
    assert [side["cycles"] for side in compared] == [ids[:2], ids[2:]]
    assert [sum(row["answered"] for row in side["scenarios"]) for side in compared] == [868, 868]
    assert cycles[0].score is not None
    assert compared[0]["recall"] == cycles[0].score.recall  # the same events twice: the same share
    assert compared[1]["recall"] == 0.0
    text = report.render_comparison(sides, as_json=False).splitlines()
    assert text[0].split()[:4] == ["2", "cycles,", f"#{ids[0]}", "to"]
