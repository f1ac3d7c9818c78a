"""Retention: analysed events, their verdicts and old ledger rows are pruned in bounded batches.

A default cycle makes about 20,000 events a day; without this the database grows without bound. Events
that are pending, failed or dead-lettered are never pruned: nobody has seen a verdict for them yet.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import ledger, repository
from .db import database_error, driver_error

log = logging.getLogger(__name__)

BATCH = 5_000


async def prune(sessions: async_sessionmaker[AsyncSession], days: float, batch: int = BATCH) -> tuple[int, int]:
    """Delete what is older than `days` (0: keep everything), one short transaction per batch.

    Returns (events, ledger rows) deleted. Best effort: a database error is logged, not raised.
    """
    cutoff = retention_cutoff(days)
    if cutoff is None:
        return 0, 0
    deleted = [0, 0]
    try:
        for index, delete in enumerate((repository.prune_analysed_events, ledger.prune_cycles)):
            while True:
                async with sessions() as session, session.begin():
                    count = await delete(session, cutoff, batch)
                deleted[index] += count
                if count < batch:
                    break
    except Exception as exc:
        if not database_error(exc):
            raise
        log.warning("Retention: pruning stopped early (%s); it resumes after the next cycle", driver_error(exc))
    if any(deleted):
        log.info("Retention: pruned %d analysed events and %d ledger rows older than %g days", *deleted, days)
    return deleted[0], deleted[1]


def retention_cutoff(days: float) -> datetime | None:
    """What was created before this moment may be pruned; None when RETENTION_DAYS=0 keeps everything."""
    return datetime.now(UTC) - timedelta(days=days) if days > 0 else None
