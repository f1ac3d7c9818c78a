from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from cyberevents.cycle import CycleRequest, CycleResult, run_cycle
from cyberevents.db import session_factory
from cyberevents.generator import Counts
from cyberevents.models import (
    DETAIL_TABLES,
    CycleOutcome,
    Event,
    EventAnalysis,
    EventKind,
    EventStatus,
    GroundTruth,
)
from cyberevents.resources import MAIN_POOL_SIZE, Resources, open_service
from tests.agents import Responder, recording_agent
from tests.conftest import MakeSettings
from tests.support import ledger


async def one_cycle(resources: Resources, counts: Counts) -> CycleResult:
    result = await run_cycle(resources, CycleRequest(counts))
    assert result is not None
    return result


async def analyses_per_event(sessions: async_sessionmaker[AsyncSession]) -> Counter[int]:
    async with sessions() as session:
        rows = await session.execute(select(EventAnalysis.event_id, func.count()).group_by(EventAnalysis.event_id))
        return Counter(dict(rows.all()))


@pytest.mark.parametrize(("workers", "events"), [(1, 12), (7, 120), (50, 400)])
async def test_agent_sees_exactly_workers_in_flight_and_one_analysis_per_event(
    make_settings: MakeSettings, workers: int, events: int
) -> None:
    async with recording_agent(latency=0.05) as agent:
        settings = make_settings(agent_url=agent.url, dispatch_workers=workers)
        async with open_service(settings) as resources:
            third = events // 3
            result = await one_cycle(resources, Counts(third, events - 2 * third, third))
            per_event = await analyses_per_event(resources.sessions)
            async with resources.sessions() as session:
                statuses = Counter((await session.scalars(select(Event.status))).all())
        pools = (resources.engine.pool.size(), resources.write_engine.pool.size())  # type: ignore[attr-defined]

    assert pools == (MAIN_POOL_SIZE, min(workers, 10))  # the database's connections do not grow with the workers
    assert agent.peak_in_flight == workers
    assert result.outcome is CycleOutcome.SUCCEEDED
    assert (result.generated, result.analysed, result.failed) == (events, events, 0)
    assert len(per_event) == events
    assert set(per_event.values()) == {1}
    assert statuses == {EventStatus.ANALYSED: events}
    assert len(agent.requests) == events
    assert threading.active_count() == 1


async def test_token_and_idempotency_key_reach_the_agent_and_ground_truth_never_does(
    make_settings: MakeSettings,
) -> None:
    async with recording_agent() as agent:
        settings = make_settings(agent_url=agent.url, agent_token="t0ken-xyz")
        async with open_service(settings) as resources:
            await one_cycle(resources, Counts(63, 319, 52))
            async with resources.sessions() as session:
                uids = {str(uid) for uid in (await session.scalars(select(Event.uid))).all()}
                truth = set((await session.scalars(select(GroundTruth.scenario).distinct())).all())

    assert {headers["Authorization"] for headers, _ in agent.requests} == {"Bearer t0ken-xyz"}
    keys = [headers["Idempotency-Key"] for headers, _ in agent.requests]
    assert len(set(keys)) == len(keys) == 434
    assert set(keys) == uids
    assert len(truth) > 1  # the scenarios exist in the database ...
    for _, body in agent.requests:  # ... and none of them reached the agent
        assert set(body) == {"event_type", "event_id", "event"}
        kind = EventKind(body["event_type"])
        expected = {column.name for column in DETAIL_TABLES[kind].columns} - {"event_id"} | {"occurred_at"}
        assert set(body["event"]) == expected
        text = json.dumps(body)
        assert all(scenario not in text for scenario in truth if scenario != "benign")
        # JSON types as documented: numbers as numbers (not the text of a Decimal), flags as booleans
        fields = body["event"]
        if kind is EventKind.PATCH:
            assert isinstance(fields["cvss"], float) and 0.0 <= fields["cvss"] <= 10.0
        elif kind is EventKind.FIREWALL:
            assert all(type(fields[name]) is int for name in ("src_port", "dst_port", "bytes"))
        else:
            assert type(fields["privileged"]) is bool and type(fields["success"]) is bool


def html_error(request: dict[str, Any]) -> web.Response:
    return web.Response(text="<html>oops</html>", status=500, content_type="text/html")


