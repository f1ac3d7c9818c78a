"""Progress of a long job (a dispatch, an export): a live line on a terminal, a periodic log line otherwise."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TextIO, TypeVar

from .tally import Tally

log = logging.getLogger(__name__)
T = TypeVar("T")


def describe(tally: Tally) -> str:
    kinds = ", ".join(f"{kind.value} {t.done}/{t.total}" for kind, t in tally.kinds.items() if t.total)
    writing = f", {tally.writing} being recorded" if tally.writing else ""
    return f"{tally.doing} {tally.done}/{tally.total} ({kinds}), {tally.in_flight} in flight{writing}"


class Progress:
    """Redraws at most ten times a second on a TTY, logs every `log_every` seconds else; listens to a Tally."""

    def __init__(self, stream: TextIO, log_every: float = 10.0) -> None:
        self._stream, self._live = stream, stream.isatty()
        self._every = 0.1 if self._live else log_every
        self._last = time.monotonic()
        self._drawn = False

    def __call__(self, tally: Tally) -> None:
        self.show(describe, tally, finished=tally.done >= tally.total)

    def show(self, line: Callable[[T], str], of: T, finished: bool = False) -> None:
        """Show `line(of)`, if it is time to; `line` is only called then, so that skipped updates cost nothing."""
        now = time.monotonic()
        if now - self._last < self._every and not finished:
            return
        self._last = now
        if self._live:
            self._stream.write("\r\x1b[2K" + line(of))
            self._stream.flush()
            self._drawn = True
        elif not finished:
            log.info("Progress: %s", line(of))

    def close(self) -> None:
        if self._drawn:
            self._stream.write("\r\x1b[2K")
            self._stream.flush()
