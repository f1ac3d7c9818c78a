"""The resources a cycle needs on top of an open engine, opened in order and closed in reverse."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from . import migrations, queue
from .agent.server import AgentKnobs, serve
from .agent_client import AgentClient
from .breaker import CircuitBreaker
from .db import open_engine, open_write_engine, session_factory
from .dispatcher import Dispatcher, write_connections_for
from .limits import ensure_descriptors
from .liveness import hold_liveness
from .metrics import Metrics
from .redaction import Redactor
from .settings import ConfigError, Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Resources:
    settings: Settings
    engine: AsyncEngine
    write_engine: AsyncEngine  # the dispatch's claims and outcomes
    sessions: async_sessionmaker[AsyncSession]
    agent: AgentClient
    dispatcher: Dispatcher


# The main engine's connections: the liveness lock, the cycle lock, the cycle's bookkeeping. Claims and outcomes
# have an engine of their own, sized for the workers (open_resources), and the daemon's health server another.
MAIN_POOL_SIZE = 3


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
async def open_resources(
    settings: Settings, engine: AsyncEngine, metrics: Metrics | None = None
) -> AsyncIterator[Resources]:
    """Everything a cycle needs on top of an open engine: the schema at head, the agent, the dispatcher."""
    async with AsyncExitStack() as stack:
        await ensure_schema(engine, settings)
        ensure_descriptors(settings.dispatch_workers, sockets_per_request=1 if settings.agent_url else 2)
        redact = Redactor(settings.secret_values())
        if settings.agent_url is None:
            token = settings.agent_token.get_secret_value() if settings.agent_token else None
            url = await stack.enter_async_context(serve(AgentKnobs(token=token)))
            log.info("AGENT_URL is unset: serving the reference agent in-process at %s", url)
        else:
            url = str(settings.agent_url)
        agent = await stack.enter_async_context(
            AgentClient(
                url,
                workers=settings.dispatch_workers,
                timeout_seconds=settings.agent_timeout_seconds,
                token=settings.agent_token,
                max_retries=settings.agent_max_retries,
                backoff_seconds=settings.agent_retry_backoff_seconds,
                verify_tls=settings.agent_tls_verify,
                redact=redact,
                observe=metrics.observe_response if metrics is not None else None,
            )
        )
        write_engine = await stack.enter_async_context(
            open_write_engine(engine, pool_size=write_connections_for(settings.dispatch_workers))
        )
        sessions = session_factory(engine)
        liveness = await stack.enter_async_context(hold_liveness(engine))
        dispatcher = Dispatcher(
            sessions=sessions,
            writes=session_factory(write_engine),
            agent=agent,
            breaker=CircuitBreaker(settings.agent_circuit_cooldown_seconds),
            workers=settings.dispatch_workers,
            claimant=queue.Claimant(process_owner(), liveness.lock, settings.lease_seconds, settings.max_attempts),
            liveness=liveness,
            redact=redact,
            metrics=metrics,
            payload=settings.agent_payload,
        )
        yield Resources(settings, engine, write_engine, sessions, agent, dispatcher)


@asynccontextmanager
async def open_service(settings: Settings, metrics: Metrics | None = None) -> AsyncIterator[Resources]:
    """Everything a cycle needs, from the configured database up: what run-once, the tests and the bench open.

    The daemon takes the same two steps apart, serving its health endpoints between them while it waits for the
    database.
    """
    async with (
        open_engine(settings, pool_size=MAIN_POOL_SIZE) as engine,
        open_resources(settings, engine, metrics) as resources,
    ):
        yield resources
