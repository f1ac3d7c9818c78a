"""Events stored and read: generated events in bulk, the counts reports show, what retention deletes."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import fields
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from .generator import Detail, GeneratedEvent
from .models import DETAIL_TABLES, Event, EventAnalysis, EventKind, EventStatus, GroundTruth

INSERT_BATCH = 2_000


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
                {
                    "id": event_id,
                    "uid": uuid.uuid4(),
                    "kind": event.kind,
                    "cycle_id": cycle_id,
                    "occurred_at": event.occurred_at,
                }
                for event_id, event in zip(ids, batch, strict=True)
            ],
        )
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


async def server_version(session: AsyncSession) -> str:
    return str(await session.scalar(text("SHOW server_version")))


async def events_by_kind_and_status(session: AsyncSession) -> dict[tuple[str, str], int]:
    rows = await session.execute(select(Event.kind, Event.status, func.count()).group_by(Event.kind, Event.status))
    return {(kind.value, status.value): count for kind, status, count in rows}


async def analyses_by_severity(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(EventAnalysis.severity, func.count()).group_by(EventAnalysis.severity))
    return {severity.value: count for severity, count in rows}


async def count_by_status(session: AsyncSession, status: EventStatus) -> int:
    return int(await session.scalar(select(func.count()).where(Event.status == status)) or 0)


async def prune_analysed_events(session: AsyncSession, cutoff: datetime, batch: int) -> int:
    """Delete up to `batch` analysed events created before `cutoff`, their details, verdicts and ground truth with
    them (ON DELETE CASCADE); returns how many."""
    result = await session.execute(
        text(
            """
            DELETE FROM events WHERE id IN (
                SELECT id FROM events WHERE status = 'analysed' AND created_at < :cutoff LIMIT :batch
            )
            """
        ),
        {"cutoff": cutoff, "batch": batch},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# Any fixed 64-bit number: replicas starting together take turns migrating instead of racing.
MIGRATION_LOCK_KEY = 0x637962657276_01


async def take_migration_lock(connection: AsyncConnection) -> None:
    """Wait for the migration lock, held until `connection`'s transaction ends."""
    await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
