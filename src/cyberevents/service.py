"""Composition root of the daemon: resources in order, scheduler and loop monitor in one task group, signals."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from . import ledger
from .aio import stopped_within
from .cycle import CycleBusy, CycleRequest, CycleResult, help_running_cycles, run_cycle
from .db import database_error, describe, open_engine, open_probe_engine
from .generator import Counts
from .health import DaemonState, RunningCycle, create_app
from .httpserver import serve
from .metrics import Metrics
from .models import CycleOutcome, CycleTrigger
from .resources import MAIN_POOL_SIZE, Resources, open_resources
from .schedule import SlotFate
from .scheduler import Scheduler
from .settings import ConfigError, Settings
from .tally import Tally

log = logging.getLogger(__name__)

# How often an idle replica looks for another replica's cycle to help.
HELP_EVERY_SECONDS = 2.0
# The longest wait between two tries of a database that fails.
MAX_BACKOFF_SECONDS = 30.0


@dataclass(slots=True)
class Stop:
    """Set by the first SIGTERM / SIGINT: start no new work. `forced` once in-flight work was cut short."""

    event: asyncio.Event
    forced: bool = False
    received: signal.Signals | None = None  # the first signal

    @property
    def exit_code(self) -> int | None:
        """130 once Ctrl-C (SIGINT) stopped the work, whatever it had done: the shell's convention."""
        return 130 if self.received is signal.SIGINT else None


@asynccontextmanager
async def graceful_stop(settings: Settings) -> AsyncIterator[Stop]:
    """Signals only set the stop event; after SHUTDOWN_GRACE_SECONDS, or at a second signal, the work is cancelled.

    A cancellation this issued ends here, quietly: what it interrupted has been recorded as such.
    """
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None
    stop = Stop(asyncio.Event())
    deadline: asyncio.TimerHandle | None = None

    def cut_short() -> None:
        stop.forced = True
        task.cancel()

    def on_signal(signum: signal.Signals) -> None:
        nonlocal deadline
        if stop.event.is_set():
            log.warning("Received %s again: stopping now", signum.name)
            cut_short()
            return
        log.info(
            "Received %s: starting no new work, giving in-flight deliveries %gs (SHUTDOWN_GRACE_SECONDS)",
            signum.name,
            settings.shutdown_grace_seconds,
        )
        stop.event.set()
        stop.received = signum
        deadline = loop.call_later(settings.shutdown_grace_seconds, cut_short)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield stop
    except asyncio.CancelledError:
        if not stop.forced:
            raise
        task.uncancel()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        if deadline is not None:
            deadline.cancel()


