"""Semaphore-bounded fan-out of events to the agent, each verdict written in its own session.

The feeder claims events from the database in batches (leased, `SKIP LOCKED`) and starts one task per
event, but only when one of the `workers` request slots is free: at most `workers` requests are in flight.
A task gives its request slot back as soon as the agent has answered, so the next request starts while the
verdict is being written; writes have `workers` slots of their own, and a task takes one before it lets its
request slot go, so a slow database holds the feeder back instead of piling up verdicts. At most
2 × `workers` tasks and two batches (the one being fed, the next) are held in memory, whatever the size of the
cycle. A task holds a database connection only for its final write, one round trip, so a few connections serve
any number of workers: writers queue for them on a semaphore, far cheaper than queueing in the pool itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import queue
from .agent_client import AgentClient, AgentError, Answer
from .aio import finish_even_if_cancelled
from .breaker import CircuitBreaker
from .db import database_unavailable, driver_error, one_line
from .liveness import Liveness
from .logs import log_context
from .metrics import Metrics
from .models import EventStatus
from .outage import through_outage
from .protocol import Delivery, Shape, in_ocsf
from .redaction import Redactor
from .tally import Activity, Tally

log = logging.getLogger(__name__)

Scope = Literal["own", "backlog", "shared"]


def write_connections_for(workers: int) -> int:
    """Connections the verdict writes share. Each is held for one round trip: ten keep up with any `workers`."""
    return min(workers, 10)


@dataclass(frozen=True, slots=True)
class Slots:
    """What a delivery waits for, in order: an agent request, a place among pending writes, a connection."""

    agent: asyncio.Semaphore  # requests in flight to the agent: the workers
    writes: asyncio.Semaphore
    connections: asyncio.Semaphore

    @classmethod
    def for_workers(cls, workers: int) -> Slots:
        return cls(
            asyncio.Semaphore(workers), asyncio.Semaphore(workers), asyncio.Semaphore(write_connections_for(workers))
        )


@dataclass(frozen=True, slots=True)
class Dispatcher:
    sessions: async_sessionmaker[AsyncSession]
    writes: async_sessionmaker[AsyncSession]  # autocommit: a claim or an outcome is one statement, one transaction
    agent: AgentClient
    breaker: CircuitBreaker
    workers: int
    claimant: queue.Claimant  # this process's name, liveness lock and limits, on every claim
    liveness: Liveness
    redact: Redactor
    metrics: Metrics | None = None
    payload: Shape = "native"  # AGENT_PAYLOAD
    activity: Activity = field(default_factory=Activity)  # every dispatch of this process together

    @property
    def batch_size(self) -> int:
        """Claim no more than the workers can start soon: what is claimed is unavailable to other replicas."""
        return min(self.workers, 1000)

    async def dispatch(
        self, cycle_id: int, tally: Tally, stop: asyncio.Event | None = None, scope: Scope = "own"
    ) -> int:
        """Deliver pending events until none is left to claim; returns how many were claimed.

        `own`: the cycle's own events. `backlog`: earlier cycles' leftovers. `shared`: another replica's running
        cycle, helped along (the tally then counts what this process took). Once `stop` is set no new delivery
        starts; those in flight finish. Whatever is left stays pending, its lease released so that the next
        cycle can take it at once.
        """
        claimed_total = 0
        slots = Slots.for_workers(self.workers)
        stopping = stop or asyncio.Event()
        next_batch = self._claim_next(cycle_id, scope, stopping)
        try:
            async with asyncio.TaskGroup() as tasks:
                while next_batch is not None and (claimed := await next_batch):
                    # The next batch is claimed while this one is fed, so that no request slot waits on a claim.
                    next_batch = self._claim_next(cycle_id, scope, stopping)
                    claimed_total += len(claimed)
                    if scope != "own":  # the tally learns these totals as they come
                        for delivery in claimed:
                            tally.kinds[delivery.kind].total += 1
                    for delivery in claimed:
                        await slots.agent.acquire()
                        if stopping.is_set() or not await self.breaker.admit():
                            slots.agent.release()
                            break
                        name = f"deliver-event-{delivery.event_id}"
                        tasks.create_task(self._deliver(delivery, slots, tally), name=name)
        except ExceptionGroup as group:  # deliveries raise nothing: this is the claim awaited in the group's body
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
        finally:
            await finish_even_if_cancelled(self._release_leases(after=next_batch))
        return claimed_total

    def _claim_next(self, cycle_id: int, scope: Scope, stop: asyncio.Event) -> asyncio.Task[list[Delivery]] | None:
        """Start claiming the next batch, unless the dispatch is stopping or the agent's circuit is open.

        The claim runs outside the task group, so that a database error reaches the caller as itself rather
        than wrapped in an ExceptionGroup.
        """
        if self.breaker.state == "open":
            log.warning("Agent circuit open (%s): undelivered events wait as pending", self.breaker.reason)
            return None
        if stop.is_set():
            return None
        return asyncio.create_task(self._claim(cycle_id, scope), name=f"claim-{scope}-{cycle_id}")

    async def _claim(self, cycle_id: int, scope: Scope) -> list[Delivery]:
        """The next batch, retried on a fresh connection when the pooled one was lost (a database restart, a
        terminated backend) for as long as a verdict's write would be; a statement that fails is not retried."""
        async for attempt in through_outage():
            with attempt:
                # A claim names the lock only while it is held; otherwise its lease alone keeps it this process's.
                held = await self.liveness.ensure()
                claimant = self.claimant if held else replace(self.claimant, lock=None)
                async with self.writes() as session:  # one statement: its own transaction
                    claimed = await queue.claim(
                        session, cycle_id, claimant, self.batch_size, backlog=scope == "backlog"
                    )
        # Mapped outside the retries: they are for the database, and the claim has committed.
        return claimed if self.payload == "native" else [in_ocsf(delivery) for delivery in claimed]

    async def _release_leases(self, after: asyncio.Task[list[Delivery]] | None) -> None:
        """Give back what was claimed and not delivered, the batch claimed ahead included once it has landed."""
        if after is not None:
            await asyncio.wait([after])
            if not after.cancelled():
                after.exception()  # if it failed, so did the database: the claim that was awaited reported it
        try:
            async with self.sessions() as session, session.begin():
                released = await queue.release_leases(session, self.claimant.owner)
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            log.warning("Could not release this process's claims (%s); they expire after LEASE_SECONDS", exc)
            return
        if released:
            log.info("Released %d claimed events that were not delivered; they stay pending", released)

    async def _deliver(self, delivery: Delivery, slots: Slots, tally: Tally) -> None:
        """One delivery, in a task of its own: every line it logs (retries included) names its event."""
        with log_context(event_id=delivery.event_id, kind=delivery.kind.value):
            await self._deliver_logged(delivery, slots, tally)

    async def _deliver_logged(self, delivery: Delivery, slots: Slots, tally: Tally) -> None:
        """Runs holding a request slot (taken by the feeder); once the agent has answered, the answer is recorded
        even if the cycle is cancelled meanwhile, waiting for a write slot included."""
        tally.started(delivery.kind)
        self.activity.requests += 1
        status: EventStatus | None = None
        answered = False
        try:
            try:
                asked = time.monotonic()
                outcome = await self._ask(delivery)
            except BaseException:
                slots.agent.release()
                raise
            seconds = time.monotonic() - asked
            tally.answered()
            self.activity.requests -= 1
            self.activity.writing += 1
            answered = True
            status = await finish_even_if_cancelled(self._settle(delivery, outcome, slots))
            if self.metrics is not None and status is not None:
                self.metrics.observe_delivery(delivery.kind, seconds, status is EventStatus.ANALYSED, outcome.attempts)
        finally:
            tally.finished(delivery.kind, status, answered)
            if answered:
                self.activity.writing -= 1
            else:
                self.activity.requests -= 1

    async def _settle(self, delivery: Delivery, outcome: Answer | AgentError, slots: Slots) -> EventStatus | None:
        """Swap the request slot for a write slot, then record the outcome. The write slot is taken first, so that
        a slow database holds the feeder back instead of piling up answers."""
        try:
            await slots.writes.acquire()
        finally:
            slots.agent.release()
        try:
            return await self._record(delivery, outcome, slots.connections)
        finally:
            slots.writes.release()

    async def _ask(self, delivery: Delivery) -> Answer | AgentError:
        """The agent's verdict, or why there is none; the circuit breaker hears about both."""
        try:
            answer = await self.agent.analyse(delivery)
        except AgentError as exc:
            log.warning("Event %d (%s) failed: %s", delivery.event_id, delivery.kind.value, exc)
            self.breaker.record(exc.transient, str(exc))
            return exc
        self.breaker.record(False)
        verdict = answer.verdict
        log.debug("Event %d analysed: severity=%s, score=%d", delivery.event_id, verdict.severity.value, verdict.score)
        return answer

    async def _record(
        self, delivery: Delivery, outcome: Answer | AgentError, connections: asyncio.Semaphore
    ) -> EventStatus | None:
        """Write the outcome in this task's own session, as one statement (one transaction), retried through a
        database outage; None if the database stayed away (the event stays pending, delivered again later).

        A verdict the database refuses to store (a number out of jsonb's range, say) is that event's failure, with
        the database's reason: one answer never stops the cycle, nor any later one.
        """
        try:
            return await self._write_through_outage(delivery, outcome, connections)
        except asyncio.CancelledError:
            log.warning("Event %d: recording its outcome was cut short; it stays pending", delivery.event_id)
            raise
        except Exception as exc:
            if isinstance(outcome, AgentError):
                log.error("Event %d: could not record its failure (%s); it stays pending", delivery.event_id, exc)
                return None
            refused = AgentError(f"the database refused its verdict: {one_line(driver_error(exc))}", transient=False)
            refused.attempts = outcome.attempts
            log.warning("Event %d failed: %s", delivery.event_id, refused)
            return await self._record(delivery, refused, connections)

    async def _write_through_outage(
        self, delivery: Delivery, outcome: Answer | AgentError, connections: asyncio.Semaphore
    ) -> EventStatus | None:
        """The first try runs outside stamina, whose set-up costs more CPU than the write; only a failed
        connection brings the retry machinery in."""
        try:
            return await self._write(delivery, outcome, connections)
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            cause = driver_error(exc)
            log.warning(
                "Event %d: lost the database connection writing its outcome (%s); retrying", delivery.event_id, cause
            )
        try:
            async for attempt in through_outage():
                with attempt:
                    return await self._write(delivery, outcome, connections)
        except Exception as exc:
            if not database_unavailable(exc):
                raise
            log.error("Event %d: could not record its outcome (%s); it stays pending", delivery.event_id, exc)
        return None

    async def _write(
        self, delivery: Delivery, outcome: Answer | AgentError, connections: asyncio.Semaphore
    ) -> EventStatus | None:
        async with connections:  # the task's own session, opened by the repository for this one statement
            if isinstance(outcome, AgentError):
                return await queue.record_failure(
                    self.writes, delivery.event_id, self.claimant, self.redact.storable(str(outcome)), outcome.attempts
                )
            await queue.record_analysis(
                self.writes,
                delivery.event_id,
                outcome.verdict.severity.value,
                outcome.verdict.score,
                outcome.verdict.summary,
                outcome.raw,
                outcome.attempts,
            )
            return EventStatus.ANALYSED
