"""`check-db` and `score`: what the database holds, gathered in one read-only pass and rendered for a human."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from . import ledger, migrations, queue, repository
from .db import session_factory
from .models import CycleScore, EventKind, EventStatus, Severity
from .scoring import Scorecard, combine, compare_lines, from_stored


@dataclass(frozen=True, slots=True)
class DatabaseReport:
    location: str
    server_version: str
    revision: str | None
    head: str | None
    events: dict[tuple[str, str], int]
    analyses: dict[str, int]
    cycles: list[ledger.CycleSummary]
    max_attempts: int = 0
    undeliverable: int = 0
    scored_cycle: int | None = None
    score: Scorecard | None = None  # the latest kept scorecard

    @property
    def at_head(self) -> bool:
        return self.revision == self.head


async def gather(engine: AsyncEngine, location: str, max_attempts: int) -> DatabaseReport:
    """Read everything check-db shows; tables are only queried once the schema is at head."""
    revision, head = await migrations.current_revision(engine), migrations.head_revision()
    async with session_factory(engine)() as session:
        version = await repository.server_version(session)
        if revision != head:
            return DatabaseReport(location, version, revision, head, {}, {}, [])
        cycles = await ledger.recent_cycles(session, limit=10)
        scored, score = await latest_scorecard(session)
        return DatabaseReport(
            location,
            version,
            revision,
            head,
            await repository.events_by_kind_and_status(session),
            await repository.analyses_by_severity(session),
            cycles,
            max_attempts,
            await queue.undeliverable(session, max_attempts),
            scored,
            score,
        )


def _ledger_line(cycle: ledger.CycleSummary) -> str:
    started = cycle.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    slot = f" slot {cycle.slot_at.astimezone(UTC):%H:%M:%SZ}" if cycle.slot_at else ""
    head = f"#{cycle.id} {started} {cycle.trigger.value}{slot}: {cycle.outcome.value}"
    if cycle.seed is None:  # a slot that never got a cycle of its own
        return f"{head} — {cycle.reason}"
    duration = "" if cycle.duration_seconds is None else f" in {cycle.duration_seconds:.1f}s"
    kinds = ", ".join(
        f"{k.kind.value} {k.analysed}/{k.generated}" + (f" ({k.failed} failed)" if k.failed else "")
        for k in cycle.kinds
    )
    reason = f" — {cycle.reason}" if cycle.reason else ""
    return f"{head}{duration}, seed {cycle.seed}: {kinds}{reason}"


def render(report: DatabaseReport) -> str:
    lines = [f"database: {report.location} (PostgreSQL {report.server_version}) — reachable"]
    if report.at_head:
        lines.append(f"schema: {report.revision} — at head")
    else:
        lines.append(
            f"schema: {report.revision or 'empty'}, head is {report.head} — run `python -m cyberevents migrate`"
        )
        return "\n".join(lines)

    statuses = list(EventStatus)
    total = sum(report.events.values())
    lines.append(f"events: {total}" + ("" if total else " (empty)"))
    if total:
        lines.append("  " + f"{'kind':<10}" + "".join(f"{s.value:>14}" for s in statuses) + f"{'total':>10}")
        for kind in EventKind:
            counts = [report.events.get((kind.value, s.value), 0) for s in statuses]
            lines.append("  " + f"{kind.value:<10}" + "".join(f"{c:>14}" for c in counts) + f"{sum(counts):>10}")

    if report.undeliverable:
        lines.append(
            f"undeliverable: {report.undeliverable} pending or failed events at MAX_ATTEMPTS={report.max_attempts}; "
            "the next cycle dead-letters them (`requeue --status dead_lettered` then gives them a fresh budget)"
        )

    analysed = sum(report.analyses.values())
    by_severity = ", ".join(f"{s.value} {report.analyses.get(s.value, 0)}" for s in Severity)
    lines.append(f"analyses: {analysed}" + (f" ({by_severity})" if analysed else ""))

    lines.append("run ledger (latest first):" if report.cycles else "run ledger: no cycles yet")
    for cycle in report.cycles:
        lines.append("  " + _ledger_line(cycle))
    if report.score is not None:
        lines.append(f"scorecard of cycle #{report.scored_cycle}:")
        lines.extend(f"  {line}" for line in report.score.lines())
    return "\n".join(lines)


async def kept_scorecards(
    engine: AsyncEngine,
    cycles: Sequence[int] | None,
    last: int,
    between: tuple[datetime | None, datetime | None] | None = None,
) -> dict[int, tuple[str, Scorecard]]:
    """Cycle id → (the agent it judged, its kept scorecard): of `cycles`, of the scored cycles started `between`
    two moments, or of the last `last` scored cycles."""
    async with session_factory(engine)() as session:
        if cycles is not None:
            ids = list(cycles)
        elif between is not None:
            ids = await ledger.scored_cycles_between(session, *between)
        else:
            ids = await ledger.last_scored_cycles(session, last)
        return kept(await ledger.scores(session, ids))


async def latest_scorecard(session: AsyncSession) -> tuple[int | None, Scorecard | None]:
    """The last scored cycle and its kept scorecard; (None, None) before any."""
    latest = kept(await ledger.scores(session, await ledger.last_scored_cycles(session, 1)))
    return next(((cycle, card) for cycle, (_, card) in latest.items()), (None, None))


def kept(rows: Sequence[CycleScore]) -> dict[int, tuple[str, Scorecard]]:
    """Cycle id → (the agent it judged, its scorecard), from the ledger's rows."""
    return {row.cycle_id: (row.agent_label, from_stored(row.threshold, row.counts)) for row in rows}


