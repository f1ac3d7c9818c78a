"""Composition root: the resources a cycle needs, opened in order and closed in reverse."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from . import migrations
from .agent.server import AgentKnobs, serve
from .agent_client import AgentClient
from .db import session_factory
from .dispatcher import Dispatcher
from .settings import ConfigError, Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Resources:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    agent: AgentClient
    dispatcher: Dispatcher


def pool_size_for(workers: int) -> int:
    """Tasks hold a connection only for their final write: a few connections serve many workers."""
    return min(workers, 10) + 2


def process_owner() -> str:
    """Names this process on the leases it takes, unique even across restarts with the same pid."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def ensure_schema(engine: AsyncEngine, settings: Settings) -> None:
    """Bring the schema to head (AUTO_MIGRATE), or refuse to run on a schema that is behind."""
    if settings.auto_migrate:
        before, after = await migrations.upgrade(engine)
        if before != after:
            log.info("Schema upgraded from %s to %s", before or "empty", after)
        return
    current, head = await migrations.current_revision(engine), migrations.head_revision()
    if current != head:
        raise ConfigError(
            f"AUTO_MIGRATE=false and the schema is at {current or 'empty'}, not {head}: "
            "run `python -m cyberevents migrate` first"
        )


@dataclass(slots=True)
class Stop:
    """Set by the first SIGTERM / SIGINT: start no new work. `forced` once in-flight work was cut short."""

    event: asyncio.Event
    forced: bool = False


@asynccontextmanager
async def graceful_stop(settings: Settings) -> AsyncIterator[Stop]:
    """Signals only set the stop event; after SHUTDOWN_GRACE_SECONDS, or at a second signal, the work is cancelled.

    A cancellation this issued ends here, quietly: what it interrupted has been recorded as such.
    """
    loop, task = asyncio.get_running_loop(), asyncio.current_task()
    assert task is not None
    stop = Stop(asyncio.Event())
    deadline: asyncio.TimerHandle | None = None

    def cut_short() -> None:
        stop.forced = True
        task.cancel()

    def on_signal(signum: signal.Signals) -> None:
        nonlocal deadline
        if stop.event.is_set():
            log.warning("Received %s again: stopping now", signum.name)
            cut_short()
            return
        log.info(
            "Received %s: starting no new work, giving in-flight deliveries %gs (SHUTDOWN_GRACE_SECONDS)",
            signum.name, settings.shutdown_grace_seconds,
        )  # fmt: skip
        stop.event.set()
        deadline = loop.call_later(settings.shutdown_grace_seconds, cut_short)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield stop
    except asyncio.CancelledError:
        if not stop.forced:
            raise
        task.uncancel()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        if deadline is not None:
            deadline.cancel()


@asynccontextmanager
async def open_resources(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Resources]:
    """Everything a cycle needs on top of an open engine: the schema at head, the agent, the dispatcher."""
    async with AsyncExitStack() as stack:
        await ensure_schema(engine, settings)
        if settings.agent_url is None:
            url = await stack.enter_async_context(serve(AgentKnobs()))
            log.info("AGENT_URL is unset: serving the reference agent in-process at %s", url)
        else:
            url = str(settings.agent_url)
        agent = await stack.enter_async_context(
            AgentClient(
                url,
                workers=settings.dispatch_workers,
                timeout_seconds=settings.agent_timeout_seconds,
                token=settings.agent_token,
            )
        )
        sessions = session_factory(engine)
        dispatcher = Dispatcher(sessions, agent, settings.dispatch_workers, process_owner(), settings.lease_seconds)
        yield Resources(settings, engine, sessions, agent, dispatcher)
