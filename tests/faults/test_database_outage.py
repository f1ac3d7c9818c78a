"""PostgreSQL stopped and restarted mid-cycle (a private server, never the machine's shared one), and the
service's connections cut under it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cyberevents.cycle import CycleRequest, run_cycle
from cyberevents.generator import Counts
from cyberevents.models import CycleOutcome
from cyberevents.outage import WRITE_RETRY_SECONDS
from cyberevents.resources import open_service
from cyberevents.service import Daemon
from cyberevents.settings import to_asyncpg_url
from tests.agents import recording_agent
from tests.conftest import MakeSettings, embedded_postgres
from tests.faults.books import assert_balanced, books
from tests.integration.test_daemon import get, running
from tests.proxy import Proxy
from tests.support import ledger_at, wait_until

pytestmark = pytest.mark.slow  # processes, servers or long waits: out of the fast loop


@pytest.fixture
def private_postgres() -> Iterator[Any]:
    with embedded_postgres() as server:
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
            assert body["checks"]["database:connection"][0]["output"].startswith("database unreachable")
            await wait_until(lambda: any(message.startswith("Retry 1 in ") for message in caplog.messages))
            private_postgres.ensure_postgres_running()  # once the daemon has met the outage
            await wait_until(lambda: _ready(daemon.health_url))

            async def two_cycles_succeeded() -> bool:
                return sum(row.outcome is CycleOutcome.SUCCEEDED for row in await ledger_at(url)) >= 2

            await wait_until(two_cycles_succeeded, within=60)
            assert daemon.state.scheduler_task is not None
            assert not daemon.state.scheduler_task.done()  # the daemon survived

    engine = create_async_engine(url)
    try:
        found = await books(engine)
    finally:
        await engine.dispose()
    assert found.analysed == found.generated >= 40
    assert not [message for message in caplog.messages if "never retrieved" in message or "Unhandled" in message]
    assert_balanced(found, "PostgreSQL stopped mid-cycle until the daemon met the outage, then restarted")


async def _ready(base: str | None) -> bool:
    try:
        return (await get(f"{base}/readyz"))[0] == 200
    except OSError:
        return False


async def test_connections_cut_mid_cycle_are_replaced_and_the_same_cycle_analyses_everything(
    make_settings: MakeSettings, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """pg_terminate_backend on every connection of the service mid-dispatch. The verdict writes run on the driver
    connection, so what they meet is asyncpg's own error, not SQLAlchemy's: it must still count as a lost
    connection and be retried on a fresh one, not end the cycle. The cycle lock goes with its connection: that is
    said, and the cycle still ends as it should."""
    async with recording_agent(latency=0.05) as agent:
        settings = make_settings(agent_url=agent.url, dispatch_workers=4)
        async with open_service(settings) as resources:
            cycle = asyncio.create_task(run_cycle(resources, CycleRequest(Counts(60, 0, 0))))

            async def some_analysed() -> bool:
                return (await books(engine)).analysed >= 8

            await wait_until(some_analysed)
            async with engine.connect() as connection:
                cut = await connection.scalar(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE application_name = 'cyberevents' AND datname = current_database()"
                    )
                )
            result = await cycle
    assert cut and cut >= 3  # the pool's connections, idle or mid-statement, and the cycle lock's
    assert result is not None and result.outcome is CycleOutcome.SUCCEEDED
    found = await books(engine)
    assert found.analysed == found.generated == 60
    # Whichever met a cut connection first, a verdict's write or a claim, retried on a fresh one; a claim's failure
    # also has the pool replace every older connection, so the writes then meet none (a race the load decides). The
    # write path meeting asyncpg's own error is shown deterministically in test_repository.
    assert any(
        "lost the database connection writing its outcome" in message or message.startswith("Retry 1 in")
        for message in caplog.messages
    )
    assert any(message.startswith("The cycle lock's connection was lost") for message in caplog.messages)
    assert not any(message.startswith("Could not release") for message in caplog.messages)
    assert_balanced(found, "every connection of the service terminated mid-cycle")


async def test_a_cycle_cut_short_in_an_outage_stops_at_once_and_its_verdicts_wait_for_the_next(
    make_settings: MakeSettings, database_url: URL, server_url: URL, engine: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """The stop's grace over, verdicts in hand that wait out a database outage are cut short: the cycle ends
    within FINISH_AFTER_CANCEL_SECONDS rather than WRITE_RETRY_SECONDS (a Kubernetes pod's grace is 45 s), and
    their events stay pending for the next cycle, which delivers each once."""
    proxy = Proxy(server_url)
    await proxy.up()
    async with recording_agent(latency=0.2) as agent:
        url = proxy.url(database_url).render_as_string(hide_password=False)
        async with open_service(make_settings(database_url=url, agent_url=agent.url, dispatch_workers=4)) as cut:
            cycle = asyncio.create_task(run_cycle(cut, CycleRequest(Counts(40, 0, 0))))

            async def some_analysed() -> bool:
                return (await books(engine)).analysed >= 4

            await wait_until(some_analysed)
            await proxy.down()
            await wait_until(lambda: any("writing its outcome" in message for message in caplog.messages))
            cancelled_at = time.monotonic()
            cycle.cancel()
            await asyncio.wait([cycle])
            stopped_within = time.monotonic() - cancelled_at
        assert stopped_within < WRITE_RETRY_SECONDS / 2
        assert any(
            message.endswith("recording its outcome was cut short; it stays pending") for message in caplog.messages
        )
        assert not any("could not record its outcome" in message for message in caplog.messages)
        stranded = await books(engine)
        assert stranded.analysed < stranded.generated == 40 and stranded.failed == 0

        async with open_service(make_settings(agent_url=agent.url, dispatch_workers=4)) as resources:
            await run_cycle(resources, CycleRequest(Counts(0, 0, 0)))
    found = await books(engine)
    assert found.analysed == found.generated == 40
    assert_balanced(found, "a cycle cut short while its verdicts waited out a database outage, then the next cycle")
