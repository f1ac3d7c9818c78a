"""`cyberevents export`: stored events as JSON Lines, in OCSF 1.5.0 or the native shape, read from the database a
batch at a time so that memory stays flat whatever the size of the export."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import ocsf, repository
from .models import EventKind
from .output import written
from .progress import Progress
from .protocol import Shape
from .repository import ExportScope

BATCH = 2_000


@dataclass
class Exported:
    events: int = 0
    total: int = 0  # what the scope held when the export began
    verdicts: int = 0

    def describe(self) -> str:
        return f"exported {self.events:,}/{self.total:,} events"


def ocsf_lines(record: str) -> bytes:
    """A native record's JSON text as its OCSF event and, when it carries a verdict, the Detection Finding on it."""
    native = json.loads(record)
    event = ocsf.event(EventKind(native["event_type"]), native["uid"], native["event"], native.get("ground_truth"))
    if (verdict := native.get("verdict")) is None:
        return _line(event)
    return _line(event) + _line(ocsf.detection_finding(event, verdict))


def _line(record: ocsf.Record) -> bytes:
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


async def export(
    sessions: async_sessionmaker[AsyncSession],
    index_walks: async_sessionmaker[AsyncSession],
    scope: ExportScope,
    destination: Path | None,
    *,
    shape: Shape = "ocsf",
    verdicts: bool = False,
    truth: bool = False,
    progress: Progress | None = None,
) -> Exported:
    """Write the events of `scope` to `destination` (stdout when None), one JSON object per line, in id order.

    Batches are read in `index_walks`, sessions whose planner can only walk the events' primary key in order (the
    write pool, db.open_write_engine): with the statistics of a freshly stored cycle, PostgreSQL otherwise read
    the whole rest of the export for every batch. Nothing is written when the scope holds no event. A file is
    written beside its name and renamed into place once complete: a file under the name asked for is whole.
    """
    async with sessions() as session:
        total, first, last = await repository.export_bounds(session, scope)
    done = Exported(total=total)
    if not total:
        return done
    with written(destination) as sink:
        after = first - 1
        while after < last:
            async with index_walks() as session:
                batch = await repository.export_batch(session, scope, after, last, BATCH, verdicts, truth)
            if not batch:
                break
            after = batch[-1][0]
            if shape == "native":
                sink.write("".join(f"{record}\n" for _, _, record in batch).encode())
            else:
                sink.write(b"".join(ocsf_lines(record) for _, _, record in batch))
            done.events += len(batch)
            done.verdicts += sum(judged for _, judged, _ in batch)
            if progress is not None:
                progress.show(Exported.describe, done, finished=done.events >= done.total)
    return done