class Daemon:
    """`python -m cyberevents run`: cycles on a schedule, a health server, a clean stop."""

    def __init__(self, settings: Settings, stop: asyncio.Event) -> None:
        self.settings = settings
        self.state = DaemonState(stop)
        self.metrics = Metrics()
        self.health_url: str | None = None
        self._counts = Counts(settings.login_events, settings.firewall_events, settings.patch_events)
        self._working = asyncio.Lock()  # this process's own cycle, or its help to another's: one at a time

    async def run(self) -> None:
        settings, stop = self.settings, self.state.stop
        async with AsyncExitStack() as stack:
            engine = await stack.enter_async_context(open_engine(settings, pool_size=MAIN_POOL_SIZE))
            probe_engine = await stack.enter_async_context(open_probe_engine(engine))
            page_engine = await stack.enter_async_context(open_probe_engine(engine))  # the page never holds a probe up
            app = create_app(self.state, probe_engine, self.metrics, settings, page_engine)
            try:
                self.health_url = await stack.enter_async_context(
                    serve(app, settings.health_host, settings.health_port)
                )
            except OSError as exc:  # the port taken, the address not this host's: a setting to change
                address = f"{settings.health_host}:{settings.health_port}"
                raise ConfigError(f"HEALTH_HOST:HEALTH_PORT {address}: cannot listen ({exc.strerror or exc})") from None
            log.info("Health server at %s (/livez /readyz /status /metrics)", self.health_url)
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.state.monitor_loop(), name="loop-monitor")
                resources = await self._open_when_ready(stack, engine)
                if resources is None:
                    return
                self.state.breaker = resources.dispatcher.breaker
                self.state.activity = resources.dispatcher.activity
                scheduler = Scheduler(
                    settings,
                    lambda slot, trigger: self._run_cycle(resources, slot, trigger),
                    lambda fate, outcome, reason: self._record_slot(resources, fate, outcome, reason),
                    lambda moment: self._ran_since(resources, moment),
                    stop,
                    turn=self._working,  # taken before the slots are decided: a wait for it makes them late
                )
                log.info(
                    "Scheduling cycles on %r (%s); next run %s",
                    settings.schedule,
                    settings.schedule_tz,
                    "at start" if settings.run_on_start else "on the schedule",
                )
                self.state.scheduler = scheduler
                self.state.scheduler_task = tasks.create_task(scheduler.run(), name="scheduler")
                tasks.create_task(self._help_between_cycles(resources), name="helper")
        log.info("Stopped")

    async def _open_when_ready(self, stack: AsyncExitStack, engine: AsyncEngine) -> Resources | None:
        """Wait, with capped backoff, until the database answers and the schema is at head (compose start order, a
        database not created yet, a role not allowed in yet); None if stopped first. Not ready meanwhile, but live:
        a restart would not help."""
        delay = 1.0
        while True:
            with self.state.outage_tolerated(f"starting (database at {describe(self.settings.sqlalchemy_url)})"):
                return await stack.enter_async_context(open_resources(self.settings, engine, self.metrics))
            if await stopped_within(self.state.stop, delay):
                return None
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    async def _help_between_cycles(self, resources: Resources) -> None:
        """Between its own cycles, a replica shares the dispatch of a cycle another replica is running; a database
        that fails meanwhile is an outage to wait out, with capped backoff, not a reason to stop."""
        stop, pause = self.state.stop, HELP_EVERY_SECONDS
        while not stop.is_set():
            pause = min(pause * 2, MAX_BACKOFF_SECONDS)  # unless this round succeeds
            with self.state.outage_tolerated("helping other replicas"):
                async with self._working:
                    await self._help(resources)
                pause = HELP_EVERY_SECONDS
            await stopped_within(stop, pause)

    async def _help(self, resources: Resources) -> None:
        helped = await help_running_cycles(resources, self.state.stop)
        if helped.done:
            log.info("Helped another replica's cycle: delivered %d events (%d analysed)", helped.done, helped.analysed)

    async def _run_cycle(self, resources: Resources, slot: datetime | None, trigger: CycleTrigger) -> None:
        tally = Tally.of({})
        self.state.running = RunningCycle(trigger, slot, datetime.now(UTC), tally)
        try:  # the timeout comes from slot arithmetic, which refuses rather than hangs: inside, like the cycle
            timeout = self.settings.cycle_timeout()
            request = CycleRequest(self._counts, trigger, slot, timeout, self.state.stop, tally)
            result = await self._cycle_or_help(resources, request)
        except Exception as exc:  # recorded as failed where the database allowed it; the daemon lives on
            if database_error(exc):
                self.state.database_failed(exc, "running a cycle")
            else:
                log.exception("Cycle failed")
            self.metrics.cycles.labels(CycleOutcome.FAILED.value).inc()
            return
        finally:
            self.state.running = None
        self.state.database_back()
        if result is None:
            return
        self.state.last = result
        self.metrics.cycles.labels(result.outcome.value).inc()
        self.metrics.cycle_seconds.observe(result.total_seconds)  # the last success and score: from the ledger

    async def _cycle_or_help(self, resources: Resources, request: CycleRequest) -> CycleResult | None:
        """This slot's cycle; or, if another process is running one, help with it instead (None)."""
        try:
            return await run_cycle(resources, request)
        except CycleBusy as busy:
            log.info("%s: helping it instead", busy)
            await self._help(resources)
            return None

    async def _record_slot(self, resources: Resources, fate: SlotFate, outcome: CycleOutcome, reason: str) -> None:
        """The ledger row of a slot that got no cycle; if the database is away, the log line is its only record."""
        with self.state.outage_tolerated(f"recording slot {fate.slot.isoformat()} as {outcome.value}"):
            async with resources.sessions() as session, session.begin():
                await ledger.record_slot(session, fate.slot, CycleTrigger.SCHEDULE, outcome, reason)
        self.metrics.cycles.labels(outcome.value).inc()

    async def _ran_since(self, resources: Resources, moment: datetime) -> bool:
        """Whether a cycle ran since `moment`; with the database away, no: the cycle tried then fails, recorded."""
        with self.state.outage_tolerated("looking up the last cycle"):
            async with resources.sessions() as session:
                return await ledger.ran_since(session, moment)
        return False


async def run_daemon(settings: Settings) -> int:
    """0 once stopped by SIGTERM; 130 by Ctrl-C."""
    async with graceful_stop(settings) as stop:
        await Daemon(settings, stop.event).run()
    return stop.exit_code or 0
