"""Several daemons on one PostgreSQL: one runs the cycle, the others share its dispatch, a killed one is replaced."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from cyberevents.eventloop import run
from tests.conftest import AgentProcess
from tests.faults.books import Books, assert_balanced, books
from tests.support import cli, read_until

pytestmark = pytest.mark.slow  # processes, servers or long waits: out of the fast loop

EVENTS = 5000


def test_three_replicas_one_killed_mid_run_every_event_analysed_exactly_once(
    database_url: URL, agent_process: AgentProcess, tmp_path: Path
) -> None:
    env = agent_process.env(
        database_url, DISPATCH_WORKERS="20", LOGIN_EVENTS=str(EVENTS), FIREWALL_EVENTS="0", PATCH_EVENTS="0",
        SCHEDULE="0 0 1 1 *", RUN_ON_START="true", HEALTH_PORT="0", LEASE_SECONDS="4", AGENT_TIMEOUT_SECONDS="2",
    )  # fmt: skip
    logs = [tmp_path / f"replica-{n}.log" for n in range(3)]
    with contextlib.ExitStack() as files:
        outputs = [files.enter_context(log.open("w")) for log in logs]
        command = [sys.executable, "-m", "cyberevents", "run"]
        replicas = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=out) for out in outputs]
        owner, found, exits = _kill_the_owner_and_wait(replicas, logs, database_url)
    helpers = [n for n in range(3) if n != owner]
    assert [exits[n] for n in helpers] == [0, 0]
    assert all("Helped another replica's cycle" in logs[n].read_text() for n in helpers)
    assert any("Cycle 1 lost its process; its events are delivered: closed" in logs[n].read_text() for n in helpers)
    assert_balanced(found, f"3 replicas, {EVENTS} events, the cycle's owner killed with SIGKILL")
    assert (found.generated, found.analysed) == (EVENTS, EVENTS)


def _kill_the_owner_and_wait(
    replicas: list[subprocess.Popen[bytes]], logs: list[Path], database_url: URL
) -> tuple[int, Books, list[int]]:
    try:
        owner = _wait_for_owner(logs)
        _wait_for(lambda: run(_claimants(database_url)) == 3, within=60)  # all three are delivering
        replicas[owner].send_signal(signal.SIGKILL)
        replicas[owner].wait(timeout=10)
        found = _wait_for_all_analysed(database_url, within=90)
        _wait_for(lambda: any("lost its process" in log.read_text() for log in logs), within=30)
    finally:
        for replica in replicas:
            if replica.poll() is None:
                replica.send_signal(signal.SIGTERM)
        exits = [replica.wait(timeout=40) for replica in replicas]
    return owner, found, exits


def _wait_for(check: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not check() and time.monotonic() < deadline:
        time.sleep(0.2)


async def _claimants(database_url: URL) -> int:
    """How many processes hold claims on events now."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            return int(await connection.scalar(text("SELECT count(DISTINCT lease_owner) FROM events")) or 0)
    finally:
        await engine.dispose()


def _wait_for_owner(logs: list[Path]) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for n, log in enumerate(logs):
            if f"Stored {EVENTS} events" in log.read_text():
                return n
        time.sleep(0.1)
    raise AssertionError("no replica started a cycle: " + " | ".join(log.read_text()[-500:] for log in logs))


def _wait_for_all_analysed(database_url: URL, within: float) -> Books:
    async def count() -> Books:
        engine = create_async_engine(database_url)
        try:
            return await books(engine)
        finally:
            await engine.dispose()

    deadline = time.monotonic() + within
    while True:
        found = run(count())
        if found.analysed == EVENTS or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_run_once_while_another_cycle_runs_exits_3(database_url: URL, agent_process: AgentProcess) -> None:
    env = agent_process.env(database_url, DISPATCH_WORKERS="2")
    first = subprocess.Popen(
        [sys.executable, "-m", "cyberevents", "run-once", "--login", "40", "--firewall", "0", "--patch", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert first.stderr is not None
    read_until(first.stderr, "Stored 40 events")
    second = cli("run-once", env=env)
    first.communicate(timeout=60)
    assert first.returncode == 0
    assert second.returncode == 3
    assert second.stderr.strip() == (
        "cyberevents: busy: another process is running cycle 1 (it holds the cycle lock); try again later"
    )
