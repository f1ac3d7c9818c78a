"""Every query cyberevents makes, as small typed async functions over a session the caller owns."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from itertools import islice
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from .generator import Detail, GeneratedEvent
from .models import (
    DETAIL_TABLES,
    Cycle,
    CycleOutcome,
    CycleStat,
    Event,
    EventAnalysis,
    EventKind,
    GroundTruth,
)

INSERT_BATCH = 2_000


async def next_cycle_id(session: AsyncSession) -> int:
    """Reserve a cycle id first: the cycle's seed derives from it."""
    return int(await session.scalar(text("SELECT nextval(pg_get_serial_sequence('cycles', 'id'))")) or 0)


async def insert_cycle(session: AsyncSession, cycle_id: int, started_at: datetime, seed: int) -> None:
    await session.execute(
        insert(Cycle).values(id=cycle_id, started_at=started_at, seed=seed, outcome=CycleOutcome.RUNNING)
    )


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
    started_at: datetime
    duration_seconds: float | None
    seed: int
    outcome: CycleOutcome
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
        CycleSummary(c.id, c.started_at, c.duration_seconds, c.seed, c.outcome, tuple(by_cycle.get(c.id, ())))
        for c in cycles
    ]
