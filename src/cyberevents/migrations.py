"""Alembic driven from inside the event loop, on a connection of the service's own engine."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from . import repository


def script_location() -> Path:
    """Migrations ship inside the wheel; in a source checkout they are the top-level alembic/ folder."""
    packaged = Path(__file__).with_name("alembic")
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "alembic"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at; None for an empty database."""
    async with engine.connect() as connection:
        return await connection.run_sync(current_revision_of)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply migrations up to `revision` under an advisory lock; returns (before, after) revisions."""
    async with engine.begin() as connection:
        await repository.take_migration_lock(connection)
        before = await connection.run_sync(current_revision_of)
        await connection.run_sync(lambda sync: command.upgrade(alembic_config(sync), revision))
        return before, await connection.run_sync(current_revision_of)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    async with engine.begin() as connection:
        await repository.take_migration_lock(connection)
        await connection.run_sync(lambda sync: command.downgrade(alembic_config(sync), revision))
