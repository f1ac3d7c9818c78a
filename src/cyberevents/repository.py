"""Events stored and read: generated events in bulk, the counts reports and scorecards show, exports, what
retention deletes."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from functools import cache
from itertools import islice
from typing import Any

from sqlalchemy import TextClause, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from .generator import Detail, GeneratedEvent
from .models import (
    DETAIL_TABLES,
    Difficulty,
    Event,
    EventAnalysis,
    EventKind,
    EventStatus,
    GroundTruth,
    Severity,
)
from .scoring import CampaignCounts, ScenarioCounts

INSERT_BATCH = 2_000


def iso_time(column: str) -> str:
    """SQL for a timestamp as the native shape writes it: ISO 8601, UTC, with microseconds."""
    return f"""to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"')"""


def event_fields(alias: str) -> str:
    """SQL for the native shape's `event` object (docs/agent-protocol.md) of the `events` row `alias`.

    Its occurred_at and its detail row, whole (to_jsonb), so that every field an analyst sees is there and
    nothing else: the ground truth lives in a table of its own. One primary-key lookup per event for its details,
    whatever the planner believes of the tables' sizes.
    """
    details = " ".join(
        f"WHEN '{kind.value}' THEN (SELECT to_jsonb({table.name}) FROM {table.name} WHERE event_id = {alias}.id)"
        for kind, table in DETAIL_TABLES.items()
    )
    occurred_at = iso_time(f"{alias}.occurred_at")
    return f"(jsonb_build_object('occurred_at', {occurred_at}) || (CASE {alias}.kind {details} END - 'event_id'))"


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
                {
                    "event_id": event_id,
                    "scenario": event.scenario,
                    "campaign": event.campaign,
                    "difficulty": event.difficulty,
                }
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


async def analyses_by_severity(session: AsyncSession, cycle_id: int | None = None) -> dict[str, int]:
    """Verdicts per severity: all of them, or those on the events of one cycle."""
    query = select(EventAnalysis.severity, func.count()).group_by(EventAnalysis.severity)
    if cycle_id is not None:
        query = query.join(Event, Event.id == EventAnalysis.event_id).where(Event.cycle_id == cycle_id)
    return {severity.value: count for severity, count in await session.execute(query)}


@dataclass(frozen=True, slots=True)
class ShownVerdict:
    event_id: int
    kind: EventKind
    severity: Severity
    score: int
    summary: str
    analysed_at: datetime


async def latest_verdicts(session: AsyncSession, severities: Sequence[Severity], limit: int) -> list[ShownVerdict]:
    """The latest verdicts of these severities, newest first: a walk back along the verdicts' primary key."""
    query = (
        select(
            EventAnalysis.event_id,
            Event.kind,
            EventAnalysis.severity,
            EventAnalysis.score,
            EventAnalysis.summary,
            EventAnalysis.analysed_at,
        )
        .join(Event, Event.id == EventAnalysis.event_id)
        .where(EventAnalysis.severity.in_(severities))
        .order_by(EventAnalysis.id.desc())
        .limit(limit)
    )
    return [ShownVerdict(*row) for row in await session.execute(query)]


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


_SCENARIO_COUNTS = text(
    """
    SELECT g.scenario, e.kind, g.difficulty,
           count(*) FILTER (WHERE e.status = 'analysed') AS answered,
           count(*) FILTER (WHERE e.status = 'analysed' AND a.severity = ANY(CAST(:flagging AS text[]))) AS flagged,
           count(*) FILTER (WHERE e.status IN ('failed', 'dead_lettered')) AS failed,
           count(*) FILTER (WHERE e.status = 'pending') AS pending
    FROM events e
    JOIN ground_truth g ON g.event_id = e.id
    LEFT JOIN event_analyses a ON a.event_id = e.id
    WHERE e.cycle_id = ANY(CAST(:cycle_ids AS bigint[]))
    GROUP BY g.scenario, e.kind, g.difficulty
    """
)
_CAMPAIGN_COUNTS = text(
    """
    SELECT g.scenario, g.campaign, min(e.occurred_at) AS first_event_at,
           min(e.occurred_at) FILTER (WHERE e.status = 'analysed'
                                      AND a.severity = ANY(CAST(:flagging AS text[]))) AS first_flagged_at
    FROM events e
    JOIN ground_truth g ON g.event_id = e.id
    LEFT JOIN event_analyses a ON a.event_id = e.id
    WHERE e.cycle_id = ANY(CAST(:cycle_ids AS bigint[])) AND g.campaign IS NOT NULL
    GROUP BY g.scenario, g.campaign
    """
)
_SCORE_COUNTS = text(
    """
    SELECT g.scenario <> 'benign' AS attack, a.score, count(*)
    FROM events e
    JOIN ground_truth g ON g.event_id = e.id
    JOIN event_analyses a ON a.event_id = e.id
    WHERE e.cycle_id = ANY(CAST(:cycle_ids AS bigint[])) AND e.status = 'analysed'
    GROUP BY 1, 2
    """
)


