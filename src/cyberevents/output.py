"""Where a command writes its output: stdout, or a file that appears whole under its name or not at all."""

from __future__ import annotations

import gzip
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

GZIP_LEVEL = 6  # zlib's own default, not gzip's 9: the choice is measured in docs/performance.md


class OutputError(Exception):
    """A destination that cannot be written (a missing directory, a full disk); one line says why."""


@contextmanager
def _writing(name: str) -> Iterator[None]:
    """An OSError in what it wraps becomes an OutputError naming `name`; a pipe its reader closed (`export | head`)
    stays itself, for cli.main to end quietly on."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(f"cannot write {name}: {exc.strerror or exc}") from None


@dataclass(frozen=True, slots=True)
class _Sink:
    out: BinaryIO | gzip.GzipFile
    name: str

    def write(self, data: bytes) -> None:
        with _writing(self.name):
            self.out.write(data)


@contextmanager
def written(destination: Path | None) -> Iterator[_Sink]:
    """stdout; or a file (gzip-compressed when its name ends in .gz) written as NAME.partial and renamed once whole
    and on disk, or removed if the command fails; or, written in place, what is not a regular file (a pipe, a device).
    A symbolic link is written through."""
    if destination is None:
        yield _Sink(sys.stdout.buffer, "stdout")
        with _writing("stdout"):
            sys.stdout.buffer.flush()
        return
    name = str(destination)
    with _writing(name):
        real = destination.resolve()
        in_place = real.exists() and not real.is_file()
        target = real if in_place else real.with_name(real.name + ".partial")
        file = target.open("wb")
    try:
        out = gzip.GzipFile(destination.stem, "wb", GZIP_LEVEL, file) if destination.suffix == ".gz" else file
        yield _Sink(out, name)
        with _writing(name):
            if out is not file:
                out.close()  # the GzipFile writes its trailer, and leaves `file` open
            file.flush()
            if not in_place:
                os.fsync(file.fileno())
            file.close()
            if not in_place:
                target.replace(real)
    except BaseException:
        with suppress(OSError):
            file.close()
        if not in_place:
            target.unlink(missing_ok=True)
        raise
