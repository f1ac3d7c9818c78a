"""Composition root: the resources a cycle needs, opened in order and closed in reverse."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from . import migrations
from .agent.server import AgentKnobs, serve
from .agent_client import AgentClient
from .db import open_engine, session_factory
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


@asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    async with AsyncExitStack() as stack:
        engine = await stack.enter_async_context(
            open_engine(settings, pool_size=pool_size_for(settings.dispatch_workers))
        )
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
