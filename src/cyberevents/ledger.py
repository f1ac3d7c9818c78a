"""The cycle ledger: each cycle (or slot) and how it ended, its per-kind figures, and the lock a cycle runs under."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from .db import database_unavailable, driver_error
from .models import Cycle, CycleOutcome, CycleScore, CycleStat, CycleTrigger, Event, EventKind, EventStatus, Severity

log = logging.getLogger(__name__)


async def next_cycle_id(session: AsyncSession) -> int:
    """Reserve a cycle id first: the cycle's seed derives from it."""
    return int(await session.scalar(text("SELECT nextval(pg_get_serial_sequence('cycles', 'id'))")) or 0)


async def insert_cycle(
    session: AsyncSession,
    cycle_id: int,
    started_at: datetime,
    seed: int,
    trigger: CycleTrigger,
    slot_at: datetime | None = None,
) -> bool:
    """Open a cycle in the ledger; False when its slot already has a row (another replica took it)."""
    inserted = await session.scalar(
        pg_insert(Cycle)
        .values(
            id=cycle_id,
            started_at=started_at,
            seed=seed,
            trigger=trigger,
            slot_at=slot_at,
            outcome=CycleOutcome.RUNNING,
        )
        .on_conflict_do_nothing(index_elements=[Cycle.slot_at])
        .returning(Cycle.id)
    )
    return inserted is not None


async def record_slot(
    session: AsyncSession, slot_at: datetime, trigger: CycleTrigger, outcome: CycleOutcome, reason: str
) -> bool:
    """Record the fate of a slot that got no cycle of its own (coalesced, missed); False if already recorded."""
    now = datetime.now(UTC)
    inserted = await session.scalar(
        pg_insert(Cycle)
        .values(
            slot_at=slot_at,
            trigger=trigger,
            started_at=now,
            finished_at=now,
            duration_seconds=0.0,
            outcome=outcome,
            reason=reason,
        )
        .on_conflict_do_nothing(index_elements=[Cycle.slot_at])
        .returning(Cycle.id)
    )
    return inserted is not None


async def ran_since(session: AsyncSession, moment: datetime) -> bool:
    """Whether any cycle (not a mere slot record) started at or after `moment`."""
    found = await session.scalar(select(Cycle.id).where(Cycle.started_at >= moment, Cycle.seed.is_not(None)).limit(1))
    return found is not None


async def insert_cycle_stats(session: AsyncSession, cycle_id: int, generated: Counter[EventKind]) -> None:
    await session.execute(
        insert(CycleStat),
        [{"cycle_id": cycle_id, "kind": kind, "generated": generated[kind]} for kind in EventKind],
    )


@dataclass(frozen=True, slots=True)
class KindStat:
    kind: EventKind
    generated: int
    analysed: int
    failed: int
    dispatch_seconds: float | None


@dataclass(frozen=True, slots=True)
class CycleSummary:
    id: int
    slot_at: datetime | None
    trigger: CycleTrigger
    started_at: datetime
    duration_seconds: float | None
    seed: int | None
    outcome: CycleOutcome
    reason: str | None
    kinds: tuple[KindStat, ...]

    @property
    def ran(self) -> bool:
        """A cycle, not a slot that never got one (coalesced, missed): only a cycle has a seed."""
        return self.seed is not None


async def recent_cycles(session: AsyncSession, limit: int = 5) -> list[CycleSummary]:
    """The latest `limit` rows of the ledger, latest first."""
    return await _summaries(session, select(Cycle).order_by(Cycle.id.desc()).limit(limit))


async def last_success(session: AsyncSession) -> datetime | None:
    """When the latest cycle that analysed every event ended, whichever process ran it."""
    query = select(func.max(Cycle.finished_at)).where(Cycle.outcome == CycleOutcome.SUCCEEDED)
    return await session.scalar(query)


async def cycles_by_id(session: AsyncSession, ids: Sequence[int]) -> list[CycleSummary]:
    """These rows of the ledger, latest first."""
    return await _summaries(session, select(Cycle).where(Cycle.id.in_(ids)).order_by(Cycle.id.desc()))


