"""PostgreSQL stopped and restarted mid-cycle: a private server, never the machine's shared one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from cyberevents.db import import_pgserver, session_factory
from cyberevents.models import Cycle, CycleOutcome
from cyberevents.service import Daemon
from cyberevents.settings import to_asyncpg_url
from tests.agents import recording_agent
from tests.conftest import MakeSettings
from tests.faults.books import assert_balanced, books
from tests.integration.test_daemon import get, running, wait_until


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[Any]:
    server = import_pgserver().get_server(tmp_path / "pgdata", cleanup_mode="delete")
    with server:
        yield server


async def test_daemon_survives_a_database_restart_mid_cycle_and_loses_nothing(
    make_settings: MakeSettings, private_postgres: Any, caplog: pytest.LogCaptureFixture
) -> None:
    url = to_asyncpg_url(private_postgres.get_uri())
    async with recording_agent(latency=0.3) as agent:
        settings = make_settings(
            database_url=url.render_as_string(hide_password=False), agent_url=agent.url, dispatch_workers=2,
            login_events=20, firewall_events=0, patch_events=0, schedule="*/10 * * * * *", run_on_start=True,
            misfire_grace_seconds=60, cycle_timeout_seconds=60, health_port=0,
        )  # fmt: skip
        daemon = Daemon(settings, asyncio.Event())
        async with running(daemon):

            async def dispatching() -> bool:
                running_cycle = daemon.state.running
                return running_cycle is not None and running_cycle.tally.analysed >= 2

            await wait_until(dispatching)
            private_postgres.stop()  # pg_ctl stop: every connection is cut
            status, body = await get(f"{daemon.health_url}/readyz")
            assert status == 503
            assert body["checks"]["database"]["output"].startswith("database unreachable")
            await asyncio.sleep(2.0)
            private_postgres.ensure_postgres_running()
            await wait_until(lambda: _ready(daemon.health_url))

            async def two_cycles_succeeded() -> bool:
                return sum(row.outcome is CycleOutcome.SUCCEEDED for row in await ledger()) >= 2

            async def ledger() -> list[Cycle]:
                engine = create_async_engine(url)
                try:
                    async with session_factory(engine)() as session:
                        return list((await session.scalars(select(Cycle).order_by(Cycle.id))).all())
                finally:
                    await engine.dispose()

            await wait_until(two_cycles_succeeded, within=60)
            assert daemon.state.scheduler_task is not None
            assert not daemon.state.scheduler_task.done()  # the daemon survived

    engine = create_async_engine(url)
    try:
        found = await books(engine)
    finally:
        await engine.dispose()
    assert found.analysed == found.generated >= 40
    assert any(message.startswith("Retry 1 in ") for message in caplog.messages)  # the outage was really hit
    assert not [message for message in caplog.messages if "never retrieved" in message or "Unhandled" in message]
    assert_balanced(found, "PostgreSQL stopped for 2 s mid-cycle, then restarted")


async def _ready(base: str | None) -> bool:
    try:
        return (await get(f"{base}/readyz"))[0] == 200
    except OSError:
        return False
