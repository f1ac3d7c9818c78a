"""Real PostgreSQL for every test: the server at TEST_DATABASE_URL, else an embedded one.

The schema is built once, through Alembic, into a template database; each test gets its own
`CREATE DATABASE … TEMPLATE` copy, dropped afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cyberevents import migrations
from cyberevents.db import import_pgserver
from cyberevents.eventloop import ThreadFreeEventLoop, run
from cyberevents.logs import log_retries
from cyberevents.settings import Settings, to_asyncpg_url
from tests.support import asyncpg_dsn, by_host_name, clean_env

REPO = Path(__file__).resolve().parents[1]


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> Mapping[str, object]:
    """Tests run on the loop the service runs on."""
    return {"threadfree": ThreadFreeEventLoop}


@pytest.fixture(scope="session", autouse=True)
def _retries_logged_as_in_the_service() -> None:
    log_retries()


@pytest.fixture(scope="session")
def server_url() -> Iterator[URL]:
    """The PostgreSQL server tests use, as an asyncpg URL of its maintenance database: TEST_DATABASE_URL's, or an
    embedded one for the session."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield to_asyncpg_url(configured)
        return
    with embedded_postgres() as server:
        yield to_asyncpg_url(server.get_uri())


@contextmanager
def embedded_postgres() -> Iterator[Any]:
    """A pgserver PostgreSQL of its own, deleted afterwards.

    Its data lives outside pytest's numbered temporary directories: a concurrent pytest run keeps only the last
    three of those, and closes their parent to other users, the one pgserver runs the server as included.
    """
    data = Path(tempfile.mkdtemp(prefix="cyberevents-tests-")) / "pgdata"
    data.parent.chmod(0o755)
    try:
        with import_pgserver().get_server(data, cleanup_mode="delete") as server:
            yield server
    finally:
        shutil.rmtree(data.parent, ignore_errors=True)


async def _admin(server_url: URL, sql: str) -> None:
    try:
        connection = await asyncpg.connect(asyncpg_dsn(server_url))
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError) as exc:
        # Every later test would error the same way: one clear line instead.
        where = server_url.render_as_string(hide_password=True)
        pytest.exit(f"the tests' PostgreSQL at {where} does not answer ({exc}); stopping the session", returncode=3)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def template_name(server_url: URL) -> Iterator[str]:
    """A database migrated to head once per session, copied for each test."""
    name = f"cyberevents_template_{os.getpid()}"

    async def build() -> None:
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}"')
        await _admin(server_url, f'CREATE DATABASE "{name}"')
        engine = create_async_engine(server_url.set(database=name))
        try:
            await migrations.upgrade(engine)
        finally:
            await engine.dispose()

    run(build())
    yield name
    run(_admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def database_url(server_url: URL, template_name: str) -> AsyncIterator[URL]:
    """A fresh database at the schema head, for this test alone."""
    async with _fresh_database(server_url, f'TEMPLATE "{template_name}"') as url:
        yield url


@pytest.fixture
async def empty_database_url(server_url: URL) -> AsyncIterator[URL]:
    """A fresh database with no schema at all, for migration tests."""
    async with _fresh_database(server_url) as url:
        yield url


@asynccontextmanager
async def _fresh_database(server_url: URL, options: str = "") -> AsyncIterator[URL]:
    name = f"cyberevents_test_{uuid.uuid4().hex[:12]}"
    await _admin(server_url, f'CREATE DATABASE "{name}" {options}')
    try:
        yield server_url.set(database=name)
    finally:
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def engine(database_url: URL) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


MakeSettings = Callable[..., Settings]


@pytest.fixture
def make_settings(database_url: URL, tmp_path: Path) -> MakeSettings:
    """Settings for this test's database, ignoring the developer's environment and .env."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url.render_as_string(hide_password=False),
            "data_dir": tmp_path / "data",
            "agent_retry_backoff_seconds": 0.01,  # retries are tested; waiting for them is not
        }
        return Settings(_env_file=None, **(values | overrides))

    return make


@pytest.fixture
def settings(make_settings: MakeSettings) -> Settings:
    return make_settings()


@dataclass(frozen=True)
class AgentProcess:
    """`cyberevents agent` in its own process, with 100 ms latency and a bearer token."""

    url: str
    token: str = "s3cret"

    def env(self, database_url: URL, **settings: str) -> dict[str, str]:
        """The environment of a cyberevents process using this agent, both reached by host name."""
        return clean_env(
            DATABASE_URL=by_host_name(database_url),
            AGENT_URL=self.url.replace("127.0.0.1", "localhost"),
            AGENT_TOKEN=self.token,
            **settings,
        )


@pytest.fixture
def agent_process() -> Iterator[AgentProcess]:
    """The agent prints its URL as its first line on stdout; it must stop cleanly on SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "-m", "cyberevents", "agent", "--port", "0", "--latency-ms", "100", "--token", "s3cret"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert process.stdout is not None
    yield AgentProcess(process.stdout.readline().strip())
    process.terminate()
    _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert "Reference agent stopped" in stderr
