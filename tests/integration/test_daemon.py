"""The daemon on short seconds schedules, in-process against real PostgreSQL and a real HTTP agent."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from cyberevents.cycle import CycleRequest, run_cycle
from cyberevents.generator import Counts
from cyberevents.metrics import Metrics
from cyberevents.models import Cycle, CycleOutcome, CycleTrigger, Event, EventStatus
from cyberevents.resources import open_service
from cyberevents.service import Daemon
from cyberevents.settings import Settings
from tests.agents import Responder, bundled_rules, recording_agent
from tests.conftest import MakeSettings
from tests.health_schema import health_json_errors
from tests.proxy import Proxy
from tests.support import ledger, wait_until
from tests.unit.test_deployment_files import exposed, metric_names, monitored

pytestmark = pytest.mark.slow  # processes, servers or long waits: out of the fast loop


@asynccontextmanager
async def running(daemon: Daemon) -> AsyncIterator[Daemon]:
    task = asyncio.create_task(daemon.run(), name="daemon-under-test")
    try:
        yield daemon
    finally:
        daemon.state.stop.set()
        await asyncio.wait_for(task, 30)


def daemon_settings(make_settings: MakeSettings, agent_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "agent_url": agent_url,
        "dispatch_workers": 1,
        "login_events": 10,
        "firewall_events": 0,
        "patch_events": 0,
        "run_on_start": False,
        "health_port": 0,
        "cycle_timeout_seconds": 60,  # the cycles here outlast their seconds-long interval on purpose
    }
    return make_settings(**(values | overrides))


async def test_slots_during_a_cycle_coalesce_into_one_catch_up_and_cycles_never_overlap(
    make_settings: MakeSettings, engine: AsyncEngine
) -> None:
    """Every 2 s, cycles of about 5 s: the slots that fall during a cycle fold into one catch-up."""
    async with recording_agent(latency=0.5) as agent:
        settings = daemon_settings(make_settings, agent.url, schedule="*/2 * * * * *", misfire_grace_seconds=10)

        async def two_cycles_done() -> bool:
            rows = await ledger(engine)
            return sum(1 for row in rows if row.seed is not None and row.finished_at is not None) >= 2

        async with running(Daemon(settings, asyncio.Event())):
            await wait_until(two_cycles_done, within=40)

    rows = await ledger(engine)
    cycles = [row for row in rows if row.seed is not None and row.finished_at is not None]
    first, catch_up = cycles[0], cycles[1]
    assert first.trigger is CycleTrigger.SCHEDULE
    assert catch_up.trigger is CycleTrigger.CATCH_UP
    assert catch_up.started_at >= first.finished_at  # type: ignore[operator]
    assert catch_up.started_at - first.finished_at < timedelta(seconds=1)  # type: ignore[operator]
    assert first.slot_at is not None
    assert catch_up.slot_at is not None
    folded = [row for row in rows if row.slot_at is not None and first.slot_at < row.slot_at < catch_up.slot_at]
    assert folded  # the slots between the two cycles ...
    assert {row.outcome for row in folded} == {CycleOutcome.COALESCED}  # ... were coalesced into the catch-up
    assert all(catch_up.slot_at.isoformat() in (row.reason or "") for row in folded)
    assert agent.peak_in_flight == 1  # one worker: two cycles at once would have shown 2
    assert len({row.slot_at for row in rows}) == len(rows)


async def test_a_catch_up_later_than_the_grace_is_missed_and_logged(
    make_settings: MakeSettings, engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    """Every 4 s, cycles of about 6 s, 1 s of grace: the slot that fell mid-cycle is 2 s late at its end."""
    async with recording_agent(latency=0.5) as agent:
        settings = daemon_settings(
            make_settings, agent.url, schedule="*/4 * * * * *", misfire_grace_seconds=1, login_events=12
        )

        async def missed() -> bool:
            return any(row.outcome is CycleOutcome.MISSED for row in await ledger(engine))

        with caplog.at_level(logging.INFO):
            async with running(Daemon(settings, asyncio.Event())):
                await wait_until(missed, within=30)

    [row] = [row for row in await ledger(engine) if row.outcome is CycleOutcome.MISSED]
    assert row.reason is not None
    assert row.reason.startswith("missed by 2 s") or row.reason.startswith("missed by 3 s")
    assert any("missed by" in message and row.slot_at.isoformat() in message for message in caplog.messages)  # type: ignore[union-attr]


async def test_run_on_start_runs_once_unless_a_cycle_ran_since_the_latest_slot(
    make_settings: MakeSettings, engine: AsyncEngine
) -> None:
    async with recording_agent() as agent:
        settings = daemon_settings(make_settings, agent.url, schedule="0 0 1 1 *", run_on_start=True)

        async def started() -> bool:
            return any(row.trigger is CycleTrigger.START and row.finished_at for row in await ledger(engine))

        async with running(Daemon(settings, asyncio.Event())):
            await wait_until(started)
        async with running(Daemon(settings, asyncio.Event())) as restarted:  # a restarting replica
            await wait_until(lambda: _scheduler_waiting(restarted))
    assert [row.trigger for row in await ledger(engine)] == [CycleTrigger.START]


async def _scheduler_waiting(daemon: Daemon) -> bool:
    return daemon.state.scheduler is not None and daemon.state.scheduler.next_run is not None


async def test_a_hanging_cycle_is_cut_off_and_its_events_stay_pending(make_settings: MakeSettings) -> None:
    """The agent answers three requests, then hangs; the deadline leaves time to store the events on a loaded
    machine (1 s did not, once)."""
    async with recording_agent(answers=3) as agent:
        settings = make_settings(agent_url=agent.url, dispatch_workers=1)
        async with open_service(settings) as resources:
            request = CycleRequest(Counts(10, 0, 0), CycleTrigger.SCHEDULE, timeout=timedelta(seconds=5))
            result = await run_cycle(resources, request)
            async with resources.sessions() as session:
                events = (await session.scalars(select(Event))).all()
                [cycle] = (await session.scalars(select(Cycle))).all()
    assert result is not None
    assert result.outcome is CycleOutcome.TIMED_OUT
    assert cycle.outcome is CycleOutcome.TIMED_OUT
    assert cycle.reason == "cut off after 5s; undelivered events stay pending"
    statuses = [event.status for event in events]
    assert statuses.count(EventStatus.ANALYSED) == result.analysed == 3
    assert statuses.count(EventStatus.PENDING) == 7
    assert all(event.lease_owner is None for event in events if event.status is EventStatus.PENDING)


async def get(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        body = await response.text()
        if response.content_type.endswith("json"):
            return response.status, await response.json(content_type=None)
        return response.status, body


async def test_health_endpoints_follow_the_database_and_never_restart_for_it(
    make_settings: MakeSettings, database_url: URL, server_url: URL, engine: AsyncEngine
) -> None:
    proxy = Proxy(server_url)
    await proxy.reserve_port()
    async with recording_agent() as agent:
        settings = daemon_settings(
            make_settings, agent.url, database_url=proxy.url(database_url).render_as_string(hide_password=False),
            schedule="0 0 1 1 *", agent_token="tok-never-shown",
        )  # fmt: skip
        daemon = Daemon(settings, asyncio.Event())
        async with running(daemon):
            await wait_until(lambda: _health_up(daemon))
            base = daemon.health_url
            # The database is unreachable from the start: alive, not ready.
            status, live = await get(f"{base}/livez")
            assert status == 200 and health_json_errors(live) == []
            status, body = await get(f"{base}/readyz")
            assert status == 503 and health_json_errors(body) == []
            assert body["status"] == "fail"
            [connection] = body["checks"]["database:connection"]
            assert connection["output"].startswith("database unreachable")

            await proxy.up()
            await wait_until(lambda: _ready(base), within=40)
            status, body = await get(f"{base}/readyz")
            assert health_json_errors(body) == [] and body["status"] == "pass"
            assert body["checks"]["database:schema"][0]["status"] == "pass"
            assert all("output" not in entry for entries in body["checks"].values() for entry in entries)

            await proxy.down()
            await wait_until(lambda: _not_ready(base))
            status, body = await get(f"{base}/livez")
            assert status == 200 and health_json_errors(body) == []
            assert body["status"] == "pass"
            assert body["checks"]["event-loop:lag"][0]["observedUnit"] == "ms"
            await proxy.up()
            await wait_until(lambda: _ready(base))
            await wait_until(lambda: _scheduler_waiting(daemon))

            status, report = await get(f"{base}/status")
            assert status == 200
            assert report["state"] == "idle"
            assert report["schedule"]["cron"] == "0 0 1 1 *"
            assert report["schedule"]["next_run"].endswith("+00:00")
            assert report["pending_backlog"] == 0
            assert report["dead_lettered"] == 0
            assert report["agent_circuit"] == {"state": "closed"}
            status, exposition = await get(f"{base}/metrics")
            assert status == 200
            families = {family.name: family for family in text_string_to_metric_families(exposition)}
            assert set(families) >= {
                "cyberevents_cycles",
                "cyberevents_events",
                "cyberevents_dispatch_seconds",
                "cyberevents_cycle_duration_seconds",
                "cyberevents_dispatch_in_flight",
                "cyberevents_pending_events",
                "cyberevents_last_success_timestamp_seconds",
                "cyberevents_dead_lettered_events",
                "cyberevents_agent_circuit_open",
                "cyberevents_dispatch_writes_pending",
                "cyberevents_agent_retries",
                "cyberevents_agent_responses",
                "cyberevents_event_loop_lag_seconds",
                "process_resident_memory_bytes",
                "process_open_fds",
                "process_cpu_seconds",
                "python_gc_collections",
            }
            async with aiohttp.ClientSession() as http:  # nothing on the health server changes state
                for path in ("/livez", "/readyz", "/status", "/metrics"):
                    for method in ("POST", "PUT", "DELETE"):
                        async with http.request(method, f"{base}{path}") as response:
                            assert response.status == 405
            for path in ("/livez", "/readyz", "/status", "/metrics"):
                _, text = await get(f"{base}{path}")
                assert "tok-never-shown" not in str(text)
        await proxy.down()


async def _health_up(daemon: Daemon) -> bool:
    return daemon.health_url is not None


async def _ready(base: str | None) -> bool:
    return (await get(f"{base}/readyz"))[0] == 200


async def _not_ready(base: str | None) -> bool:
    return (await get(f"{base}/readyz"))[0] == 503


async def test_readiness_warns_of_dead_letters_and_an_open_circuit_and_stays_ready(
    make_settings: MakeSettings, engine: AsyncEngine
) -> None:
    async with recording_agent() as agent:
        settings = daemon_settings(make_settings, agent.url, schedule="0 0 1 1 *", run_on_start=True)
        daemon = Daemon(settings, asyncio.Event())
        async with running(daemon):
            await wait_until(lambda: daemon.state.last is not None and daemon.state.breaker is not None)
            async with engine.begin() as connection:
                await connection.execute(text("UPDATE events SET status = 'dead_lettered' WHERE id <= 2"))
            assert daemon.state.breaker is not None
            for _ in range(10):  # ten transient failures in a row: the agent's circuit opens
                daemon.state.breaker.record(True, "agent unreachable: connection refused")

            async def warned() -> bool:  # the dead letters are counted again within a second
                return bool(
                    (await get(f"{daemon.health_url}/readyz"))[1]["checks"]["events:dead-lettered"][0]["status"]
                    == "warn"
                )

            await wait_until(warned)
            status, body = await get(f"{daemon.health_url}/readyz")
    assert status == 200 and health_json_errors(body) == []  # ready: a person should look, nothing should restart
    assert body["status"] == "warn"
    assert body["checks"]["events:dead-lettered"] == [
        {
            "status": "warn",
            "componentType": "datastore",
            "observedValue": 2,
            "output": "2 events dead-lettered: `python -m cyberevents requeue` sends them again",
        }
    ]
    [circuit] = body["checks"]["agent:circuit"]
    assert (circuit["status"], circuit["observedValue"]) == ("warn", "open")
    assert (
        circuit["output"]
        == "dispatch paused: 10 of the last 20 deliveries failed: agent unreachable: connection refused"
    )


def first_try_unavailable() -> Responder:
    """503 to each event's first request, the bundled verdict to its retry: every delivery retried once."""
    seen: set[int] = set()

    def respond(request: dict[str, Any]) -> web.Response:
        if request["event_id"] not in seen:
            seen.add(request["event_id"])
            return web.Response(status=503, text="busy")
        return bundled_rules(request)

    return respond


