"""The health server for orchestrators: /livez (/healthz), /readyz, /status and /metrics, and the status page
for people at /. Read-only.

Liveness never looks at the database or the agent (a database blip must not get every replica restarted);
readiness does. Bodies follow the `application/health+json` shape: status pass / warn / fail, and checks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from aiohttp import web
from aiohttp.typedefs import Handler
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine

from . import __version__, dashboard, healthjson, ledger, migrations, page, repository
from .aio import stopped_within
from .breaker import CircuitBreaker
from .cycle import CycleResult
from .db import database_error, database_problem, driver_error, one_line, session_factory
from .healthjson import check
from .metrics import CONTENT_TYPE, Metrics
from .models import CycleTrigger, EventStatus
from .report import latest_scorecard
from .scheduler import Scheduler
from .scoring import Scorecard
from .settings import Settings
from .tally import Activity, Tally

log = logging.getLogger(__name__)
T = TypeVar("T")

# Requests answered at once; more wait their turn, parked, their clients sending nothing else meanwhile.
MAX_REQUESTS_AT_ONCE = 64
# How long a database read behind /readyz, /status or /metrics is reused: scrapes and probes cost no query each.
REMEMBER_SECONDS = 1.0
# How long the status page's database reads are reused: it polls every few seconds, in as many tabs as are open.
PAGE_SECONDS = 2.0
# The loop monitor beats every second; this many seconds without a beat means the loop is not healthy.
STALE_AFTER = 10.0
# A beat this late means something holds the loop (a long computation, a blocking call): worth a person's look.
LAG_WARN_SECONDS = 1.0


@dataclass
class RunningCycle:
    trigger: CycleTrigger
    slot_at: datetime | None
    started_at: datetime
    tally: Tally


@dataclass
class DaemonState:
    """What the daemon is doing, for the health endpoints to read; the daemon is its only writer."""

    stop: asyncio.Event
    started_at: float = field(default_factory=time.monotonic)
    beat: float = field(default_factory=time.monotonic)
    loop_lag: float = 0.0
    scheduler: Scheduler | None = None
    scheduler_task: asyncio.Task[None] | None = None
    running: RunningCycle | None = None
    last: CycleResult | None = None
    pending: int | None = None
    dead_lettered: int | None = None
    breaker: CircuitBreaker | None = None
    activity: Activity = field(default_factory=Activity)  # the dispatcher's, once it exists
    database: str | None = None  # why the database fails the daemon's loops; None while it answers

    def database_failed(self, exc: BaseException, doing: str) -> None:
        """One log line per change of the database's state, not one per try."""
        problem = database_problem(exc)
        if problem != self.database:
            log.warning("Database unavailable while %s: %s; retrying with backoff", doing, problem)
        self.database = problem

    def database_back(self) -> None:
        if self.database is not None:
            log.info("Database available again")
        self.database = None

    @contextmanager
    def outage_tolerated(self, doing: str) -> Iterator[None]:
        """A database error inside is an outage to wait out, said once, not raised; a success says it is back.

        Any other error is a bug, raised: the service stops loudly rather than waiting it out.
        """
        try:
            yield
        except Exception as exc:
            if not database_error(exc):
                raise
            self.database_failed(exc, doing)
        else:
            self.database_back()

    async def monitor_loop(self) -> None:
        """Beat every second and measure how late the loop woke up: the event-loop lag."""
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            expected = loop.time() + 1.0
            if not await stopped_within(self.stop, 1.0):
                self.loop_lag = max(0.0, loop.time() - expected)
            self.beat = time.monotonic()


class Recent(Generic[T]):
    """What `read` returned less than `ttl` seconds ago, whatever it was; callers that ask while it runs share one
    read. `read` must return, not hang: its own timeouts bound it."""

    def __init__(self, read: Callable[[], Awaitable[T]], ttl: float) -> None:
        self._read, self._ttl = read, ttl
        self._lock = asyncio.Lock()
        self._read_at: float | None = None
        self._value: T

    async def get(self) -> T:
        async with self._lock:
            if self._read_at is None or time.monotonic() - self._read_at >= self._ttl:
                self._value = await self._read()
                self._read_at = time.monotonic()
            return self._value


def _state_of(state: DaemonState) -> str:
    if state.stop.is_set():
        return "draining"
    if state.running is not None:
        return "running"
    return "starting" if state.scheduler is None else "idle"