def every_other_invalid(request: dict[str, Any]) -> web.Response:
    if request["event_id"] % 2:
        return web.json_response({"severity": "apocalyptic", "score": 500, "summary": "?"})
    return web.json_response({"severity": "low", "score": 1, "summary": "fine"})


async def cycle_against(
    make_settings: MakeSettings, respond: Responder, counts: Counts
) -> tuple[CycleResult, list[Event]]:
    """One cycle against an agent answering with `respond`: its result, and its events as they ended."""
    async with (
        recording_agent(respond=respond) as agent,
        open_service(make_settings(agent_url=agent.url)) as resources,
    ):
        result = await one_cycle(resources, counts)
        async with resources.sessions() as session:
            return result, list((await session.scalars(select(Event))).all())


async def test_failed_deliveries_are_recorded_with_their_reason(
    make_settings: MakeSettings, engine: AsyncEngine
) -> None:
    result, events = await cycle_against(make_settings, html_error, Counts(3, 3, 3))
    assert result.outcome is CycleOutcome.FAILED
    assert (result.analysed, result.failed) == (0, 9)
    assert {event.status for event in events} == {EventStatus.FAILED}
    assert {event.last_error for event in events} == {"agent answered HTTP 500: <html>oops</html>"}
    assert {event.delivery_count for event in events} == {1}
    assert [cycle.outcome for cycle in await ledger(engine)] == [CycleOutcome.FAILED]


async def test_invalid_verdicts_fail_only_their_events(make_settings: MakeSettings, engine: AsyncEngine) -> None:
    result, events = await cycle_against(make_settings, every_other_invalid, Counts(10, 10, 10))
    failed = [event for event in events if event.status is EventStatus.FAILED]
    async with session_factory(engine)() as session:
        analysed = await session.scalar(select(func.count()).select_from(EventAnalysis))
    assert result.outcome is CycleOutcome.PARTIAL
    assert result.failed == len(failed) == 15
    assert analysed == 15
    assert all(event.id % 2 for event in failed)
    assert all(event.last_error and "severity: Input should be" in event.last_error for event in failed)


async def test_an_unreachable_agent_fails_events_without_losing_them(make_settings: MakeSettings) -> None:
    async with recording_agent() as agent:
        url = agent.url
    async with open_service(make_settings(agent_url=url, agent_timeout_seconds=2)) as resources:
        result = await one_cycle(resources, Counts(2, 2, 2))
        async with resources.sessions() as session:
            errors = set((await session.scalars(select(Event.last_error))).all())
    assert (result.generated, result.failed) == (6, 6)
    assert len(errors) == 1
    assert next(iter(errors)).startswith("agent unreachable:")  # type: ignore[union-attr]


async def test_a_redelivered_verdict_is_stored_once(make_settings: MakeSettings) -> None:
    from cyberevents import queue

    async with recording_agent() as agent, open_service(make_settings(agent_url=agent.url)) as resources:
        await one_cycle(resources, Counts(1, 0, 0))
        sessions = session_factory(resources.engine)
        async with sessions() as session:
            event_id = await session.scalar(select(Event.id))
        assert event_id is not None
        first = await queue.record_analysis(resources.dispatcher.writes, event_id, "critical", 99, "again", "{}")
        async with sessions() as session:
            rows = (await session.scalars(select(EventAnalysis))).all()
    assert first is False
    assert [(row.severity.value, row.score) for row in rows] == [("medium", 42)]
    assert rows[0].raw == {"severity": "medium", "score": 42, "summary": "looks odd", "model": "test"}


async def test_the_embedded_reference_agent_analyses_a_default_cycle(make_settings: MakeSettings) -> None:
    async with open_service(make_settings(agent_url=None)) as resources:
        result = await one_cycle(resources, Counts(63, 319, 52))
        async with resources.sessions() as session:
            severities = Counter((await session.scalars(select(EventAnalysis.severity))).all())
            critical_truth = set(
                (
                    await session.scalars(
                        select(GroundTruth.scenario)
                        .join(EventAnalysis, EventAnalysis.event_id == GroundTruth.event_id)
                        .where(EventAnalysis.severity == "critical")
                    )
                ).all()
            )
    assert (result.generated, result.analysed) == (434, 434)
    assert set(severities) >= {"low", "medium", "high", "critical"}
    assert "unpatched_critical" in critical_truth
