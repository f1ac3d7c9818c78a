"""`cyberevents export`: stored events as JSON Lines, in OCSF 1.5.0 or the native shape, read from the database a
batch at a time so that memory stays flat whatever the size of the export."""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import ocsf, repository
from .models import EventKind
from .ocsf import Shape
from .progress import Progress
from .repository import ExportScope

BATCH = 2_000
GZIP_LEVEL = 6  # zlib's own default, not gzip's 9: the choice is measured in docs/performance.md


@dataclass
class Exported:
    events: int = 0
    total: int = 0  # what the scope held when the export began
    verdicts: int = 0

    def progress(self) -> str:
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
    walks: async_sessionmaker[AsyncSession],
    scope: ExportScope,
    destination: Path | None,
    *,
    shape: Shape = "ocsf",
    verdicts: bool = False,
    truth: bool = False,
    progress: Progress | None = None,
) -> Exported:
    """Write the events of `scope` to `destination` (stdout when None), one JSON object per line, in id order.

    Batches are read in `walks`, sessions whose planner can only walk the events' primary key in order (the
    write pool, db.open_write_engine): with the statistics of a freshly stored cycle, PostgreSQL otherwise read
    the whole rest of the export for every batch. Nothing is written when the scope holds no event. A file is
    written beside its name and renamed into place once complete: a file under the name asked for is whole.
    """
    async with sessions() as session:
        total, first, last = await repository.export_bounds(session, scope)
    done = Exported(total=total)
    if not total:
        return done
    with _output(destination) as sink:
        after = first - 1
        while after < last:
            async with walks() as session:
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
                progress.show(Exported.progress, done, finished=done.events >= done.total)
    return done


class OutputError(Exception):
    """The export's destination cannot be written (a missing directory, a full disk); one line says why."""


@dataclass(frozen=True, slots=True)
class _Sink:
    """Where the lines go: an OSError writing them becomes an OutputError, and a pipe its reader closed (`export |
    head`) stays itself, for cli.main to end quietly on."""

    out: BinaryIO | gzip.GzipFile
    name: str

    def write(self, data: bytes) -> None:
        self._do(self.out.write, data)

    def flush(self) -> None:
        self._do(self.out.flush)

    def _do(self, action: Callable[..., object], *args: bytes) -> None:
        try:
            action(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OutputError(f"cannot write {self.name}: {exc.strerror or exc}") from None


@contextmanager
def _output(destination: Path | None) -> Iterator[_Sink]:
    """stdout; or a file (gzip-compressed when its name ends in .gz) written as NAME.partial and renamed once
    whole, or removed if the export fails; or, written in place, what is not a regular file (a pipe, a device)."""
    if destination is None:
        sink = _Sink(sys.stdout.buffer, "stdout")
        yield sink
        sink.flush()
        return
    in_place = destination.exists() and not destination.is_file()
    target = destination if in_place else destination.with_name(destination.name + ".partial")
    try:
        with ExitStack() as stack:
            try:
                file = stack.enter_context(target.open("wb"))
            except OSError as exc:
                raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from None
            compressed = destination.suffix == ".gz"
            out = stack.enter_context(gzip.GzipFile(destination.stem, "wb", GZIP_LEVEL, file)) if compressed else file
            sink = _Sink(out, str(target))
            yield sink
            sink.flush()
        if not in_place:
            target.replace(destination)
    except BaseException:
        if not in_place:
            target.unlink(missing_ok=True)
        raise