def samples_of(exposition: str | bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = exposition.decode() if isinstance(exposition, bytes) else exposition
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_a_restarted_replica_reports_the_ledgers_last_success_and_each_request_is_counted(
    make_settings: MakeSettings, engine: AsyncEngine
) -> None:
    metrics = Metrics()
    async with recording_agent(respond=first_try_unavailable()) as agent:
        settings = daemon_settings(make_settings, agent.url, agent_max_retries=1, schedule="0 0 1 1 *")
        async with open_service(settings, metrics) as resources:  # a process that ran a cycle, then stopped
            earlier = await run_cycle(resources, CycleRequest(Counts(10, 0, 0)))
        assert earlier is not None and earlier.outcome is CycleOutcome.SUCCEEDED
        counted = samples_of(metrics.render())
        # Another process starts: it runs no cycle (one ran since the latest slot), yet reports the ledger's.
        daemon = Daemon(settings.model_copy(update={"run_on_start": True}), asyncio.Event())
        async with running(daemon):
            await wait_until(lambda: daemon.state.scheduler is not None)
            _, exposition = await get(f"{daemon.health_url}/metrics")
    async with engine.connect() as connection:
        finished = (await connection.execute(select(func.max(Cycle.finished_at)))).scalar_one()
    reported = samples_of(exposition)
    assert finished is not None and daemon.state.last is None  # it ran nothing itself
    assert reported[("cyberevents_last_success_timestamp_seconds", ())] == finished.timestamp()
    # The last scorecard, from the ledger: ten benign logins, none flagged by the bundled rules.
    assert reported[("cyberevents_score", (("figure", "false_positive_rate"),))] == 0.0
    # The first process's 10 events, each asked twice: a 503, then a verdict.
    assert counted[("cyberevents_agent_responses_total", (("status_class", "5xx"),))] == 10
    assert counted[("cyberevents_agent_responses_total", (("status_class", "2xx"),))] == 10
    assert counted[("cyberevents_agent_retries_total", ())] == 10


async def test_metrics_count_requests_in_flight_apart_from_answers_being_recorded(make_settings: MakeSettings) -> None:
    async with recording_agent(answers=3) as agent:  # three verdicts, then the agent holds every request
        settings = daemon_settings(
            make_settings, agent.url, schedule="0 0 1 1 *", run_on_start=True, dispatch_workers=4
        )
        daemon = Daemon(settings, asyncio.Event())
        async with running(daemon):
            await wait_until(lambda: agent.in_flight == 4)  # every worker waits on the agent
            _, exposition = await get(f"{daemon.health_url}/metrics")
            agent.stopping.set()
    reported = samples_of(exposition)
    assert metric_names(monitored()[1]) <= exposed(exposition)  # what the alerts and the dashboard read, served
    assert reported[("cyberevents_dispatch_in_flight", ())] == 4  # requests only: at most DISPATCH_WORKERS
    assert reported[("cyberevents_dispatch_writes_pending", ())] == 0  # nothing answered is waiting to be recorded
    assert reported[("cyberevents_ready", ())] == 1
