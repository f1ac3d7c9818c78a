"""Redelivery, dead letters, requeue; crash recovery; and never taking over work a live process holds."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cyberevents.cycle import CycleBusy, CycleRequest, help_running_cycles, run_cycle
from cyberevents.db import session_factory
from cyberevents.eventloop import run
from cyberevents.generator import Counts
from cyberevents.models import Cycle, CycleOutcome, Event, EventStatus
from cyberevents.progress import describe
from cyberevents.resources import open_service
from tests.agents import recording_agent
from tests.conftest import AgentProcess, MakeSettings
from tests.faults.books import Books, assert_balanced, books
from tests.support import cli, read_until, wait_until

pytestmark = pytest.mark.slow  # processes, servers or long waits: out of the fast loop


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
        async with open_service(settings) as resources:
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
        open_service(make_settings(agent_url=good.url, max_attempts=2)) as resources,
    ):
        request = CycleRequest(Counts(0, 0, 0))
        shown: list[str] = []
        request.tally.listeners.append(lambda tally: shown.append(describe(tally)))  # as run-once's progress line
        fourth = await run_cycle(resources, request)
    assert fourth is not None
    assert (fourth.redelivered.total, fourth.redelivered.analysed) == (3, 3)
    assert fourth.redelivered.seconds > 0
    assert "redelivered 3/3 (login 3/3), 0 in flight" in shown  # the redelivery's progress, shown as it goes
    assert await statuses(engine) == [EventStatus.ANALYSED] * 3
    assert_balanced(await books(engine), "dead letters requeued, agent back")


async def test_a_second_process_helps_the_running_cycle_instead_of_starting_its_own(
    make_settings: MakeSettings, engine: AsyncEngine
) -> None:
    """One cycle at a time across processes; the others share its dispatch through the leased claims."""
    async with recording_agent(latency=0.2) as agent:
        settings = make_settings(agent_url=agent.url, dispatch_workers=2)
        async with open_service(settings) as first, open_service(settings) as second:
            request = CycleRequest(Counts(30, 0, 0))
            owner = asyncio.create_task(run_cycle(first, request))
            await wait_until(lambda: request.tally.analysed >= 1)  # the first is dispatching
            with pytest.raises(CycleBusy, match="another process is running cycle 1"):
                await run_cycle(second, CycleRequest(Counts(2, 0, 0)))
            helped = await help_running_cycles(second, asyncio.Event())
            result = await owner
    assert result is not None
    assert (result.analysed, result.outcome) == (30, CycleOutcome.SUCCEEDED)  # counted whoever delivered
    assert 0 < helped.analysed < 30
    assert agent.peak_in_flight == 4  # both processes' workers
    assert len(agent.requests) == 30
    assert_balanced(await books(engine), "a second process helps a running cycle")


def kill_mid_cycle(env: dict[str, str], login_events: int) -> None:
    """A run-once SIGKILLed once its first verdict is in: some events delivered, some claimed, some untouched."""
    victim = subprocess.Popen(
        [sys.executable, "-m", "cyberevents", "run-once", "--login", str(login_events), "--firewall", "0",
         "--patch", "0"],
        env=env | {"LOG_LEVEL": "DEBUG"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert victim.stderr is not None
    read_until(victim.stderr, f"Stored {login_events} events")
    read_until(victim.stderr, "analysed: severity=")
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=10)
    assert victim.returncode == -signal.SIGKILL


async def books_of(database_url: URL) -> tuple[Books, list[Event], Cycle | None]:
    engine = create_async_engine(database_url)
    try:
        found = await books(engine)
        async with session_factory(engine)() as session:
            rows = list((await session.scalars(select(Event).order_by(Event.id))).all())
            return found, rows, await session.get(Cycle, 1)
    finally:
        await engine.dispose()


def test_kill_9_mid_cycle_is_recovered_by_the_next_run_at_once(database_url: URL, agent_process: AgentProcess) -> None:
    """The dead process's liveness lock went with its connection: its claims are taken over without waiting for
    LEASE_SECONDS (the default, 300 s, here)."""
    env = agent_process.env(database_url, DISPATCH_WORKERS="2", AGENT_TIMEOUT_SECONDS="1")
    kill_mid_cycle(env, 40)
    rerun = cli("run-once", "--json", "--login", "0", "--firewall", "0", "--patch", "0", env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert "Cycle 1 was abandoned by a process that stopped: closed as interrupted" in rerun.stderr

    found, rows, first = run(books_of(database_url))
    assert first is not None
    assert first.outcome is CycleOutcome.INTERRUPTED
    assert (found.generated, found.analysed) == (40, 40)
    assert {row.delivery_count for row in rows} == {1}  # counted as answered, not as claimed
    assert sum(row.lost_deliveries for row in rows) > 0  # the dead process's claims, taken over
    assert_balanced(found, "kill -9 of run-once mid-cycle, rerun at once")


def test_after_any_kills_a_run_against_a_healthy_agent_leaves_nothing_pending(
    database_url: URL, agent_process: AgentProcess
) -> None:
    """Events whose deliveries keep dying with their process are dead-lettered, saying so, not pending for good."""
    env = agent_process.env(database_url, DISPATCH_WORKERS="2", AGENT_TIMEOUT_SECONDS="1", MAX_ATTEMPTS="2")
    for _ in range(3):
        kill_mid_cycle(env, 20)
    final = cli("run-once", "--json", "--login", "0", "--firewall", "0", "--patch", "0", env=env)
    assert final.returncode == 0, final.stderr

    found, rows, _ = run(books_of(database_url))
    assert (found.generated, found.pending, found.failed) == (60, 0, 0)
    assert found.analysed + found.dead_lettered == 60
    for row in rows:
        if row.status is EventStatus.DEAD_LETTERED:
            assert row.lost_deliveries == 2
            assert row.last_error is not None
            assert "the processes sending it stopped before recording an outcome" in row.last_error
    assert_balanced(found, "three kill -9s, MAX_ATTEMPTS=2, then a healthy run")