async def _summaries(session: AsyncSession, query: Select[Cycle]) -> list[CycleSummary]:
    cycles = (await session.scalars(query)).all()
    stats = (
        await session.scalars(select(CycleStat).where(CycleStat.cycle_id.in_([cycle.id for cycle in cycles])))
    ).all()
    by_cycle: dict[int, list[KindStat]] = {}
    for stat in sorted(stats, key=lambda s: list(EventKind).index(s.kind)):
        by_cycle.setdefault(stat.cycle_id, []).append(
            KindStat(stat.kind, stat.generated, stat.analysed, stat.failed, stat.dispatch_seconds)
        )
    return [
        CycleSummary(
            c.id,
            c.slot_at,
            c.trigger,
            c.started_at,
            c.duration_seconds,
            c.seed,
            c.outcome,
            c.reason,
            tuple(by_cycle.get(c.id, ())),
        )
        for c in cycles
    ]


async def finish_cycle(
    session: AsyncSession,
    cycle_id: int,
    finished_at: datetime,
    duration_seconds: float,
    outcome: CycleOutcome,
    kinds: Iterable[KindStat],
    reason: str | None = None,
) -> None:
    await session.execute(
        update(Cycle)
        .where(Cycle.id == cycle_id)
        .values(finished_at=finished_at, duration_seconds=duration_seconds, outcome=outcome, reason=reason)
    )
    for stat in kinds:
        await session.execute(
            update(CycleStat)
            .where(CycleStat.cycle_id == cycle_id, CycleStat.kind == stat.kind)
            .values(analysed=stat.analysed, failed=stat.failed, dispatch_seconds=stat.dispatch_seconds)
        )


async def close_abandoned_cycles(session: AsyncSession, cycle_id: int | None = None) -> list[int]:
    """Close as interrupted the 'running' cycles (or the one given) of processes that died.

    Call it only while holding the cycle lock, or having just found it free: no live process runs a cycle then.
    """
    rows = await session.scalars(
        text(
            """
            UPDATE cycles SET outcome = 'interrupted', finished_at = now(),
                              reason = 'abandoned: the process running it stopped'
            WHERE outcome = 'running' AND (CAST(:cycle_id AS bigint) IS NULL OR id = :cycle_id)
            RETURNING id
            """
        ),
        {"cycle_id": cycle_id},
    )
    return list(rows)


async def running_cycles(session: AsyncSession) -> list[int]:
    return list((await session.scalars(select(Cycle.id).where(Cycle.outcome == CycleOutcome.RUNNING))).all())


async def cycle_counts(session: AsyncSession, cycle_id: int) -> dict[EventKind, tuple[int, int]]:
    """(analysed, failed or dead-lettered) per kind of a cycle's events, whoever delivered them."""
    rows = await session.execute(
        select(Event.kind, Event.status, func.count())
        .where(Event.cycle_id == cycle_id)
        .group_by(Event.kind, Event.status)
    )
    counts = {kind: [0, 0] for kind in EventKind}
    for kind, status, count in rows:
        if status is EventStatus.ANALYSED:
            counts[kind][0] += count
        elif status in (EventStatus.FAILED, EventStatus.DEAD_LETTERED):
            counts[kind][1] += count
    return {kind: (analysed, failed) for kind, (analysed, failed) in counts.items()}


# --- sharing cycles between replicas --------------------------------------------------------------------------

# A session-level advisory lock, held by the process running a cycle for as long as the cycle runs: it dies with
# that process's connection, so a free lock with a 'running' cycle means the cycle's owner is gone.
CYCLE_LOCK_KEY = 0x637962657276_02


