"""One cycle: generate → store → dispatch → record. The daemon and run-once share this one code path."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from . import ledger, queue, repository
from .aio import finish_even_if_cancelled, stopped_within
from .db import database_error, driver_error
from .generator import Counts, cycle_seed, generate
from .logs import log_context
from .models import CycleOutcome, CycleTrigger, EventKind
from .resources import Resources
from .retention import prune, retention_cutoff
from .scoring import Scorecard, flagging, scorecard, to_stored
from .tally import Tally

log = logging.getLogger(__name__)

# A replica helping another one's cycle looks for new work this often.
HELP_POLL_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Redelivery:
    """Earlier cycles' leftovers this cycle delivered again."""

    total: int
    analysed: int
    failed: int
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class CycleResult:
    cycle_id: int
    seed: int
    started_at: datetime
    outcome: CycleOutcome
    kinds: tuple[ledger.KindStat, ...]
    dispatch_seconds: float
    total_seconds: float
    redelivered: Redelivery = field(default_factory=lambda: Redelivery(0, 0, 0))
    score: Scorecard | None = None
    score_seconds: float = 0.0  # scoring this cycle, and the earlier ones it delivered again

    @property
    def generated(self) -> int:
        return sum(kind.generated for kind in self.kinds)

    @property
    def failed(self) -> int:
        return sum(kind.failed for kind in self.kinds)

    @property
    def analysed(self) -> int:
        return sum(kind.analysed for kind in self.kinds)

    def as_json(self) -> dict[str, Any]:
        """The cycle as `run-once --json` prints it and `/status` shows the last one."""
        return {
            "cycle_id": self.cycle_id,
            "seed": self.seed,
            "started_at": self.started_at.isoformat(),
            "outcome": self.outcome.value,
            "kinds": {
                kind.kind.value: {
                    "total": kind.generated,
                    "analysed": kind.analysed,
                    "failed": kind.failed,
                    "seconds": kind.dispatch_seconds,
                }
                for kind in self.kinds
            },
            "redelivered": {
                "total": self.redelivered.total,
                "analysed": self.redelivered.analysed,
                "failed": self.redelivered.failed,
                "seconds": round(self.redelivered.seconds, 3),
            },
            "dispatch_seconds": round(self.dispatch_seconds, 3),
            "total_seconds": round(self.total_seconds, 3),
            "score": None if self.score is None else self.score.as_json(),
            "score_seconds": round(self.score_seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class CycleRequest:
    """What to run: how many events, why, for which slot, and within which limits."""

    counts: Counts
    trigger: CycleTrigger = CycleTrigger.ONCE
    slot_at: datetime | None = None
    timeout: timedelta | None = None
    stop: asyncio.Event = field(default_factory=asyncio.Event)  # set: start no new delivery
    tally: Tally = field(default_factory=lambda: Tally.of({}))  # live counts; add listeners to watch
    seed: int | None = None  # the cycle's own seed (run-once --seed): the same events again, for another agent


def _outcome(analysed: int, generated: int, stopped: bool) -> CycleOutcome:
    if analysed == generated:
        return CycleOutcome.SUCCEEDED
    if stopped:
        return CycleOutcome.INTERRUPTED
    return CycleOutcome.PARTIAL if analysed else CycleOutcome.FAILED


class CycleBusy(Exception):
    """Another process is running a cycle (it holds the cycle lock); the message says which."""


async def run_cycle(resources: Resources, request: CycleRequest) -> CycleResult | None:
    """Run one whole cycle and record it in the ledger; None if its slot was already taken by another run.

    Raises CycleBusy when another process is running a cycle: replicas then help it instead (help_running_cycles).
    """
    async with ledger.cycle_lock(resources.engine) as free:
        if not free:
            async with resources.sessions() as session:
                running = await ledger.running_cycles(session)
            which = f"cycle {running[0]}" if running else "a cycle"
            raise CycleBusy(f"another process is running {which} (it holds the cycle lock); try again later")
        return await _run_locked(resources, request)


async def _run_locked(resources: Resources, request: CycleRequest) -> CycleResult | None:
    started_at, clock = datetime.now(UTC), time.monotonic()
    settings = resources.settings
    async with resources.sessions() as session, session.begin():
        abandoned = await ledger.close_abandoned_cycles(session)  # the lock was free: their owners are gone
    for closed in abandoned:
        log.warning("Cycle %d was abandoned by a process that stopped: closed as interrupted", closed)
    async with resources.sessions() as session, session.begin():
        cycle_id = await ledger.next_cycle_id(session)
        base = settings.generator_seed if settings.generator_seed is not None else secrets.randbits(62)
        seed = request.seed if request.seed is not None else cycle_seed(base, cycle_id)
        opened = await ledger.insert_cycle(session, cycle_id, started_at, seed, request.trigger, request.slot_at)
        earlier = await repository.cycles_with_undelivered_events(session, retention_cutoff(settings.retention_days))
    if not opened:
        log.info("Slot %s already has a cycle (another replica ran it); skipping", request.slot_at)
        return None
    with log_context(cycle_id=cycle_id, seed=seed, slot=request.slot_at.isoformat() if request.slot_at else None):
        return await _run_opened(resources, request, cycle_id, seed, started_at, clock, earlier)


async def _run_opened(
    resources: Resources,
    request: CycleRequest,
    cycle_id: int,
    seed: int,
    started_at: datetime,
    clock: float,
    earlier: Sequence[int],
) -> CycleResult:
    """The cycle, once its ledger row is written: every log line from here on names it (logs.log_context)."""
    settings = resources.settings
    log.info("=== Starting event generation cycle at %s ===", started_at.isoformat(timespec="seconds"))
    log.info(
        "Cycle %d (%s): seed %d (regenerate with: cyberevents generate --seed %d --window-end %s)",
        cycle_id,
        request.trigger.value,
        seed,
        seed,
        started_at.isoformat(),
    )
    tally = request.tally
    backlog = Tally.of({}, doing="redelivered")  # earlier cycles' leftovers, shown as they go like the cycle's own
    backlog.listeners.extend(tally.listeners)
    redelivery_seconds = 0.0
    outcome, reason = CycleOutcome.FAILED, None
    counted: tuple[ledger.KindStat, ...] | None = None
    timeout = request.timeout.total_seconds() if request.timeout is not None else None
    deadline = asyncio.timeout(timeout)
    try:
        async with deadline:
            redelivering = time.monotonic()
            try:
                await _redeliver(resources, cycle_id, request, backlog)
            finally:  # cut off meanwhile or not, the time it took
                redelivery_seconds = time.monotonic() - redelivering
            dispatch_seconds = await _generate_and_dispatch(resources, cycle_id, seed, started_at, request, tally)
        counted = await _count(resources, cycle_id, tally)
        outcome = _outcome(sum(k.analysed for k in counted), tally.total, request.stop.is_set())
        if outcome is CycleOutcome.INTERRUPTED:
            reason = "stopped by a shutdown signal; undelivered events stay pending"
    except TimeoutError:
        if not deadline.expired():
            raise
        outcome, reason = CycleOutcome.TIMED_OUT, f"cut off after {timeout:g}s; undelivered events stay pending"
        dispatch_seconds = time.monotonic() - clock
        log.error("Cycle %d timed out after %gs (CYCLE_TIMEOUT_SECONDS)", cycle_id, timeout)
    except asyncio.CancelledError:
        outcome, reason = CycleOutcome.INTERRUPTED, "cancelled at shutdown; undelivered events stay pending"
        raise
    except Exception as exc:
        reason = resources.dispatcher.redact.storable(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        total_seconds = time.monotonic() - clock
        if counted is None:  # the cycle ended early: count what it did
            counted = await finish_even_if_cancelled(_count(resources, cycle_id, tally))
        kinds = counted
        await finish_even_if_cancelled(_close(resources, cycle_id, total_seconds, outcome, kinds, reason))
    _log_summary(kinds, outcome, total_seconds)
    scoring = time.monotonic()
    score = await _score(resources, cycle_id, earlier)
    score_seconds = time.monotonic() - scoring
    await prune(resources.sessions, settings.retention_days)
    redelivered = Redelivery(backlog.total, backlog.analysed, backlog.done - backlog.analysed, redelivery_seconds)
    return CycleResult(
        cycle_id, seed, started_at, outcome, kinds, dispatch_seconds, total_seconds, redelivered, score, score_seconds
    )


async def _score(resources: Resources, cycle_id: int, earlier: Sequence[int]) -> Scorecard | None:
    """The agent judged against the ground truth of this cycle's events, kept and logged a line per scenario; the
    earlier cycles whose leftovers this one delivered again are scored anew. None if the database failed meanwhile
    (the cycle itself is recorded, and the next cycle scores it again if its events were not all delivered)."""
    settings, version = resources.settings, resources.agent.version
    threshold = settings.detection_threshold
    agent = f"{settings.agent_name} ({version})" if version else settings.agent_name
    cards: dict[int, Scorecard] = {}
    try:
        async with resources.sessions() as session, session.begin():
            for scored in (*earlier, cycle_id):
                counts = await repository.score_counts(session, [scored], flagging(threshold))
                cards[scored] = scorecard(threshold, *counts)
                await ledger.save_score(session, scored, threshold, agent, to_stored(cards[scored]))
    except Exception as exc:
        if not database_error(exc):
            raise
        log.warning("Cycle %d: scoring failed (%s)", cycle_id, driver_error(exc))
        return None
    for line in cards[cycle_id].lines():
        log.info("Scorecard: %s", line)
    return cards[cycle_id]


async def _count(resources: Resources, cycle_id: int, tally: Tally) -> tuple[ledger.KindStat, ...]:
    """Per-kind results from the database: replicas that helped delivered some of the events."""
    try:
        async with resources.sessions() as session:
            counts = await ledger.cycle_counts(session, cycle_id)
    except Exception as exc:  # the database is what failed: the live tally is the best we know
        log.warning("Cycle %d: counting from the database failed (%s); using this process's own counts", cycle_id, exc)
        counts = {kind: (t.analysed, t.failed) for kind, t in tally.kinds.items()}
    return tuple(
        ledger.KindStat(kind, t.total, counts[kind][0], counts[kind][1], round(t.seconds, 3))
        for kind, t in tally.kinds.items()
    )


async def _redeliver(resources: Resources, cycle_id: int, request: CycleRequest, backlog: Tally) -> None:
    """First, earlier cycles' leftovers: what they, or a process that died, left undelivered; those no claim will
    take again are dead-lettered, so that nothing waits as pending for good."""
    settings = resources.settings
    async with resources.sessions() as session, session.begin():
        dead = await queue.dead_letter_undeliverable(session, resources.dispatcher.claimant)
    if dead:
        log.warning(
            "Dead-lettered %d earlier events at MAX_ATTEMPTS=%d (see their last_error)", dead, settings.max_attempts
        )
    started = time.monotonic()
    await resources.dispatcher.dispatch(cycle_id, backlog, request.stop, scope="backlog")
    if backlog.total:
        dead = sum(kind.dead_lettered for kind in backlog.kinds.values())
        log.info(
            "Redelivered %d events of earlier cycles in %.1fs: %d analysed, %d failed (%d dead-lettered after %d "
            "attempts)",
            backlog.total,
            time.monotonic() - started,
            backlog.analysed,
            backlog.done - backlog.analysed,
            dead,
            settings.max_attempts,
        )


async def _generate_and_dispatch(
    resources: Resources, cycle_id: int, seed: int, started_at: datetime, request: CycleRequest, tally: Tally
) -> float:
    async with resources.sessions() as session, session.begin():
        events = generate(seed, request.counts, started_at, subtle_share=resources.settings.subtle_share)
        generated = await repository.insert_events(session, cycle_id, events)
        await ledger.insert_cycle_stats(session, cycle_id, generated)
    log.info(
        "Stored %d events (%s)", sum(generated.values()), ", ".join(f"{generated[k]} {k.value}" for k in EventKind)
    )
    for kind in EventKind:
        tally.kinds[kind].total = generated[kind]
    clock = time.monotonic()
    await resources.dispatcher.dispatch(cycle_id, tally, request.stop)
    while not request.stop.is_set() and await _helpers_at_work(resources, cycle_id):
        await asyncio.sleep(0.2)  # replicas still hold some of this cycle's events; take over what they drop
        await resources.dispatcher.dispatch(cycle_id, tally, request.stop)
    return time.monotonic() - clock


async def _helpers_at_work(resources: Resources, cycle_id: int) -> bool:
    async with resources.sessions() as session:
        _, held_by_others = await queue.cycle_progress(session, cycle_id, resources.dispatcher.claimant.owner)
    return held_by_others > 0


async def _close(
    resources: Resources,
    cycle_id: int,
    seconds: float,
    outcome: CycleOutcome,
    kinds: tuple[ledger.KindStat, ...],
    reason: str | None,
) -> None:
    """Record how the cycle ended; best effort when the database itself is what failed."""
    try:
        async with resources.sessions() as session, session.begin():
            await ledger.finish_cycle(session, cycle_id, datetime.now(UTC), seconds, outcome, kinds, reason)
    except Exception as exc:
        log.error("Cycle %d ended %s but could not be recorded: %s", cycle_id, outcome.value, exc)


def _log_summary(kinds: tuple[ledger.KindStat, ...], outcome: CycleOutcome, seconds: float) -> None:
    for stat in kinds:
        if stat.generated:
            log.info(
                "%s events completed: %d/%d successful in %.1fs",
                stat.kind.value.capitalize(),
                stat.analysed,
                stat.generated,
                stat.dispatch_seconds,
            )
    if outcome is CycleOutcome.SUCCEEDED:
        log.info("=== Event generation cycle completed successfully in %.1fs (%.1f minutes) ===", seconds, seconds / 60)
    else:
        log.warning(
            "=== Event generation cycle ended %s with %d of %d events analysed in %.1fs (%.1f minutes) ===",
            outcome.value,
            sum(k.analysed for k in kinds),
            sum(k.generated for k in kinds),
            seconds,
            seconds / 60,
        )


async def help_running_cycles(resources: Resources, stop: asyncio.Event) -> Tally:
    """Share the cycles other replicas are running: deliver their pending events until each is closed.

    If a cycle's owner dies (the cycle lock is free while the cycle is still running), keep delivering what it
    left, its leases expiring one after another, then close it as interrupted.
    """
    dispatcher, tally = resources.dispatcher, Tally.of({})
    while not stop.is_set():
        async with resources.sessions() as session:
            running = await ledger.running_cycles(session)
        if not running:
            break
        for cycle_id in running:
            with log_context(cycle_id=cycle_id):
                claimed = await dispatcher.dispatch(cycle_id, tally, stop, scope="shared")
            async with resources.sessions() as session, session.begin():
                _, held = await queue.cycle_progress(session, cycle_id, dispatcher.claimant.owner)
                # Nothing this process could claim, nothing a live one holds: what is left (events whose deliveries
                # died too often, say) is for the next cycle. Only looks at the cycle lock: taking it, even briefly,
                # could turn away a replica starting a cycle.
                if claimed == 0 and held == 0 and not await ledger.cycle_lock_held(session):
                    await ledger.close_abandoned_cycles(session, cycle_id)
                    log.warning("Cycle %d lost its process; its events are delivered: closed", cycle_id)
        await stopped_within(stop, HELP_POLL_SECONDS)
    return tally
