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

from . import repository

log = logging.getLogger(__name__)


class Liveness:
    """Holds the lock on a connection of its own; `ensure` takes it again after that connection was lost."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._connection: AsyncConnection | None = None
        self._driver: Any = None  # the asyncpg connection: it knows, without a round trip, that it was closed
        self.lock = 0

    async def ensure(self) -> None:
        """Before each claim: cheap while the connection lives; a database error propagates, for a retry."""
        if self._driver is not None and not self._driver.is_closed():
            return
        if self._connection is not None:
            log.warning("The connection holding this process's liveness lock was lost: taking it again")
            await self._connection.invalidate()
            await self._connection.close()
            self._connection = self._driver = None
        connection = await self._engine.connect()
        first = not self.lock
        try:
            if first:
                self.lock = _random_lock()
            while not await repository.try_liveness_lock(connection, self.lock):
                if not first:
                    break  # held by this process's old session, which the server has not ended yet
                self.lock = _random_lock()  # another process's: all but impossible, but not ours to share
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        self._driver = (await connection.get_raw_connection()).driver_connection

    async def close(self) -> None:
        """End the session, and with it the lock: back in the pool, the connection would keep holding it."""
        if self._connection is not None:
            await self._connection.invalidate()
            await self._connection.close()


def _random_lock() -> int:
    return secrets.randbelow(2**31 - 1) + 1


@asynccontextmanager
async def hold_liveness(engine: AsyncEngine) -> AsyncIterator[Liveness]:
    liveness = Liveness(engine)
    await liveness.ensure()
    try:
        yield liveness
    finally:
        await liveness.close()
