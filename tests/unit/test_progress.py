from __future__ import annotations

import io
import logging

import pytest

from cyberevents.models import EventKind, EventStatus
from cyberevents.progress import Progress, describe
from cyberevents.tally import Tally


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_tally_counts_outcomes_per_kind() -> None:
    tally = Tally.of({EventKind.LOGIN: 2, EventKind.PATCH: 1})
    for _ in range(3):
        tally.started(EventKind.LOGIN)
    tally.finished(EventKind.LOGIN, EventStatus.ANALYSED)
    tally.finished(EventKind.LOGIN, EventStatus.FAILED)
    tally.finished(EventKind.LOGIN, None)  # nothing recorded: not counted, stays pending
    assert (tally.kinds[EventKind.LOGIN].analysed, tally.kinds[EventKind.LOGIN].failed) == (1, 1)
    assert (tally.done, tally.total, tally.in_flight) == (2, 3, 0)
    assert describe(tally) == "dispatched 2/3 (login 2/2, patch 0/1), 0 in flight"


def test_a_terminal_gets_a_live_line_that_is_cleared_at_the_end() -> None:
    terminal = Terminal()
    progress = Progress(terminal)
    tally = Tally.of({EventKind.FIREWALL: 1})
    tally.listeners.append(progress)
    tally.started(EventKind.FIREWALL)
    tally.finished(EventKind.FIREWALL, EventStatus.ANALYSED)
    assert "\r\x1b[2Kdispatched 1/1 (firewall 1/1), 0 in flight" in terminal.getvalue()
    progress.close()
    assert terminal.getvalue().endswith("\r\x1b[2K")


def test_logs_get_a_progress_line_now_and_then(caplog: pytest.LogCaptureFixture) -> None:
    progress = Progress(io.StringIO(), log_every=0.0)
    tally = Tally.of({EventKind.LOGIN: 2})
    tally.listeners.append(progress)
    with caplog.at_level(logging.INFO, logger="cyberevents.progress"):
        tally.started(EventKind.LOGIN)
        tally.finished(EventKind.LOGIN, EventStatus.ANALYSED)
    assert caplog.messages == ["Progress: dispatched 1/2 (login 1/2), 0 in flight"]
