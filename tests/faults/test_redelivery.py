"""Redelivery, dead letters, requeue; crash recovery; and never taking over work a live process holds."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cyberevents.cycle import CycleRequest, run_cycle
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


async def test_a_live_process_keeps_its_cycle_while_another_runs(
    make_settings: MakeSettings, engine: AsyncEngine
) -> None:
    """Two processes' cycles at once: the second never takes the first one's events, even those not yet claimed."""
    async with recording_agent(latency=0.2) as agent:
        settings = make_settings(agent_url=agent.url, dispatch_workers=2)
        async with open_test_resources(settings) as first, open_test_resources(settings) as second:
            slow = asyncio.create_task(run_cycle(first, CycleRequest(Counts(20, 0, 0))))
            await asyncio.sleep(0.5)  # the first is dispatching: some events leased, most not yet claimed
            other = await run_cycle(second, CycleRequest(Counts(2, 0, 0)))
            mine = await slow
    assert other is not None
    assert mine is not None
    assert other.redelivered.total == 0
    assert (mine.analysed, mine.outcome) == (20, CycleOutcome.SUCCEEDED)
    assert len(agent.requests) == 22
    assert_balanced(await books(engine), "two processes' cycles overlap")


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

    early = cli("run-once", "--json", "--login", "0", "--firewall", "0", "--patch", "0", env=env)
    assert early.returncode == 0, early.stderr
    assert '"redelivered": {"total": 0' in early.stdout  # the dead process's claims are still alive: hands off
    time.sleep(max(0.0, killed + 6.5 - time.monotonic()))  # until the dead process's leases have expired
    late = cli("run-once", "--json", "--login", "0", "--firewall", "0", "--patch", "0", env=env)
    assert late.returncode == 0, late.stderr
    assert "was abandoned by a process that stopped: closed as interrupted" in late.stderr
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
