"""This process's proof of life to the others: a session advisory lock that every claim it takes names.

PostgreSQL drops a session's advisory locks the moment the session ends, so the claims of a process that died
(or whose connection was cut) are taken over at once, without waiting for their leases to expire; the leases
remain for an owner that is alive but stuck.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from . import queue

log = logging.getLogger(__name__)


class Liveness:
    """Holds the lock on a connection of its own; `ensure` takes it again after that connection was lost."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None
        self._driver: Any = None  # the asyncpg connection: it knows, without a round trip, that it was closed
        self._held = False
        self.lock = _random_lock()

    async def ensure(self) -> bool:
        """Before each claim: no round trip while the lock is held on a live connection. Whether it is held now;
        a database error propagates, for the claim's retry."""
        if self._driver is None or self._driver.is_closed():
            await self._reconnect()
        elif self._held:
            return True
        assert self._connection is not None
        # Not taken: the process's old session still holds it, its end not yet noticed by the server; or, before
        # the first claim, another process drew the same key. The next call tries again.
        self._held = await queue.try_liveness_lock(self._connection, self.lock)
        return self._held

    async def _reconnect(self) -> None:
        if self._connection is not None:
            log.warning("The connection holding this process's liveness lock was lost: taking it again")
            await self.close()
        self._held = False
        self._connection = await self._engine.connect()
        self._driver = (await self._connection.get_raw_connection()).driver_connection

    async def close(self) -> None:
        """End the session, and with it the lock: back in the pool, the connection would keep holding it."""
        if self._connection is not None:
            await self._connection.invalidate()
            await self._connection.close()
            self._connection = self._driver = None


def _random_lock() -> int:
    return secrets.randbelow(2**31 - 1) + 1


@asynccontextmanager
async def hold_liveness(engine: AsyncEngine) -> AsyncIterator[Liveness]:
    """The lock taken under a key no other process holds; the key never changes after that: claims name it."""
    liveness = Liveness(engine)
    try:
        while not await liveness.ensure():
            liveness.lock = _random_lock()
        yield liveness
    finally:
        await liveness.close()
