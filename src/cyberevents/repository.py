"""Every query cyberevents makes, as small typed async functions over a session the caller owns."""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session
from sqlalchemy.util import await_

from .db import database_unavailable, driver_error
from .generator import Detail, GeneratedEvent
from .models import (
    DETAIL_TABLES,
    Cycle,
    CycleOutcome,
    CycleStat,
    CycleTrigger,
    Event,
    EventAnalysis,
    EventKind,
    EventStatus,
    GroundTruth,
)
from .protocol import Delivery

log = logging.getLogger(__name__)

INSERT_BATCH = 2_000


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
            id=cycle_id, started_at=started_at, seed=seed, trigger=trigger, slot_at=slot_at,
            outcome=CycleOutcome.RUNNING,
        )
        .on_conflict_do_nothing(index_elements=[Cycle.slot_at])
        .returning(Cycle.id)
    )  # fmt: skip
    return inserted is not None


async def record_slot(
    session: AsyncSession, slot_at: datetime, trigger: CycleTrigger, outcome: CycleOutcome, reason: str
) -> bool:
    """Record the fate of a slot that got no cycle of its own (coalesced, missed); False if already recorded."""
    now = datetime.now(UTC)
    inserted = await session.scalar(
        pg_insert(Cycle)
        .values(
            slot_at=slot_at, trigger=trigger, started_at=now, finished_at=now, duration_seconds=0.0,
            outcome=outcome, reason=reason,
        )
        .on_conflict_do_nothing(index_elements=[Cycle.slot_at])
        .returning(Cycle.id)
    )  # fmt: skip
    return inserted is not None


async def ran_since(session: AsyncSession, moment: datetime) -> bool:
    """Whether any cycle (not a mere slot record) started at or after `moment`."""
    found = await session.scalar(select(Cycle.id).where(Cycle.started_at >= moment, Cycle.seed.is_not(None)).limit(1))
    return found is not None


def _batches(events: Iterable[GeneratedEvent], size: int) -> Iterator[list[GeneratedEvent]]:
    iterator = iter(events)
    while batch := list(islice(iterator, size)):
        yield batch


def _detail_row(event_id: int, detail: Detail) -> dict[str, Any]:
    row = {field.name: getattr(detail, field.name) for field in fields(detail)}
    row["event_id"] = event_id
    return row


async def insert_events(
    session: AsyncSession, cycle_id: int, events: Iterable[GeneratedEvent], batch_size: int = INSERT_BATCH
) -> Counter[EventKind]:
    """Store generated events in bulk (executemany per table, a batch at a time); returns counts per kind."""
    counts: Counter[EventKind] = Counter()
    for batch in _batches(events, batch_size):
        ids = (
            await session.scalars(
                text("SELECT nextval(pg_get_serial_sequence('events', 'id')) FROM generate_series(1, :n)"),
                {"n": len(batch)},
            )
        ).all()
        await session.execute(
            insert(Event),
            [
                {"id": event_id, "uid": uuid.uuid4(), "kind": event.kind, "cycle_id": cycle_id,
                 "occurred_at": event.occurred_at}
                for event_id, event in zip(ids, batch, strict=True)
            ],
        )  # fmt: skip
        details: dict[EventKind, list[dict[str, Any]]] = {}
        for event_id, event in zip(ids, batch, strict=True):
            details.setdefault(event.kind, []).append(_detail_row(event_id, event.detail))
        for kind, rows in details.items():
            await session.execute(insert(DETAIL_TABLES[kind]), rows)
        await session.execute(
            insert(GroundTruth),
            [
                {"event_id": event_id, "scenario": event.scenario, "campaign": event.campaign}
                for event_id, event in zip(ids, batch, strict=True)
            ],
        )
        counts.update(event.kind for event in batch)
    return counts


async def insert_cycle_stats(session: AsyncSession, cycle_id: int, generated: Counter[EventKind]) -> None:
    await session.execute(
        insert(CycleStat),
        [{"cycle_id": cycle_id, "kind": kind, "generated": generated[kind]} for kind in EventKind],
    )


# --- reports --------------------------------------------------------------------------------------------------


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


async def server_version(session: AsyncSession) -> str:
    return str(await session.scalar(text("SHOW server_version")))


async def events_by_kind_and_status(session: AsyncSession) -> dict[tuple[str, str], int]:
    rows = await session.execute(select(Event.kind, Event.status, func.count()).group_by(Event.kind, Event.status))
    return {(kind.value, status.value): count for kind, status, count in rows}


async def analyses_by_severity(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(EventAnalysis.severity, func.count()).group_by(EventAnalysis.severity))
    return {severity.value: count for severity, count in rows}


