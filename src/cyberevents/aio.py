"""Two asyncio patterns the service uses throughout: a write finished through a cancellation, a wait for a stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)

# Once the stop's grace or a cycle's deadline has run out, a write in hand gets this long, not an outage's wait.
FINISH_AFTER_CANCEL_SECONDS = 5.0


async def finish_even_if_cancelled(write: Coroutine[Any, Any, T]) -> T:
    """Run a short write to its end even when the caller is cancelled, or already on its way out of a
    cancellation (a `finally`), but for at most FINISH_AFTER_CANCEL_SECONDS from then; then let it through.

    Unlike a bare `asyncio.shield`, the write has ended before the cancellation propagates, so nothing is left
    running after the task group or the engine it uses has closed. The bound keeps the promise of a stop (or of a
    cycle's deadline) through a database outage, which the write would otherwise wait out: a write cut short
    leaves its event pending, to be delivered again, and one that commits anyway stays the only verdict.
    """
    task = asyncio.ensure_future(write)
    current = asyncio.current_task()
    if current is None or not current.cancelling():
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            await _end_within(task, FINISH_AFTER_CANCEL_SECONDS)
            raise
    await _end_within(task, FINISH_AFTER_CANCEL_SECONDS)
    if task.cancelled() or task.exception() is not None:
        raise asyncio.CancelledError  # on its way out already: the write's own failure was logged
    return task.result()


async def _end_within(task: asyncio.Future[T], seconds: float) -> None:
    """Give `task` `seconds` to end, then cancel it; return only once it has ended. A cancellation of the caller
    meanwhile (a second signal) cancels it at once, and is raised again once it has ended. A failure of the task
    is logged: nobody awaits it any more."""
    loop = asyncio.get_running_loop()
    deadline, interrupted = loop.time() + seconds, False
    while not task.done():
        remaining = deadline - loop.time()
        if remaining <= 0 or interrupted:
            task.cancel()
        try:
            await asyncio.wait([task], timeout=None if remaining <= 0 or interrupted else remaining)
        except asyncio.CancelledError:
            interrupted = True
    if not task.cancelled() and (failure := task.exception()) is not None:
        log.error("A write cut short by a stop failed: %s", failure, exc_info=failure)
    if interrupted:
        raise asyncio.CancelledError


async def stopped_within(stop: asyncio.Event, seconds: float) -> bool:
    """Wait for `stop` at most `seconds`; whether it was set. Loops pause with it, never with a blind sleep."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
    return stop.is_set()