async def score_counts(
    session: AsyncSession, cycle_ids: Sequence[int], flagging: Sequence[Severity]
) -> tuple[list[ScenarioCounts], list[CampaignCounts], dict[tuple[bool, int], int]]:
    """What a scorecard is computed from, over the events of `cycle_ids`: counts per scenario and kind, each
    campaign's first event and first flagged one, and how many answered events got each score."""
    params = {"cycle_ids": list(cycle_ids), "flagging": [severity.value for severity in flagging]}
    scenarios = [
        ScenarioCounts(scenario, EventKind(kind), answered, flagged, failed, pending, Difficulty(difficulty))
        for scenario, kind, difficulty, answered, flagged, failed, pending in await session.execute(
            _SCENARIO_COUNTS, params
        )
    ]
    campaigns = [CampaignCounts(*row) for row in await session.execute(_CAMPAIGN_COUNTS, params)]
    scores = {(attack, score): count for attack, score, count in await session.execute(_SCORE_COUNTS, params)}
    return scenarios, campaigns, scores


async def cycles_with_undelivered_events(session: AsyncSession, created_since: datetime | None) -> list[int]:
    """Cycles some of whose events, created since `created_since`, are still pending or failed: their scorecards
    change as later cycles deliver them. Older cycles are left out: retention may have pruned their analysed
    events, and scoring them again would forget those."""
    query = select(Event.cycle_id).where(Event.status.in_([EventStatus.PENDING, EventStatus.FAILED]))
    if created_since is not None:
        query = query.where(Event.created_at >= created_since)
    return sorted((await session.scalars(query.distinct())).all())


EVERY_CYCLE = (1, 2**63 - 1)


@dataclass(frozen=True, slots=True)
class ExportScope:
    """Which events an export takes: those of the cycles with ids in `cycles` that started in [since, until)."""

    cycles: tuple[int, int] = EVERY_CYCLE
    since: datetime | None = None
    until: datetime | None = None

    def params(self) -> dict[str, Any]:
        return {"first_cycle": self.cycles[0], "last_cycle": self.cycles[1], "since": self.since, "until": self.until}


_EXPORTED = """
    e.cycle_id IN (
        SELECT id FROM cycles
        WHERE id BETWEEN :first_cycle AND :last_cycle
          AND started_at >= COALESCE(CAST(:since AS timestamptz), '-infinity')
          AND started_at < COALESCE(CAST(:until AS timestamptz), 'infinity')
    )
"""
_EXPORT_BOUNDS = text(f"SELECT count(*), min(e.id), max(e.id) FROM events e WHERE {_EXPORTED}")


def _attach(key: str, table: str, columns: str) -> tuple[str, str]:
    """What `key` adds to a record, from the event's row in `table` if it has one: a join (laterally, one index
    lookup per event) and the expression to append."""
    join = f"""LEFT JOIN LATERAL (SELECT jsonb_build_object('{key}', jsonb_build_object({columns})) AS attached
                                  FROM {table} WHERE {table}.event_id = e.id) {key} ON true"""
    return join, f" || COALESCE({key}.attached, '{{}}')"


_VERDICT = _attach(
    "verdict",
    "event_analyses",
    f"'severity', severity, 'score', score, 'summary', summary, 'analysed_at', {iso_time('analysed_at')}",
)
_TRUTH = _attach("ground_truth", "ground_truth", "'scenario', scenario, 'campaign', campaign, 'difficulty', difficulty")


@cache
def _export_batch(verdicts: bool, truth: bool) -> TextClause:
    """A batch of exported events, each as its native record's JSON text: the verdict and the ground truth only
    when asked for, so that an export without them reads neither table."""
    record = f"""jsonb_build_object('event_type', e.kind, 'event_id', e.id, 'uid', e.uid, 'cycle_id', e.cycle_id,
                                    'status', e.status, 'event', {event_fields("e")})"""
    joins = []
    for wanted, (join, appended) in ((verdicts, _VERDICT), (truth, _TRUTH)):
        if wanted:
            joins.append(join)
            record += appended
    judged = "verdict.attached IS NOT NULL" if verdicts else "false"
    return text(
        f"""
        SELECT e.id, {judged}, ({record})::text FROM events e {" ".join(joins)}
        WHERE e.id > :after AND e.id <= :last AND {_EXPORTED}
        ORDER BY e.id LIMIT :limit
        """
    )


async def export_bounds(session: AsyncSession, scope: ExportScope) -> tuple[int, int, int]:
    """How many events `scope` takes, and the lowest and highest of their ids (0 and 0 when there is none)."""
    count, first, last = (await session.execute(_EXPORT_BOUNDS, scope.params())).one()
    return int(count), int(first or 0), int(last or 0)


async def export_batch(
    session: AsyncSession, scope: ExportScope, after: int, last: int, limit: int, verdicts: bool, truth: bool
) -> list[tuple[int, bool, str]]:
    """The next `limit` events of `scope` with ids above `after` (and at most `last`), in id order, each as its
    id, whether it carries a verdict, and its native record's JSON text. A batch at a time, each its own
    statement: memory stays flat and no transaction stays open for the length of an export."""
    params = scope.params() | {"after": after, "last": last, "limit": limit}
    rows = await session.execute(_export_batch(verdicts, truth), params)
    return [(int(event_id), bool(judged), record) for event_id, judged, record in rows]
