"""One cycle: generate → store → dispatch → record. The daemon and run-once share this one code path."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from . import repository
from .dispatcher import Tally
from .generator import Counts, cycle_seed, generate
from .models import CycleOutcome, EventKind
from .service import Resources

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CycleResult:
    cycle_id: int
    seed: int
    started_at: datetime
    outcome: CycleOutcome
    kinds: tuple[repository.KindStat, ...]
    dispatch_seconds: float
    total_seconds: float

    @property
    def generated(self) -> int:
        return sum(kind.generated for kind in self.kinds)

    @property
    def failed(self) -> int:
        return sum(kind.failed for kind in self.kinds)

    @property
    def analysed(self) -> int:
        return sum(kind.analysed for kind in self.kinds)


def _outcome(analysed: int, generated: int) -> CycleOutcome:
    if analysed == generated:
        return CycleOutcome.SUCCEEDED
    return CycleOutcome.PARTIAL if analysed else CycleOutcome.FAILED


async def run_cycle(
    resources: Resources, counts: Counts, on_progress: Callable[[Tally], None] | None = None
) -> CycleResult:
    """Run one whole cycle and record it; `on_progress` is called as each event's outcome is recorded."""
    started_at, clock = datetime.now(UTC), time.monotonic()
    log.info("=== Starting event generation cycle at %s ===", started_at.isoformat(timespec="seconds"))
    sessions, settings = resources.sessions, resources.settings

    async with sessions() as session, session.begin():
        cycle_id = await repository.next_cycle_id(session)
        base = settings.generator_seed if settings.generator_seed is not None else secrets.randbits(62)
        seed = cycle_seed(base, cycle_id)
        await repository.insert_cycle(session, cycle_id, started_at, seed)
    log.info(
        "Cycle %d: seed %d (regenerate with: cyberevents generate --seed %d --window-end %s)",
        cycle_id, seed, seed, started_at.isoformat(),
    )  # fmt: skip

    try:
        return await _generate_and_dispatch(resources, cycle_id, seed, started_at, clock, counts, on_progress)
    except BaseException as exc:
        # Shielded and best effort: the cycle's real error is what propagates, whatever this write does.
        await asyncio.shield(_record_failed_cycle(resources, cycle_id, time.monotonic() - clock, exc))
        raise


async def _record_failed_cycle(resources: Resources, cycle_id: int, seconds: float, exc: BaseException) -> None:
    error = f"{type(exc).__name__}: {exc}"[:2000]
    try:
        async with resources.sessions() as session, session.begin():
            await repository.finish_cycle(session, cycle_id, datetime.now(UTC), seconds, CycleOutcome.FAILED, (), error)
    except Exception as write_error:
        log.error("Cycle %d failed (%s) and could not be recorded: %s", cycle_id, error, write_error)


async def _generate_and_dispatch(
    resources: Resources,
    cycle_id: int,
    seed: int,
    started_at: datetime,
    clock: float,
    counts: Counts,
    on_progress: Callable[[Tally], None] | None,
) -> CycleResult:
    sessions = resources.sessions
    async with sessions() as session, session.begin():
        generated = await repository.insert_events(session, cycle_id, generate(seed, counts, started_at))
        await repository.insert_cycle_stats(session, cycle_id, generated)
    log.info(
        "Stored %d events (%s) in %.1fs",
        sum(generated.values()), ", ".join(f"{generated[k]} {k.value}" for k in EventKind), time.monotonic() - clock,
    )  # fmt: skip

    tally = Tally.of(dict(generated))
    if on_progress is not None:
        tally.listeners.append(on_progress)
    dispatch_clock = time.monotonic()
    await resources.dispatcher.dispatch(cycle_id, tally)
    dispatch_seconds = time.monotonic() - dispatch_clock

    kinds = tuple(
        repository.KindStat(kind, t.total, t.analysed, t.failed, round(t.seconds, 3)) for kind, t in tally.kinds.items()
    )
    for stat in kinds:
        if stat.generated:
            log.info(
                "%s events completed: %d/%d successful in %.1fs",
                stat.kind.value.capitalize(), stat.analysed, stat.generated, stat.dispatch_seconds,
            )  # fmt: skip
    total_seconds = time.monotonic() - clock
    outcome = _outcome(sum(k.analysed for k in kinds), sum(k.generated for k in kinds))
    async with sessions() as session, session.begin():
        await repository.finish_cycle(session, cycle_id, datetime.now(UTC), total_seconds, outcome, kinds)

    if outcome is CycleOutcome.SUCCEEDED:
        log.info(
            "=== Event generation cycle completed successfully in %.1fs (%.1f minutes) ===",
            total_seconds, total_seconds / 60,
        )  # fmt: skip
    else:
        log.warning(
            "=== Event generation cycle completed with %d failed events in %.1fs (%.1f minutes) ===",
            sum(k.failed for k in kinds), total_seconds, total_seconds / 60,
        )  # fmt: skip
    return CycleResult(cycle_id, seed, started_at, outcome, kinds, dispatch_seconds, total_seconds)
