"""Alembic environment: async, URL from cyberevents' Settings, or a connection handed over by the service."""

from __future__ import annotations

import logging.config

from alembic import context
from sqlalchemy.engine import Connection

from cyberevents.db import open_engine
from cyberevents.eventloop import run
from cyberevents.models import Base
from cyberevents.settings import load_settings

config = context.config
if config.config_file_name is not None and config.attributes.get("connection") is None:
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)


def run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def run_migrations_from_settings() -> None:
    async with open_engine(load_settings(), pool_size=1) as engine, engine.connect() as connection:
        await connection.run_sync(run_migrations)
        await connection.commit()


if context.is_offline_mode():
    raise SystemExit("cyberevents migrations run online only: drop --sql")

handed_over = config.attributes.get("connection")
if handed_over is not None:
    run_migrations(handed_over)
else:
    run(run_migrations_from_settings())
