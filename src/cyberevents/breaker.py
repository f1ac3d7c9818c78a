"""A circuit breaker for the agent: when most recent deliveries failed for transient reasons, pause dispatch.

Closed: deliveries flow. Open: nobody is let through until the cool-down has passed; events wait as pending.
Half-open: one probe is let through; its success closes the circuit, its failure opens it again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

log = logging.getLogger(__name__)


class CircuitBreaker:
    def __init__(self, cooldown: float, window: int = 20, min_calls: int = 10, failure_ratio: float = 0.5) -> None:
        self.cooldown = cooldown
        self._window: deque[bool] = deque(maxlen=window)  # True for a transient failure
        self._min_calls, self._failure_ratio = min_calls, failure_ratio
        self._opened_at: float | None = None
        self._probing = False
        self._settled = asyncio.Event()  # set when a probe has its answer
        self.reason: str | None = None

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self._probing or self._cooled_down else "open"

    @property
    def _cooled_down(self) -> bool:
        return self._opened_at is not None and time.monotonic() - self._opened_at >= self.cooldown

    def reopens_in(self) -> float:
        return 0.0 if self._opened_at is None else max(0.0, self.cooldown - (time.monotonic() - self._opened_at))

    async def admit(self) -> bool:
        """Whether a delivery may go now. While open, no: the events wait as pending for a later cycle.

        Once the cool-down has passed, one delivery goes as a probe and the others wait for its answer.
        """
        while self._opened_at is not None:
            if self._probing:
                await self._settled.wait()
                continue
            if not self._cooled_down:
                return False
            self._probing = True
            self._settled.clear()
            log.info("Agent circuit half-open: sending one probe")
            return True
        return True

    def record(self, transient_failure: bool, error: str | None = None) -> None:
        if self._probing:
            self._probing = False
            if transient_failure:
                self._open(error)
            else:
                log.info("Agent circuit closed: the agent answers again")
                self._opened_at, self.reason = None, None
                self._window.clear()
            self._settled.set()
            return
        if self._opened_at is not None:
            return  # a delivery that was already in flight when the circuit opened
        self._window.append(transient_failure)
        failures = sum(self._window)
        if len(self._window) >= self._min_calls and failures / len(self._window) >= self._failure_ratio:
            self._open(f"{failures} of the last {len(self._window)} deliveries failed: {error}")

    def _open(self, reason: str | None) -> None:
        self._opened_at, self.reason = time.monotonic(), reason
        log.warning("Agent circuit open for %gs: %s; events wait as pending", self.cooldown, reason)