@asynccontextmanager
async def cycle_lock(engine: AsyncEngine) -> AsyncIterator[bool]:
    """Try to take the cycle lock on a connection of its own, held while inside; yields whether it was free."""
    async with engine.connect() as connection:
        taken = bool(await connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": CYCLE_LOCK_KEY}))
        await connection.commit()
        try:
            yield taken
        finally:
            if taken:
                await _unlock_cycle(connection)


async def _unlock_cycle(connection: AsyncConnection) -> None:
    """Release the cycle lock; if its connection was lost meanwhile, the lock went with it: say so, go on."""
    try:
        await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": CYCLE_LOCK_KEY})
        await connection.commit()
    except Exception as exc:
        if not database_unavailable(exc):
            raise
        log.warning(
            "The cycle lock's connection was lost during the cycle (%s): another process may have started a cycle "
            "meanwhile; leases still keep each event to one dispatcher",
            driver_error(exc),
        )


async def cycle_lock_held(session: AsyncSession) -> bool:
    """Whether some live process holds the cycle lock, seen in pg_locks without taking it."""
    held = await session.scalar(
        text(
            """
            SELECT EXISTS (SELECT 1 FROM pg_locks
                           WHERE locktype = 'advisory' AND granted AND objsubid = 1
                             AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                             AND (classid::bigint << 32 | objid::bigint) = :key)
            """
        ),
        {"key": CYCLE_LOCK_KEY},
    )
    return bool(held)


async def prune_cycles(session: AsyncSession, cutoff: datetime, batch: int) -> int:
    """Delete up to `batch` finished cycles started before `cutoff` that no longer have events; returns how many.
    A scored cycle stays, with its per-kind figures and its scorecard: `score` answers for it after its events."""
    result = await session.execute(
        text(
            """
            DELETE FROM cycles WHERE id IN (
                SELECT id FROM cycles
                WHERE started_at < :cutoff AND outcome <> 'running'
                  AND NOT EXISTS (SELECT 1 FROM events WHERE events.cycle_id = cycles.id)
                  AND NOT EXISTS (SELECT 1 FROM cycle_scores WHERE cycle_scores.cycle_id = cycles.id)
                LIMIT :batch
            )
            """
        ),
        {"cutoff": cutoff, "batch": batch},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def save_score(
    session: AsyncSession, cycle_id: int, threshold: Severity, agent_label: str, counts: dict[str, Any]
) -> None:
    """Keep a cycle's scorecard counts, replacing those of an earlier scoring of the same cycle; the agent it names
    stays the one that first answered for the cycle, whoever delivered its leftovers later."""
    statement = pg_insert(CycleScore).values(
        cycle_id=cycle_id, threshold=threshold, agent_label=agent_label, counts=counts
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[CycleScore.cycle_id],
            set_={"threshold": threshold, "counts": counts, "scored_at": func.now()},  # the agent judged stays
        )
    )


async def scores(session: AsyncSession, cycle_ids: Sequence[int]) -> list[CycleScore]:
    """The kept scorecards of these cycles, oldest first; a cycle never scored has none."""
    found = await session.scalars(
        select(CycleScore).where(CycleScore.cycle_id.in_(cycle_ids)).order_by(CycleScore.cycle_id)
    )
    return list(found.all())


async def last_scored_cycles(session: AsyncSession, count: int) -> list[int]:
    """The ids of the last `count` scored cycles, oldest first."""
    found = await session.scalars(select(CycleScore.cycle_id).order_by(CycleScore.cycle_id.desc()).limit(count))
    return sorted(found.all())


async def scored_cycles_between(session: AsyncSession, since: datetime | None, until: datetime | None) -> list[int]:
    """The ids of the scored cycles that started in [since, until), oldest first; either end may be open."""
    query = select(CycleScore.cycle_id).join(Cycle, Cycle.id == CycleScore.cycle_id)
    if since is not None:
        query = query.where(Cycle.started_at >= since)
    if until is not None:
        query = query.where(Cycle.started_at < until)
    return list((await session.scalars(query.order_by(CycleScore.cycle_id))).all())


async def scored_cycles_in(session: AsyncSession, first: int, last: int) -> list[int]:
    """The ids of the scored cycles from `first` to `last`, both included, oldest first."""
    found = await session.scalars(
        select(CycleScore.cycle_id).where(CycleScore.cycle_id.between(first, last)).order_by(CycleScore.cycle_id)
    )
    return list(found.all())
