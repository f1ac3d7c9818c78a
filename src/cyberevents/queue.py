"""The delivery queue: events claimed, answered, failed, requeued or dead-lettered, and the liveness locks that let
a dead process's claims be taken over at once.

Statements with `:name` parameters run through SQLAlchemy; the two one-row outcome writes, with `$1` parameters,
run on asyncpg itself (db.execute_on_driver), the one shortcut a measurement keeps (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker

from .db import execute_on_driver
from .models import Event, EventKind, EventStatus
from .protocol import Delivery
from .repository import event_fields

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
# Claims an event has lost, the one its (dead or expired) lease still stands for included.
_LOST = "(events.lost_deliveries + (events.lease_owner IS NOT NULL)::int)"


def _claim_statement(scope: str) -> str:
    """Lease the events `scope` selects, and return each as the request body it is sent in, built by PostgreSQL
    (repository.event_fields): that spares the dispatcher a JSON encoding per event, and the claim the conversion
    of every detail column to Python and back. An event still leased when claimed was lost by its owner: counted,
    and no longer claimed once MAX_ATTEMPTS such claims were lost (dead_letter_undeliverable)."""
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
               'event', {event_fields("claimed")}
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
        "owner": claimant.owner,
        "lock": claimant.lock,
        "lease_seconds": claimant.lease_seconds,
        "max_attempts": claimant.max_attempts,
        "cycle_id": cycle_id,
        "limit": limit,
    }
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
    return bool(await execute_on_driver(sessions, _RECORD_ANALYSIS, event_id, severity, score, summary, raw, attempts))


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
    status = await execute_on_driver(
        sessions, _RECORD_FAILURE, event_id, claimant.owner, error, attempts, claimant.max_attempts
    )
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
            "owner": owner,
            "statuses": [status.value for status in statuses],
            "kind": kind.value if kind else None,
            "ids": list(ids),
        },
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


async def release_leases(session: AsyncSession, owner: str) -> int:
    """Give back the claims `owner` still holds, once none of its deliveries is in flight; returns how many.

    A delivery records its outcome and clears its lease, so what is left was claimed and never sent (or had no
    outcome recorded, the database being away): nothing was delivered, nothing is counted.
    """
    result = await session.execute(
        update(Event).where(Event.lease_owner == owner).values(lease_owner=None, lease_lock=None, lease_expires_at=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


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


async def try_liveness_lock(connection: AsyncConnection, lock: int) -> bool:
    """Take this process's liveness lock on `connection`, held until the connection ends; False if already held."""
    taken = await connection.scalar(
        text("SELECT pg_try_advisory_lock(:space, :lock)"), {"space": LIVENESS_LOCK_SPACE, "lock": lock}
    )
    await connection.commit()
    return bool(taken)
