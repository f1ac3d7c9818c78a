"""Retention prunes analysed events, their verdicts and old ledger rows in bounded batches, nothing else."""

from __future__ import annotations

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from cyberevents.cycle import CycleRequest, run_cycle
from cyberevents.db import session_factory
from cyberevents.generator import Counts
from cyberevents.models import Cycle, Event, EventAnalysis, EventStatus, GroundTruth, LoginEvent
from cyberevents.resources import open_service
from cyberevents.retention import prune
from tests.agents import recording_agent
from tests.conftest import MakeSettings


async def count(engine: AsyncEngine, model: type[object]) -> int:
    async with session_factory(engine)() as session:
        return int(await session.scalar(select(func.count()).select_from(model)) or 0)


async def test_old_analysed_events_and_ledger_rows_go_in_batches(
    make_settings: MakeSettings, engine: AsyncEngine
) -> None:
    async with (
        recording_agent() as agent,
        open_service(make_settings(agent_url=agent.url, retention_days=0)) as resources,
    ):
        await run_cycle(resources, CycleRequest(Counts(30, 0, 0)))  # will be old
        await run_cycle(resources, CycleRequest(Counts(5, 0, 0)))  # stays recent
    async with session_factory(engine)() as session, session.begin():
        await session.execute(text("UPDATE events SET created_at = now() - interval '40 days' WHERE cycle_id = 1"))
        await session.execute(text("UPDATE cycles SET started_at = now() - interval '40 days' WHERE id = 1"))
        await session.execute(text("UPDATE events SET status = 'pending' WHERE id = 1"))  # old, but no verdict yet
        await session.execute(text("DELETE FROM event_analyses WHERE event_id = 1"))

    deleted = await prune(session_factory(engine), days=30, batch=7)

    assert deleted == (29, 0)  # cycle 1 keeps its pending event, so its ledger row stays
    assert await count(engine, Event) == 6
    assert await count(engine, EventAnalysis) == 5
    assert await count(engine, LoginEvent) == 6
    assert await count(engine, GroundTruth) == 6
    async with session_factory(engine)() as session, session.begin():
        await session.execute(text("UPDATE events SET status = 'analysed' WHERE id = 1"))
    assert await prune(session_factory(engine), days=30, batch=7) == (1, 0)
    assert await count(engine, Cycle) == 2  # a scored cycle's ledger row stays, with its scorecard
    async with session_factory(engine)() as session, session.begin():
        await session.execute(text("DELETE FROM cycle_scores WHERE cycle_id = 1"))  # as a cycle never scored
    assert await prune(session_factory(engine), days=30, batch=7) == (0, 1)
    assert await count(engine, Cycle) == 1
    async with session_factory(engine)() as session:
        assert await session.scalar(select(func.count()).where(Event.status == EventStatus.PENDING)) == 0


async def test_zero_keeps_everything(make_settings: MakeSettings, engine: AsyncEngine) -> None:
    assert await prune(session_factory(engine), days=0) == (0, 0)