async def recent_cycles(session: AsyncSession, limit: int = 5) -> list[CycleSummary]:
    cycles = (await session.scalars(select(Cycle).order_by(Cycle.id.desc()).limit(limit))).all()
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


# --- dispatch -------------------------------------------------------------------------------------------------

# The request body each claimed event is sent as, built by PostgreSQL from the event's row and its detail row
# (to_jsonb of the whole row, so every field an analyst sees reaches the agent and nothing else: the ground
# truth lives in a table of its own). Encoding it here spares the dispatcher a JSON encoding per event, and the
# claim the conversion of every detail column to Python and back.
# The liveness locks of the processes alive now: each holds one for as long as it runs (Liveness), and names it on
# every claim it takes, so that a dead owner's claims are taken over at once instead of when their leases expire.
LIVENESS_LOCK_SPACE = 0x63796265  # the first key of the two-key advisory locks; the second is the process's own
_LIVE_LOCKS = f"""
    SELECT objid::bigint FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 2 AND classid = {LIVENESS_LOCK_SPACE}
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""
# A claim that may be taken: none, an expired one, or one whose owner (not this process) is dead.
_CLAIMABLE = f"""
    (events.lease_expires_at IS NULL OR events.lease_expires_at < now()
     OR (events.lease_owner <> :owner AND events.lease_lock IS NOT NULL
         AND events.lease_lock::bigint NOT IN ({_LIVE_LOCKS})))
"""
# The request body each claimed event is sent as, built by PostgreSQL from the event's row and its detail row
# (to_jsonb of the whole row, so every field an analyst sees reaches the agent and nothing else: the ground
# truth lives in a table of its own). Encoding it here spares the dispatcher a JSON encoding per event, and the
# claim the conversion of every detail column to Python and back. One primary-key lookup per event for its
# details, whatever the planner believes of the tables' sizes. An event still leased when claimed was lost by its
# owner: counted, and no longer claimed once MAX_ATTEMPTS such claims were lost (dead_letter_undeliverable).
_DETAILS = " ".join(
    f"WHEN '{kind.value}' THEN (SELECT to_jsonb({table.name}) FROM {table.name} WHERE event_id = claimed.id)"
    for kind, table in DETAIL_TABLES.items()
)


# Claims an event has lost, the one its (dead or expired) lease still stands for included.
_LOST = "(events.lost_deliveries + (events.lease_owner IS NOT NULL)::int)"


def _claim_statement(scope: str) -> str:
    return f"""
    WITH claimed AS (
        UPDATE events SET lease_owner = :owner, lease_lock = :lock,
                          lease_expires_at = now() + make_interval(secs => :lease_seconds),
                          lost_deliveries = lost_deliveries + (lease_owner IS NOT NULL)::int
        WHERE id IN (
            SELECT events.id FROM events
            {scope}
              AND {_CLAIMABLE} AND {_LOST} < :max_attempts
            ORDER BY events.cycle_id, events.id
            LIMIT :limit
            FOR UPDATE OF events SKIP LOCKED
        )
        RETURNING id, uid, kind, occurred_at
    )
    SELECT claimed.id, claimed.uid, claimed.kind,
           jsonb_build_object(
               'event_type', claimed.kind,
               'event_id', claimed.id,
               'event', jsonb_build_object('occurred_at', to_char(claimed.occurred_at AT TIME ZONE 'UTC',
                                                                  'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'))
                        || (CASE claimed.kind {_DETAILS} END - 'event_id')
           )::text AS body
    FROM claimed
    ORDER BY claimed.id
    """


# A cycle's own new events. The cycle is a range of one, not `= :cycle_id`: with an equality PostgreSQL reads the
# order (cycle_id, id) as (id), which the primary key gives too, and with stale statistics it walked the key from the
# cycle's first row past every event already delivered. Only ix_events_claimable gives this order, and the write
# pool's planner settings (db.INDEX_WALKS_ONLY) leave it no plan but that walk, which stops after `limit` rows.
_CLAIM_OWN = text(
    _claim_statement(
        "WHERE events.cycle_id >= :cycle_id AND events.cycle_id <= :cycle_id AND events.status = 'pending'"
    )
)
# Earlier cycles' leftovers: pending or failed, under MAX_ATTEMPTS, of cycles no live process is running.
_CLAIM_BACKLOG = text(
    _claim_statement(
        """JOIN cycles ON cycles.id = events.cycle_id
        WHERE events.cycle_id < :cycle_id AND cycles.outcome <> 'running'
          AND events.status IN ('pending', 'failed') AND events.delivery_count < :max_attempts"""
    )
)


@dataclass(frozen=True, slots=True)
class Claimant:
    """Who claims: the owner's name on its leases, its liveness lock, and the limits its claims keep."""

    owner: str
    lock: int | None  # None while this process does not hold its liveness lock: its claims then last their lease
    lease_seconds: float
    max_attempts: int


