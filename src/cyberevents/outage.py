"""Waiting out the database: how claims and verdict writes retry while it is away."""

from __future__ import annotations

from collections.abc import AsyncIterator

import stamina

from .db import database_unavailable

# A verdict in hand is worth waiting for: its write is retried this long through a database outage.
WRITE_RETRY_SECONDS = 60.0


def through_outage() -> AsyncIterator[stamina.Attempt]:
    """Attempts, each on a fresh connection, while the database is away: backoff up to 5 s, WRITE_RETRY_SECONDS
    in all. Claims and verdict writes both go through it."""
    return stamina.retry_context(on=database_unavailable, attempts=None, timeout=WRITE_RETRY_SECONDS, wait_max=5.0)
