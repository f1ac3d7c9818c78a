"""Redelivery, dead letters, requeue; crash recovery; and never taking over work a live process holds."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cyberevents.cycle import CycleBusy, CycleRequest, run_cycle
from cyberevents.db import session_factory
from cyberevents.eventloop import run
from cyberevents.generator import Counts
from cyberevents.models import Cycle, CycleOutcome, Event, EventStatus
from tests.agents import recording_agent
from tests.conftest import AgentProcess, MakeSettings, open_test_resources
from tests.faults.books import assert_balanced, books
from tests.support import cli, read_until


def refuse(request: dict[str, Any]) -> web.Response:
    return web.json_response({"error": "not today"}, status=422)


async def statuses(engine: AsyncEngine) -> list[EventStatus]:
    async with session_factory(engine)() as session:
        return list((await session.scalars(select(Event.status).order_by(Event.id))).all())


async def test_failed_events_are_redelivered_then_dead_lettered_then_requeued(
    make_settings: MakeSettings, engine: AsyncEngine, database_url: URL
) -> None:
    async with recording_agent(respond=refuse) as bad:
        settings = make_settings(agent_url=bad.url, max_attempts=2)
        async with open_test_resources(settings) as resources:
            await run_cycle(resources, CycleRequest(Counts(3, 0, 0)))
            assert await statuses(engine) == [EventStatus.FAILED] * 3
            second = await run_cycle(resources, CycleRequest(Counts(0, 0, 0)))
            assert second is not None
            assert (second.redelivered.total, second.redelivered.failed) == (3, 3)
            assert await statuses(engine) == [EventStatus.DEAD_LETTERED] * 3
            third = await run_cycle(resources, CycleRequest(Counts(0, 0, 0)))
            assert third is not None
            assert third.redelivered.total == 0  # dead letters wait for a human
    assert len(bad.requests) == 6
    assert_balanced(await books(engine), "agent refuses every event (MAX_ATTEMPTS=2)")

    env = {"DATABASE_URL": database_url.render_as_string(hide_password=False)}
    check = cli("check-db", env=env)
    [login] = [line.split() for line in check.stdout.splitlines() if line.strip().startswith("login ")]
    assert login == ["login", "0", "0", "0", "3", "3"]
    requeued = cli("requeue", "--kind", "login", env=env)
    assert requeued.returncode == 0, requeued.stderr
    assert requeued.stdout.strip() == "requeued 3 dead-lettered events; the next cycle delivers them again"

    async with (
        recording_agent() as good,
        open_test_resources(make_settings(agent_url=good.url, max_attempts=2)) as resources,
    ):
        fourth = await run_cycle(resources, CycleRequest(Counts(0, 0, 0)))
    assert fourth is not None
    assert (fourth.redelivered.total, fourth.redelivered.analysed) == (3, 3)
    assert await statuses(engine) == [EventStatus.ANALYSED] * 3
    assert_balanced(await books(engine), "dead letters requeued, agent back")


async def test_a_second_process_helps_the_running_cycle_instead_of_starting_its_own(
    make_settings: MakeSettings, engine: AsyncEngine
) -> None:
    """One cycle at a time across processes; the others share its dispatch through the leased claims."""
    async with recording_agent(latency=0.2) as agent:
        settings = make_settings(agent_url=agent.url, dispatch_workers=2)
        async with open_test_resources(settings) as first, open_test_resources(settings) as second:
            owner = asyncio.create_task(run_cycle(first, CycleRequest(Counts(30, 0, 0))))
            await asyncio.sleep(0.5)  # the first is dispatching
            with pytest.raises(CycleBusy, match="another process is running cycle 1"):
                await run_cycle(second, CycleRequest(Counts(2, 0, 0)))
            helped = await second.dispatcher.help(asyncio.Event())
            result = await owner
    assert result is not None
    assert (result.analysed, result.outcome) == (30, CycleOutcome.SUCCEEDED)  # counted whoever delivered
    assert 0 < helped.analysed < 30
    assert agent.peak_in_flight == 4  # both processes' workers
    assert len(agent.requests) == 30
    assert_balanced(await books(engine), "a second process helps a running cycle")


def test_kill_9_mid_cycle_is_recovered_once_the_leases_expire(database_url: URL, agent_process: AgentProcess) -> None:
    env = agent_process.env(database_url, DISPATCH_WORKERS="2", AGENT_TIMEOUT_SECONDS="1", LEASE_SECONDS="6")
    victim = subprocess.Popen(
        [sys.executable, "-m", "cyberevents", "run-once", "--login", "40", "--firewall", "0", "--patch", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert victim.stderr is not None
    read_until(victim.stderr, "Stored 40 events")
    time.sleep(0.6)
    killed = time.monotonic()
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=10)
    assert victim.returncode == -signal.SIGKILL

    # The dead process no longer holds the cycle lock: its cycle is closed at once and what it had not claimed is
    # delivered; what it had claimed stays untouched until its leases expire.
    early = cli("run-once", "--json", "--login", "0", "--firewall", "0", "--patch", "0", env=env)
    assert early.returncode == 0, early.stderr
    assert "Cycle 1 was abandoned by a process that stopped: closed as interrupted" in early.stderr

    async def still_claimed_by_the_dead() -> int:
        engine = create_async_engine(database_url)
        try:
            async with session_factory(engine)() as session:
                return len((await session.scalars(select(Event.id).where(Event.status == EventStatus.PENDING))).all())
        finally:
            await engine.dispose()

    assert run(still_claimed_by_the_dead()) > 0
    time.sleep(max(0.0, killed + 6.5 - time.monotonic()))  # until the dead process's leases have expired
    late = cli("run-once", "--json", "--login", "0", "--firewall", "0", "--patch", "0", env=env)
    assert late.returncode == 0, late.stderr
    assert '"redelivered": {"total": 0' not in late.stdout

    async def check() -> None:
        engine = create_async_engine(database_url)
        try:
            found = await books(engine)
            async with session_factory(engine)() as session:
                first = await session.get(Cycle, 1)
        finally:
            await engine.dispose()
        assert first is not None
        assert first.outcome is CycleOutcome.INTERRUPTED
        assert (found.generated, found.analysed) == (40, 40)
        assert_balanced(found, "kill -9 of run-once mid-cycle")

    run(check())
