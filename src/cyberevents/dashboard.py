"""What the status page and the HTML report show from the database, read in one pass: the cycle history, the
backlog, the last cycle's verdicts, the latest flagged verdicts and the agent's scorecards over the last cycles."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from . import ledger, repository
from .models import EventStatus, Severity
from .report import kept
from .scoring import Scorecard, flagging

HISTORY = 50  # cycles on the timeline
TREND = 20  # scored cycles on the agent's charts
LATEST = 8  # flagged verdicts listed
BACKLOG = (EventStatus.PENDING, EventStatus.FAILED, EventStatus.DEAD_LETTERED)


@dataclass(frozen=True, slots=True)
class Snapshot:
    cycles: list[ledger.CycleSummary]  # latest first
    backlog: dict[EventStatus, int]
    severities: dict[str, int]  # verdicts per severity on the events of `severities_of`
    severities_of: int | None  # the latest cycle with verdicts
    scorecards: dict[int, tuple[str, Scorecard]]  # cycle id → (the agent it judged, its scorecard), oldest first
    flagged: list[repository.ShownVerdict]  # newest first
    read_at: datetime

    @property
    def latest_score(self) -> tuple[int, str, Scorecard] | None:
        """The last scored cycle, its agent and its scorecard."""
        if not self.scorecards:
            return None
        cycle_id = max(self.scorecards)
        return cycle_id, *self.scorecards[cycle_id]


async def read(
    sessions: async_sessionmaker[AsyncSession], threshold: Severity, scored: list[int] | None = None
) -> Snapshot:
    """Everything the page shows from the database; `scored` chooses the scorecards (default: the last TREND)."""
    async with sessions() as session:
        cycles = await ledger.recent_cycles(session, HISTORY)
        backlog = {status: await repository.count_by_status(session, status) for status in BACKLOG}
        judged = next((cycle.id for cycle in cycles if any(kind.analysed for kind in cycle.kinds)), None)
        severities = await repository.analyses_by_severity(session, judged) if judged is not None else {}
        ids = scored if scored is not None else await ledger.last_scored_cycles(session, TREND)
        scorecards = dict(sorted(kept(await ledger.scores(session, ids)).items()))
        flagged = await repository.latest_verdicts(session, flagging(threshold), LATEST)
    return Snapshot(cycles, backlog, severities, judged, scorecards, flagged, datetime.now(UTC))
