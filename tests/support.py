"""Helpers shared by tests: subprocess runs of the CLI with a controlled environment, reads of the ledger, waits
for a condition."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import IO

from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cyberevents.db import session_factory
from cyberevents.models import Cycle
from cyberevents.settings import Settings

# Settings a developer may have exported; every CLI test starts without them.
SETTING_NAMES = tuple(name.upper() for name in Settings.model_fields)


def clean_env(**settings: str) -> dict[str, str]:
    """This process's environment without any cyberevents setting a developer may have exported, plus `settings`."""
    return {key: value for key, value in os.environ.items() if key not in SETTING_NAMES} | settings


def read_until(stream: IO[str], marker: str, on_line: Callable[[], None] = lambda: None) -> None:
    """Read a child's output line by line until a line contains `marker`."""
    for line in stream:
        on_line()
        if marker in line:
            return
    raise AssertionError(f"the process ended before printing {marker!r}")


def asyncpg_dsn(url: URL) -> str:
    """A plain libpq-style DSN asyncpg.connect() accepts."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def cli(
    *args: str, env: Mapping[str, str], cwd: str | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """Run `python -m cyberevents ARGS` in a subprocess, with only `env` as settings."""
    return run_tool(sys.executable, "-m", "cyberevents", *args, env=env, cwd=cwd, timeout=timeout)


def run_tool(
    *command: str, env: Mapping[str, str], cwd: str | None = None, timeout: float = 90
) -> subprocess.CompletedProcess[str]:
    """Run a command (cyberevents, alembic from this environment; a system tool) with only `env` as settings."""
    environment = clean_env(**env)
    tool = str(Path(sys.executable).with_name(command[0])) if command[0] == "alembic" else command[0]
    return subprocess.run(
        [tool, *command[1:]],
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def by_host_name(url: URL) -> str:
    return url.set(host="localhost").render_as_string(hide_password=False)


def threads_of(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return int(next(line for line in status.splitlines() if line.startswith("Threads:")).split()[1])


async def ledger(engine: AsyncEngine) -> list[Cycle]:
    """Every cycle and slot record, oldest first."""
    async with session_factory(engine)() as session:
        return list((await session.scalars(select(Cycle).order_by(Cycle.id))).all())


async def ledger_at(database_url: URL | str) -> list[Cycle]:
    """The ledger read on an engine of its own: for a database the test's engine does not reach, or a server that
    restarted under it."""
    engine = create_async_engine(database_url)
    try:
        return await ledger(engine)
    finally:
        await engine.dispose()


async def wait_until(check: Callable[[], Awaitable[bool] | bool], within: float = 30.0) -> None:
    """Poll `check` (the database and HTTP endpoints have no event to wait on) until true or `within` s pass."""
    async with asyncio.timeout(within):
        while not await _answer(check()):  # noqa: ASYNC110
            await asyncio.sleep(0.1)


async def _answer(value: Awaitable[bool] | bool) -> bool:
    return await value if inspect.isawaitable(value) else bool(value)