async def unless_database_away(read: Awaitable[T]) -> T | None:
    """What `read` returns; None when the database is away or too slow (its pool's wait included), so that the
    caller keeps its last figures. Any other error is a bug, raised."""
    try:
        return await read
    except Exception as exc:
        if not database_error(exc) and not isinstance(exc, PoolTimeout):
            raise
        return None


def circuit_status(breaker: CircuitBreaker | None) -> dict[str, Any]:
    """The agent circuit as /status shows it: why dispatch pauses, and for how long."""
    if breaker is None or breaker.state == "closed":
        return {"state": "closed"}
    return {"state": breaker.state, "reason": breaker.reason, "retry_in_seconds": round(breaker.reopens_in(), 1)}


def create_app(
    state: DaemonState, engine: AsyncEngine, metrics: Metrics, settings: Settings, page_engine: AsyncEngine
) -> web.Application:
    """`engine` is the health server's own (db.open_probe_engine): its reads never queue behind a cycle's, nor
    a cycle's behind them; the status page reads through `page_engine`, another such pool, so that a slow page never
    fails a probe. Database reads are remembered for a second (the page's for PAGE_SECONDS) and shared by the
    requests that wait for them, so that probes, scrapes and the page open in many tabs cost a cycle nothing.
    """
    schedule = {"cron": settings.schedule, "timezone": settings.schedule_tz}
    at_once = asyncio.Semaphore(MAX_REQUESTS_AT_ONCE)

    @web.middleware
    async def bounded(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in ("/livez", "/healthz"):  # reads nothing, waits for nothing: never behind a flood
            return await handler(request)
        async with at_once:
            return await handler(request)

    async def read_database() -> healthjson.Checks:
        read_at = datetime.now(UTC)
        try:
            async with engine.connect() as connection:
                revision = await connection.run_sync(migrations.current_revision_of)
        except Exception as exc:  # whatever the driver raises, the answer is the same: not ready
            detail = "no answer within 2 s" if isinstance(exc, TimeoutError) else one_line(driver_error(exc))[:300]
            return {"database:connection": check("fail", "datastore", output=f"database unreachable: {detail}")}
        head = migrations.head_revision()
        return {
            "database:connection": check("pass", "datastore", time=read_at),
            "database:schema": check(
                "pass" if revision == head else "fail",
                "datastore",
                revision,
                output=f"schema at {revision or 'empty'}, head is {head}",
                time=read_at,
            ),
        }

    async def read_backlog() -> tuple[int, int] | None:
        """The pending and dead-letter counts; None while the database is away."""
        try:
            async with session_factory(engine)() as session:
                pending = await repository.count_by_status(session, EventStatus.PENDING)
                return pending, await repository.count_by_status(session, EventStatus.DEAD_LETTERED)
        except Exception:  # whatever the driver raises
            return None

    async def refresh_backlog() -> None:
        """Kept at their last known figures while the database is away."""
        if (counts := await backlog.get()) is not None:
            state.pending, state.dead_lettered = counts

    database, backlog = Recent(read_database, REMEMBER_SECONDS), Recent(read_backlog, REMEMBER_SECONDS)

    def loop_checks() -> healthjson.Checks:
        """The event loop beats every second: a missing beat fails, a late one warns."""
        since_beat, lag = time.monotonic() - state.beat, state.loop_lag
        return {
            "event-loop:lag": check(
                "warn" if lag >= LAG_WARN_SECONDS else "pass",
                "system",
                round(lag * 1000, 1),
                "ms",
                output=f"the event loop woke {lag:.1f} s late: something holds it",
            ),
            "event-loop:heartbeat": check(
                "fail" if since_beat >= STALE_AFTER else "pass",
                "system",
                round(since_beat, 1),
                "s",
                output=f"no heartbeat for {since_beat:.0f} s: the event loop is stuck",
            ),
        }

    async def livez(request: web.Request) -> web.Response:
        scheduler = state.scheduler_task
        alive = scheduler is not None and not scheduler.done()
        waiting = scheduler is None and not state.stop.is_set()  # starting up: waiting for the database
        stopping = not alive and state.stop.is_set()
        observed = "running" if alive else "waiting for the database" if waiting else "stopping" if stopping else "died"
        scheduler_check = check(
            "pass" if alive or waiting or stopping else "fail",
            "component",
            observed,
            output="the scheduler died: the process must be restarted",
        )
        return healthjson.response({"scheduler:state": scheduler_check, **loop_checks()})

    async def readiness() -> healthjson.Checks:
        """What /readyz reports: the database and the schema, draining (fails); the agent circuit open, dead letters
        waiting, a late loop (warn: ready, but a person should look)."""
        await refresh_backlog()
        circuit = circuit_status(state.breaker)
        return {
            **await database.get(),
            "daemon:shutdown": check(
                "fail" if state.stop.is_set() else "pass", "system", output="draining for shutdown"
            ),
            "agent:circuit": check(
                "pass" if circuit["state"] == "closed" else "warn",
                "component",
                circuit["state"],
                output=f"dispatch paused: {circuit.get('reason')}",
            ),
            "events:dead-lettered": check(
                "warn" if state.dead_lettered else "pass",
                "datastore",
                state.dead_lettered,
                output=f"{state.dead_lettered} events dead-lettered: `python -m cyberevents requeue` sends them again",
            ),
            "event-loop:lag": loop_checks()["event-loop:lag"],
        }

    async def readyz(request: web.Request) -> web.Response:
        return healthjson.response(await readiness())

    def running_cycle() -> dict[str, Any] | None:
        if (running := state.running) is None:
            return None
        return {
            "trigger": running.trigger.value,
            "slot": running.slot_at.isoformat() if running.slot_at else None,
            "started_at": running.started_at.isoformat(),
            "in_flight": running.tally.in_flight,
            "writing": running.tally.writing,
            "kinds": {
                kind.value: {"total": t.total, "analysed": t.analysed, "failed": t.failed}
                for kind, t in running.tally.kinds.items()
            },
        }

    async def status(request: web.Request) -> web.Response:
        await refresh_backlog()
        next_run = state.scheduler.next_run if state.scheduler else None
        body: dict[str, Any] = {
            "version": __version__,
            "state": _state_of(state),
            "uptime_seconds": round(time.monotonic() - state.started_at, 1),
            "schedule": schedule | {"next_run": next_run.isoformat() if next_run else None},
            "running_cycle": running_cycle(),
            "last_cycle": None,
            "pending_backlog": state.pending,
            "dead_lettered": state.dead_lettered,
            "agent_circuit": circuit_status(state.breaker),
            "database": {"status": "ok"} if state.database is None else {"status": "fail", "output": state.database},
        }
        if state.last is not None:
            body["last_cycle"] = state.last.as_json()
        return web.json_response(body)

    async def read_ledger() -> tuple[datetime | None, Scorecard | None] | None:
        """The last success and the last scorecard, as the ledger has them; None while the database is away."""

        async def read() -> tuple[datetime | None, Scorecard | None]:
            async with session_factory(engine)() as session:
                return await ledger.last_success(session), (await latest_scorecard(session))[1]

        return await unless_database_away(read())

    ledger_figures = Recent(read_ledger, REMEMBER_SECONDS)

    async def metrics_endpoint(request: web.Request) -> web.Response:
        metrics.ready.set(healthjson.worst(await readiness()) != "fail")  # the backlog refreshed with it
        if (figures := await ledger_figures.get()) is not None:
            metrics.observe_ledger(*figures)
        metrics.loop_lag.set(state.loop_lag)
        metrics.writing.set(state.activity.writing)
        if state.pending is not None:
            metrics.pending.set(state.pending)
        if state.dead_lettered is not None:
            metrics.dead_lettered.set(state.dead_lettered)
        metrics.circuit_open.set(state.breaker is not None and state.breaker.state != "closed")
        metrics.in_flight.set(state.activity.requests)
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def read_page() -> dashboard.Snapshot | None:
        return await unless_database_away(dashboard.read(session_factory(page_engine), settings.detection_threshold))

    page_data, configuration = Recent(read_page, PAGE_SECONDS), page.configuration(settings)
    last_read: dashboard.Snapshot | None = None

    async def status_page(request: web.Request) -> web.Response:
        nonlocal last_read
        last_read = await page_data.get() or last_read
        checks = await readiness()
        now = page.Now(
            _state_of(state),
            healthjson.failing(checks),
            state.scheduler.next_run if state.scheduler else None,
            state.breaker,
            state.running,
            state.last,
        )
        script_nonce = page.nonce()
        html = page.render_page(
            last_read, now, configuration, script_nonce, main_only=request.query.get("part") == "main"
        )
        return web.Response(text=html, content_type="text/html", headers=page.headers(script_nonce))

    app = web.Application(middlewares=[bounded])
    app.router.add_get("/", status_page)
    app.router.add_get("/livez", livez)
    app.router.add_get("/healthz", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/status", status)
    app.router.add_get("/metrics", metrics_endpoint)
    return app
