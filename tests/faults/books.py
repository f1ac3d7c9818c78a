"""The books every fault test balances: generated = analysed + pending + failed + dead-lettered, no duplicates."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from cyberevents.db import session_factory
from cyberevents.models import Event, EventAnalysis, EventStatus


@dataclass(frozen=True)
class Books:
    generated: int
    analysed: int
    pending: int
    failed: int
    dead_lettered: int
    analyses: int
    duplicates: int

    @property
    def lost(self) -> int:
        return self.generated - (self.analysed + self.pending + self.failed + self.dead_lettered)

    def line(self, fault: str) -> str:
        return (
            f"FAULT {fault}: generated={self.generated} analysed={self.analysed} pending={self.pending} "
            f"failed={self.failed} dead_lettered={self.dead_lettered} lost={self.lost} duplicates={self.duplicates}"
        )


async def books(engine: AsyncEngine) -> Books:
    async with session_factory(engine)() as session:
        statuses = Counter(
            dict((await session.execute(select(Event.status, func.count()).group_by(Event.status))).all())
        )
        per_event = (
            await session.execute(select(EventAnalysis.event_id, func.count()).group_by(EventAnalysis.event_id))
        ).all()
        analysed_without_verdict = await session.scalar(
            select(func.count())
            .select_from(Event)
            .outerjoin(EventAnalysis, EventAnalysis.event_id == Event.id)
            .where(Event.status == EventStatus.ANALYSED, EventAnalysis.id.is_(None))
        )
    assert analysed_without_verdict == 0, "an event marked analysed has no verdict"
    return Books(
        generated=sum(statuses.values()),
        analysed=statuses[EventStatus.ANALYSED],
        pending=statuses[EventStatus.PENDING],
        failed=statuses[EventStatus.FAILED],
        dead_lettered=statuses[EventStatus.DEAD_LETTERED],
        analyses=len(per_event),
        duplicates=sum(count - 1 for _, count in per_event),
    )


def assert_balanced(found: Books, fault: str) -> None:
    print(found.line(fault))
    assert found.lost == 0
    assert found.duplicates == 0
    assert found.analyses == found.analysed