def render_scorecards(kept: dict[int, tuple[str, Scorecard]], as_json: bool) -> str:
    """One scorecard over every kept cycle, summed over their events."""
    ids, agents = sorted(kept), sorted({agent for agent, _ in kept.values()})
    card = combine(card for _, card in kept.values())
    assert card is not None, "rendered only when some cycle was scored"
    if as_json:
        return json.dumps({"cycles": ids, "agents": agents, **card.as_json()})
    return "\n".join([f"{span_name(ids)}, agent {', '.join(agents)}:", *(f"  {line}" for line in card.lines())])


async def kept_spans(engine: AsyncEngine, spans: Sequence[tuple[int, int]]) -> list[dict[int, tuple[str, Scorecard]]]:
    """The kept scorecards of each span of cycle ids (first, last), both ends included."""
    async with session_factory(engine)() as session:
        return [
            kept(await ledger.scores(session, await ledger.scored_cycles_in(session, first, last)))
            for first, last in spans
        ]


def combined(side: dict[int, tuple[str, Scorecard]]) -> Scorecard:
    """A span's scorecards summed over its events; it must hold one."""
    card = combine(card for _, card in side.values())
    assert card is not None, "combined only when the span was scored"
    return card


def render_comparison(sides: Sequence[dict[int, tuple[str, Scorecard]]], as_json: bool) -> str:
    """Two spans of cycles side by side, each summed over its events, with the change per row."""
    first, second = (combined(side) for side in sides)
    check_comparable(first, second)
    if as_json:
        return json.dumps(
            {
                "compare": [
                    {"cycles": sorted(side), **card.as_json()}
                    for side, card in zip(sides, (first, second), strict=True)
                ]
            }
        )
    return "\n".join(compare_lines(first, second, *(span_name(sorted(side)) for side in sides)))


def check_comparable(first: Scorecard, second: Scorecard) -> None:
    if first.threshold != second.threshold:
        raise ValueError(
            f"scorecards at different DETECTION_THRESHOLDs ({first.threshold.value}, {second.threshold.value}) "
            "flag different events: they do not compare"
        )


def span_name(ids: Sequence[int]) -> str:
    return f"cycle #{ids[0]}" if len(ids) == 1 else f"{len(ids)} cycles, #{ids[0]} to #{ids[-1]}"
