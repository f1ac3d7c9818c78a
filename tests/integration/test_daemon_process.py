"""`cyberevents run` as operators run it: a process, signals, one thread, nothing lost or doubled."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from cyberevents.db import session_factory
from cyberevents.eventloop import run
from cyberevents.models import Cycle, CycleOutcome, Event, EventAnalysis, EventStatus
from tests.conftest import AgentProcess
from tests.support import by_host_name, cli, read_until, threads_of

pytestmark = pytest.mark.slow  # processes, servers or long waits: out of the fast loop


def test_sigterm_mid_cycle_exits_0_within_the_grace_with_nothing_lost_or_doubled(
    database_url: URL, agent_process: AgentProcess
) -> None:
    env = agent_process.env(
        database_url, DISPATCH_WORKERS="3", LOGIN_EVENTS="30", FIREWALL_EVENTS="30", PATCH_EVENTS="30",
        SCHEDULE="0 0 1 1 *", HEALTH_PORT="0", SHUTDOWN_GRACE_SECONDS="10", LOG_LEVEL="DEBUG",
    )  # fmt: skip
    daemon = subprocess.Popen(
        [sys.executable, "-m", "cyberevents", "run"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert daemon.stderr is not None
    samples: list[int] = []

    def sample() -> None:
        if (threads := threads_of(daemon.pid)) is not None:
            samples.append(threads)

    base = ""
    for line in daemon.stderr:
        if "Health server at " in line:
            base = line.split("Health server at ")[1].split()[0]
            break
    read_until(daemon.stderr, "Stored 90 events", sample)  # the first events are on their way
    read_until(daemon.stderr, "analysed: severity=", sample)  # the first verdict is in
    with urllib.request.urlopen(f"{base}/", timeout=30) as page:  # the status page, rendered mid-cycle
        assert page.status == 200 and b"Backlog" in page.read()
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as scrape:  # process collectors read /proc, no thread
        assert b"process_open_fds" in scrape.read()
    samples.extend(t for t in [threads_of(daemon.pid)] if t is not None)
    signalled = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    _, stderr = daemon.communicate(timeout=30)
    took = time.monotonic() - signalled

    assert daemon.returncode == 0, stderr
    assert took < 10, f"took {took:.1f}s to stop"
    assert "Received SIGTERM: starting no new work" in stderr
    assert "Traceback" not in stderr
    assert set(samples) == {1}

    async def books() -> tuple[Counter[EventStatus], int, int, CycleOutcome]:
        engine = create_async_engine(database_url)
        try:
            async with session_factory(engine)() as session:
                statuses = Counter((await session.scalars(select(Event.status))).all())
                analyses = await session.scalar(select(func.count()).select_from(EventAnalysis))
                distinct = await session.scalar(select(func.count(func.distinct(EventAnalysis.event_id))))
                [cycle] = (await session.scalars(select(Cycle))).all()
        finally:
            await engine.dispose()
        return statuses, int(analyses or 0), int(distinct or 0), cycle.outcome

    statuses, analyses, distinct, outcome = run(books())
    assert set(statuses) <= {EventStatus.ANALYSED, EventStatus.PENDING}
    assert sum(statuses.values()) == 90
    assert 0 < statuses[EventStatus.ANALYSED] < 90
    assert analyses == distinct == statuses[EventStatus.ANALYSED]
    assert outcome is CycleOutcome.INTERRUPTED

    check = cli("check-db", env={"DATABASE_URL": by_host_name(database_url)})
    assert "pending" in check.stdout
    assert "start: interrupted" in check.stdout


def test_a_bad_schedule_is_one_line_and_exit_2() -> None:
    result = cli("run", env={"SCHEDULE": "every half hour"})
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "cyberevents: error: invalid configuration: SCHEDULE='every half hour': not a cron expression "
        "(Wrong number of fields); e.g. '*/30 * * * *', '@daily' or, with seconds first, '*/10 * * * * *'"
    )


def test_an_unknown_time_zone_is_one_line_and_exit_2() -> None:
    result = cli("run", env={"SCHEDULE_TZ": "Mars/Olympus_Mons"})
    assert result.returncode == 2
    assert "SCHEDULE_TZ='Mars/Olympus_Mons': not an IANA time zone" in result.stderr


def test_run_once_handles_sigterm_the_same_way(database_url: URL, agent_process: AgentProcess) -> None:
    """A CronJob's deadline: in-flight deliveries finish, the rest stays pending, exit 1 says so."""
    env = agent_process.env(database_url, DISPATCH_WORKERS="2", LOG_LEVEL="DEBUG")
    once = subprocess.Popen(
        [sys.executable, "-m", "cyberevents", "run-once", "--json", "--login", "40", "--firewall", "0", "--patch", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert once.stderr is not None
    read_until(once.stderr, "Stored 40 events")
    read_until(once.stderr, "analysed: severity=")  # the first verdict is in
    once.send_signal(signal.SIGTERM)
    stdout, stderr = once.communicate(timeout=30)
    assert once.returncode == 1, stderr
    report = json.loads(stdout)
    assert report["outcome"] == "interrupted"
    assert 0 < report["kinds"]["login"]["analysed"] < 40
    assert report["kinds"]["login"]["failed"] == 0


def test_ctrl_c_at_any_moment_exits_130_without_a_traceback(database_url: URL, agent_process: AgentProcess) -> None:
    """As the event loop starts (before the database and the agent are set up), mid-cycle, once the first verdict
    is in: 130, never a traceback. (A signal sent the instant the process is spawned can land before the new
    program runs at all, and is lost with the old image: no moment a test can name.)"""
    env = agent_process.env(database_url, DISPATCH_WORKERS="1", LOG_LEVEL="DEBUG")
    command = [sys.executable, "-m", "cyberevents", "run-once", "--login", "20", "--firewall", "0", "--patch", "0"]
    for moment in ("Using selector", "Stored 20 events", "analysed: severity="):
        once = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert once.stderr is not None
        read_until(once.stderr, moment)
        once.send_signal(signal.SIGINT)
        _, stderr = once.communicate(timeout=60)
        assert once.returncode == 130, (moment, once.returncode, stderr)
        assert "Traceback" not in stderr, (moment, stderr)