async def claim(
    session: AsyncSession, cycle_id: int, claimant: Claimant, limit: int, backlog: bool = False
) -> list[Delivery]:
    """Lease up to `limit` events to `claimant`, each as the request it is delivered in, skipping what others hold.

    The cycle's own pending events; or, with `backlog`, the leftovers of earlier cycles. One statement, so one
    round trip and, in an autocommit session, its own transaction: under load every round trip waits its turn on a
    busy event loop. In a session of the write pool (db.open_write_engine), whose planner settings keep it a walk of
    ix_events_claimable that stops after `limit` rows, whatever the statistics say.
    """
    params = {
        "owner": claimant.owner, "lock": claimant.lock, "lease_seconds": claimant.lease_seconds,
        "max_attempts": claimant.max_attempts, "cycle_id": cycle_id, "limit": limit,
    }  # fmt: skip
    rows = await session.execute(_CLAIM_BACKLOG if backlog else _CLAIM_OWN, params)
    return [Delivery(event_id, uid, EventKind(kind), body.encode()) for event_id, uid, kind, body in rows]


# Leftovers no claim will take again: MAX_ATTEMPTS deliveries failed (MAX_ATTEMPTS lowered since), or MAX_ATTEMPTS
# claims lost with the processes that made them (a claim still held by a dead owner is one), in a cycle no live
# process runs.
_UNDELIVERABLE = f"""
    events.status IN ('pending', 'failed') AND {_CLAIMABLE}
    AND ({_LOST} >= :max_attempts OR events.delivery_count >= :max_attempts)
    AND NOT EXISTS (SELECT 1 FROM cycles WHERE cycles.id = events.cycle_id AND cycles.outcome = 'running')
"""


