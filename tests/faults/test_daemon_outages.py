"""The daemon outlives the database: a blip between cycles, a database not created yet, each named, none fatal."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from cyberevents.models import CycleOutcome
from cyberevents.service import Daemon
from tests.agents import recording_agent
from tests.conftest import MakeSettings
from tests.integration.test_daemon import daemon_settings, get, running
from tests.proxy import Proxy
from tests.support import asyncpg_dsn, ledger, wait_until

pytestmark = pytest.mark.slow  # processes, servers or long waits: out of the fast loop


async def status_of(daemon: Daemon) -> dict[str, Any]:
    _, report = await get(f"{daemon.health_url}/status")
    assert isinstance(report, dict)
    return report


async def database_says(daemon: Daemon, words: str) -> bool:
    if daemon.health_url is None:
        return False
    return words in str((await status_of(daemon))["database"])


async def test_a_database_blip_between_cycles_is_an_outage_not_an_exit(
    make_settings: MakeSettings, database_url: URL, server_url: URL
) -> None:
    proxy = Proxy(server_url)
    await proxy.up()
    async with recording_agent() as agent:
        url = proxy.url(database_url).render_as_string(hide_password=False)
        daemon = Daemon(
            daemon_settings(make_settings, agent.url, database_url=url, schedule="0 0 1 1 *"), asyncio.Event()
        )
        async with running(daemon):
            await wait_until(lambda: database_says(daemon, "'status': 'ok'"))
            await wait_until(lambda: _scheduling(daemon))
            await proxy.down()  # the replica-helping loop polls every 2 s: it meets the outage
            await wait_until(lambda: database_says(daemon, "fail"))
            assert (await get(f"{daemon.health_url}/livez"))[0] == 200
            assert (await get(f"{daemon.health_url}/readyz"))[0] == 503
            assert daemon.state.scheduler_task is not None
            assert not daemon.state.scheduler_task.done()
            await proxy.up()
            await wait_until(lambda: database_says(daemon, "'status': 'ok'"), within=60)
            assert (await get(f"{daemon.health_url}/readyz"))[0] == 200
    await proxy.down()


async def test_slots_that_fall_in_an_outage_fail_in_one_line_and_cycles_resume(
    make_settings: MakeSettings,
    database_url: URL,
    server_url: URL,
    engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = Proxy(server_url)
    await proxy.up()
    async with recording_agent() as agent:
        url = proxy.url(database_url).render_as_string(hide_password=False)
        settings = daemon_settings(make_settings, agent.url, database_url=url, schedule="* * * * * *")
        daemon = Daemon(settings, asyncio.Event())
        failed = daemon.metrics.cycles.labels(CycleOutcome.FAILED.value)
        async with running(daemon):
            await wait_until(lambda: _succeeded(engine, at_least=1))
            await proxy.down()
            await wait_until(lambda: failed._value.get() >= 4)  # four slots fell in the outage
            assert daemon.state.scheduler_task is not None
            assert not daemon.state.scheduler_task.done()
            before = len(await ledger(engine))
            await proxy.up()
            await wait_until(lambda: _succeeded(engine, at_least=before + 1), within=60)
    await proxy.down()
    assert not [record for record in caplog.records if record.exc_info], "a traceback was logged"
    outage_lines = [
        record for record in caplog.records if "Database unavailable while running a cycle" in record.message
    ]
    assert len(outage_lines) == 1  # one line per change of state, not one per slot


async def _succeeded(engine: AsyncEngine, at_least: int) -> bool:
    return sum(cycle.outcome is CycleOutcome.SUCCEEDED for cycle in await ledger(engine)) >= at_least


async def test_a_missing_database_is_named_and_waited_for_not_restarted(
    make_settings: MakeSettings, server_url: URL, template_name: str
) -> None:
    name = f"cyberevents_late_{uuid.uuid4().hex[:8]}"
    missing = server_url.set(database=name)
    async with recording_agent() as agent:
        settings = daemon_settings(
            make_settings, agent.url, database_url=missing.render_as_string(hide_password=False), schedule="0 0 1 1 *"
        )
        daemon = Daemon(settings, asyncio.Event())
        admin = await asyncpg.connect(asyncpg_dsn(server_url))
        try:
            async with running(daemon):
                await wait_until(lambda: database_says(daemon, "the database does not exist"))
                assert (await status_of(daemon))["state"] == "starting"
                status, body = await get(f"{daemon.health_url}/livez")
                assert status == 200, body
                assert (await get(f"{daemon.health_url}/readyz"))[0] == 503
                await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_name}"')
                await wait_until(lambda: _scheduling(daemon), within=60)
                assert (await status_of(daemon))["database"] == {"status": "ok"}
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


async def _scheduling(daemon: Daemon) -> bool:
    return daemon.state.scheduler_task is not None
