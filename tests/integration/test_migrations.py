from __future__ import annotations

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import URL
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from cyberevents import migrations
from cyberevents.models import EVENTS_FILLFACTOR, Base
from tests.conftest import REPO
from tests.support import cli, run_tool

pytestmark = pytest.mark.slow  # processes, servers or long waits: out of the fast loop


async def tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_upgrade_downgrade_upgrade(empty_database_url: URL) -> None:
    engine = create_async_engine(empty_database_url)
    try:
        assert await migrations.current_revision(engine) is None
        assert await migrations.upgrade(engine) == (None, migrations.head_revision())
        assert await tables(engine) >= set(Base.metadata.tables)

        await migrations.downgrade(engine, "base")
        assert await migrations.current_revision(engine) is None
        assert await tables(engine) == {"alembic_version"}

        await migrations.upgrade(engine)
        assert await migrations.current_revision(engine) == migrations.head_revision()
        assert await migrations.upgrade(engine) == (migrations.head_revision(), migrations.head_revision())
    finally:
        await engine.dispose()


async def test_events_leave_room_on_each_page_for_in_place_claims(empty_database_url: URL) -> None:
    """alembic check does not compare storage parameters: the migration and the model are checked here."""
    engine = create_async_engine(empty_database_url)

    async def fillfactor() -> list[str] | None:
        async with engine.connect() as connection:
            options = await connection.scalar(text("SELECT reloptions FROM pg_class WHERE relname = 'events'"))
            return list(options) if options is not None else None

    try:
        await migrations.upgrade(engine)
        assert await fillfactor() == [f"fillfactor={EVENTS_FILLFACTOR}"]
        await migrations.downgrade(engine, "0004")
        assert await fillfactor() is None
    finally:
        await engine.dispose()


def test_alembic_check_finds_no_drift_between_models_and_migrations(database_url: URL) -> None:
    result = run_tool(
        "alembic", "check", env={"DATABASE_URL": database_url.render_as_string(hide_password=False)}, cwd=str(REPO)
    )
    assert result.returncode == 0, result.stderr
    assert "No new upgrade operations detected" in result.stdout + result.stderr


def test_alembic_cli_upgrades_from_settings(empty_database_url: URL) -> None:
    env = {"DATABASE_URL": empty_database_url.render_as_string(hide_password=False)}
    upgraded = run_tool("alembic", "upgrade", "head", env=env, cwd=str(REPO))
    assert upgraded.returncode == 0, upgraded.stderr
    assert "Running upgrade  -> 0001" in upgraded.stderr
    check = cli("check-db", env=env)
    assert check.returncode == 0, check.stderr
    assert "at head" in check.stdout


async def test_0007_moves_claims_counted_as_deliveries_to_lost_deliveries_and_back(empty_database_url: URL) -> None:
    """Pending events' counts were claims that never got an outcome; one a lease still stands for is counted by the
    claim that takes it over, not twice."""
    engine = create_async_engine(empty_database_url)
    try:
        await migrations.upgrade(engine, "0006")
        async with engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO cycles (id, started_at, trigger, outcome) VALUES (1, now(), 'once', 'interrupted')")
            )
            await connection.execute(
                text(
                    "INSERT INTO events (uid, kind, cycle_id, occurred_at, status, delivery_count, lease_owner) VALUES"
                    " (gen_random_uuid(), 'login', 1, now(), 'pending', 2, 'dead:1:x'),"
                    " (gen_random_uuid(), 'login', 1, now(), 'pending', 2, NULL),"
                    " (gen_random_uuid(), 'login', 1, now(), 'failed', 3, NULL)"
                )
            )
        counts = text("SELECT delivery_count, lost_deliveries FROM events ORDER BY id")
        await migrations.upgrade(engine)
        async with engine.connect() as connection:
            assert [tuple(row) for row in await connection.execute(counts)] == [(0, 1), (0, 2), (3, 0)]
        await migrations.downgrade(engine, "0006")
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT delivery_count FROM events ORDER BY id"))
            assert [row[0] for row in rows] == [2, 2, 3]
    finally:
        await engine.dispose()


async def test_0009_migrates_stored_ground_truth_as_evident(empty_database_url: URL) -> None:
    """Ground truth stored before the subtle forms existed knew only the evident ones."""
    engine = create_async_engine(empty_database_url)
    try:
        await migrations.upgrade(engine, "0008")
        async with engine.begin() as connection:
            await connection.execute(
                text("INSERT INTO cycles (id, started_at, trigger, outcome) VALUES (1, now(), 'once', 'succeeded')")
            )
            event_id = await connection.scalar(
                text(
                    "INSERT INTO events (uid, kind, cycle_id, occurred_at) "
                    "VALUES (gen_random_uuid(), 'login', 1, now()) RETURNING id"
                )
            )
            await connection.execute(
                text("INSERT INTO ground_truth (event_id, scenario, campaign) VALUES (:id, 'brute_force', 'bf-1')"),
                {"id": event_id},
            )
        await migrations.upgrade(engine)
        async with engine.connect() as connection:
            assert await connection.scalar(text("SELECT difficulty FROM ground_truth")) == "evident"
            with pytest.raises(IntegrityError):  # only the two forms
                await connection.execute(text("UPDATE ground_truth SET difficulty = 'hard'"))
    finally:
        await engine.dispose()
