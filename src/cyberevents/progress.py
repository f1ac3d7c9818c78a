"""Progress of a dispatch: a live line on a terminal, a periodic log line otherwise."""

from __future__ import annotations

import logging
import time
from typing import TextIO

from .tally import Tally

log = logging.getLogger(__name__)


def describe(tally: Tally) -> str:
    kinds = ", ".join(f"{kind.value} {t.done}/{t.total}" for kind, t in tally.kinds.items() if t.total)
    return f"dispatched {tally.done}/{tally.total} ({kinds}), {tally.in_flight} in flight"


class Progress:
    """Listens to a Tally; redraws at most ten times a second on a TTY, logs every `log_every` seconds else."""

    def __init__(self, stream: TextIO, log_every: float = 10.0) -> None:
        self._stream, self._live = stream, stream.isatty()
        self._every = 0.1 if self._live else log_every
        self._last = time.monotonic()
        self._drawn = False

    def __call__(self, tally: Tally) -> None:
        now = time.monotonic()
        if now - self._last < self._every and tally.done < tally.total:
            return
        self._last = now
        if self._live:
            self._stream.write("\r\x1b[2K" + describe(tally))
            self._stream.flush()
            self._drawn = True
        elif tally.done < tally.total:
            log.info("Progress: %s", describe(tally))

    def close(self) -> None:
        if self._drawn:
            self._stream.write("\r\x1b[2K")
            self._stream.flush()