async def dead_letter_undeliverable(session: AsyncSession, claimant: Claimant) -> int:
    """Dead-letter the leftovers no claim will take again, saying why; returns how many."""
    result = await session.execute(
        text(
            f"""
            UPDATE events SET status = 'dead_lettered', lease_owner = NULL, lease_lock = NULL,
                              lease_expires_at = NULL, lost_deliveries = {_LOST},
                              last_error = CASE WHEN {_LOST} >= :max_attempts
                                  THEN 'its deliveries were lost ' || {_LOST}
                                       || ' times: the processes sending it stopped before recording an outcome'
                                  ELSE coalesce(last_error, 'MAX_ATTEMPTS deliveries failed') END
            WHERE {_UNDELIVERABLE}
            """
        ),
        {"owner": claimant.owner, "max_attempts": claimant.max_attempts},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def undeliverable(session: AsyncSession, max_attempts: int) -> int:
    """Events nothing delivers any more, until the next cycle dead-letters them."""
    found = await session.scalar(
        text(f"SELECT count(*) FROM events WHERE {_UNDELIVERABLE}"), {"owner": "", "max_attempts": max_attempts}
    )
    return int(found or 0)


async def in_own_session(sessions: async_sessionmaker[AsyncSession], statement: str, *args: object) -> Any:
    """One statement in a session of its own, on the session's asyncpg connection: opened, run and closed in one
    greenlet.

    SQLAlchemy's statement machinery costs more CPU per event than the statement itself, and `connection()` and
    `close()` would each start a greenlet of their own (a fresh interpreter stack, mapped and unmapped); the
    session still owns the connection, its pool checkout and its return.
    """

    def run(session: Session) -> Any:
        try:
            connection = session.connection()
            driver = connection.connection.driver_connection
            assert driver is not None, "a connection the session has just checked out"
            try:
                return await_(driver.fetchval(statement, *args))
            except Exception as exc:
                if database_unavailable(exc):  # SQLAlchemy never saw the error: tell the pool not to hand it out again
                    connection.invalidate()
                raise
        finally:
            session.close()

    return await sessions().run_sync(run)


_RECORD_ANALYSIS = """
    WITH verdict AS (
        INSERT INTO event_analyses (event_id, severity, score, summary, raw)
        VALUES ($1, $2, $3, $4, $5)
        ON CONFLICT (event_id) DO NOTHING
        RETURNING id
    )
    UPDATE events SET status = 'analysed', attempts = attempts + $6, last_error = NULL,
                      delivery_count = delivery_count + (SELECT count(*) FROM verdict),
                      lease_owner = NULL, lease_lock = NULL, lease_expires_at = NULL
    WHERE id = $1
    RETURNING (SELECT count(*) FROM verdict)
"""


async def record_analysis(
    sessions: async_sessionmaker[AsyncSession],
    event_id: int,
    severity: str,
    score: int,
    summary: str,
    raw: str,
    attempts: int = 1,
) -> bool:
    """Store a verdict (`raw`: the agent's JSON text) and mark the event analysed, in a session of its own: one
    statement, hence one transaction in an autocommit session. False when the event already had a verdict (a
    redelivery): the first one stays.
    """
    return bool(await in_own_session(sessions, _RECORD_ANALYSIS, event_id, severity, score, summary, raw, attempts))


_RECORD_FAILURE = """
    UPDATE events SET status = CASE WHEN delivery_count + 1 >= $5 THEN 'dead_lettered' ELSE 'failed' END,
                      delivery_count = delivery_count + 1, attempts = attempts + $4, last_error = $3,
                      lease_owner = NULL, lease_lock = NULL, lease_expires_at = NULL
    WHERE id = $1 AND status <> 'analysed' AND lease_owner = $2
    RETURNING status
"""


async def record_failure(
    sessions: async_sessionmaker[AsyncSession], event_id: int, claimant: Claimant, error: str, attempts: int = 1
) -> EventStatus | None:
    """Record a failed delivery: failed, or dead-lettered once MAX_ATTEMPTS deliveries failed. In a session of its
    own, like a verdict. Returns the event's status; None if it is no longer this claimant's to record (analysed
    meanwhile, or taken over by another process that is delivering it now).
    """
    status = await in_own_session(sessions, _RECORD_FAILURE, event_id, claimant.owner, error, attempts,
                                  claimant.max_attempts)  # fmt: skip
    return EventStatus(status) if status is not None else None


async def requeue(
    session: AsyncSession,
    owner: str,
    statuses: Sequence[EventStatus] = (EventStatus.DEAD_LETTERED,),
    kind: EventKind | None = None,
    ids: Sequence[int] = (),
) -> int:
    """Put events back in the queue with a fresh delivery budget; returns how many. Never one a live process holds.

    Dead letters by default; failed and pending ones on request (`requeue --status`).
    """
    result = await session.execute(
        text(
            f"""
            UPDATE events SET status = 'pending', delivery_count = 0, lost_deliveries = 0,
                              lease_owner = NULL, lease_lock = NULL, lease_expires_at = NULL
            WHERE status = ANY(CAST(:statuses AS text[])) AND {_CLAIMABLE}
              AND (CAST(:kind AS text) IS NULL OR kind = :kind)
              AND (cardinality(CAST(:ids AS bigint[])) = 0 OR id = ANY(CAST(:ids AS bigint[])))
            """
        ),
        {
            "owner": owner, "statuses": [status.value for status in statuses],
            "kind": kind.value if kind else None, "ids": list(ids),
        },
    )  # fmt: skip
    return int(result.rowcount)  # type: ignore[attr-defined]


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


async def count_by_status(session: AsyncSession, status: EventStatus) -> int:
    return int(await session.scalar(select(func.count()).where(Event.status == status)) or 0)


async def release_leases(session: AsyncSession, owner: str) -> int:
    """Give back the claims `owner` still holds, once none of its deliveries is in flight; returns how many.

    A delivery records its outcome and clears its lease, so what is left was claimed and never sent (or had no
    outcome recorded, the database being away): nothing was delivered, nothing is counted.
    """
    result = await session.execute(
        update(Event).where(Event.lease_owner == owner).values(lease_owner=None, lease_lock=None, lease_expires_at=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


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


async def try_liveness_lock(connection: AsyncConnection, lock: int) -> bool:
    """Take this process's liveness lock on `connection`, held until the connection ends; False if already held."""
    taken = await connection.scalar(
        text("SELECT pg_try_advisory_lock(:space, :lock)"), {"space": LIVENESS_LOCK_SPACE, "lock": lock}
    )
    await connection.commit()
    return bool(taken)


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


async def running_cycles(session: AsyncSession) -> list[int]:
    return list((await session.scalars(select(Cycle.id).where(Cycle.outcome == CycleOutcome.RUNNING))).all())


async def cycle_progress(session: AsyncSession, cycle_id: int, owner: str) -> tuple[int, int]:
    """(events still pending, of which leased by other live processes) for one cycle."""
    row = (
        await session.execute(
            text(
                f"""
                SELECT count(*) FILTER (WHERE status = 'pending'),
                       count(*) FILTER (WHERE status = 'pending' AND lease_owner <> :owner AND NOT {_CLAIMABLE})
                FROM events WHERE cycle_id = :cycle_id
                """
            ),
            {"cycle_id": cycle_id, "owner": owner},
        )
    ).one()
    return int(row[0]), int(row[1])


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
