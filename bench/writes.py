"""What the driver shortcut for one-row writes buys: CPU per write, three ways of writing, interleaved in one run.

Each delivery writes its verdict as one statement in a session of its own. `db.execute_on_driver` runs it on the
session's asyncpg connection; the plain forms go through SQLAlchemy's statement machinery. This writes the same
single-row INSERT (with ON CONFLICT and RETURNING, like the verdict's) W at a time on a pool of autocommit
connections like the write pool, each way in turn, and reports this process's CPU time per write (what the
shortcut saves; it does not depend on what else the machine is doing the way a rate does) and the rate.

    shortcut      db.execute_on_driver: the statement on the session's asyncpg connection, in one greenlet
    plain         session.execute(text(...)) in a session of its own
    driver sql    session.connection().exec_driver_sql(...): SQLAlchemy's execution without its compiler

    python -m bench.writes [--writes N] [--workers W] [--rounds R]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import time
from collections.abc import Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from bench.run import DEFAULT_SERVER, positive
from cyberevents.db import execute_on_driver, session_factory
from cyberevents.eventloop import run
from cyberevents.settings import to_asyncpg_url

TABLE = "bench_writes"
DOLLAR = f"INSERT INTO {TABLE} (event_id) VALUES ($1) ON CONFLICT (event_id) DO NOTHING RETURNING id"
NAMED = text(f"INSERT INTO {TABLE} (event_id) VALUES (:event_id) ON CONFLICT (event_id) DO NOTHING RETURNING id")
Write = Callable[[async_sessionmaker[AsyncSession], int], Awaitable[object]]


async def shortcut(sessions: async_sessionmaker[AsyncSession], event_id: int) -> object:
    return await execute_on_driver(sessions, DOLLAR, event_id)


async def plain(sessions: async_sessionmaker[AsyncSession], event_id: int) -> object:
    async with sessions() as session:
        return (await session.execute(NAMED, {"event_id": event_id})).scalar()


async def driver_sql(sessions: async_sessionmaker[AsyncSession], event_id: int) -> object:
    async with sessions() as session:
        connection = await session.connection()
        return (await connection.exec_driver_sql(DOLLAR, (event_id,))).scalar()


WAYS: dict[str, Write] = {"shortcut": shortcut, "plain": plain, "driver sql": driver_sql}


async def _round(
    write: Write, sessions: async_sessionmaker[AsyncSession], ids: range, workers: int
) -> tuple[float, float]:
    """(CPU µs per write, writes per second) of `ids` written `workers` at a time."""
    slots = asyncio.Semaphore(workers)

    async def one(event_id: int) -> None:
        async with slots:
            await write(sessions, event_id)

    cpu, wall = time.process_time(), time.perf_counter()
    async with asyncio.TaskGroup() as tasks:
        for event_id in ids:
            tasks.create_task(one(event_id))
    return (time.process_time() - cpu) / len(ids) * 1e6, len(ids) / (time.perf_counter() - wall)


async def measure(url: str, writes: int, workers: int, rounds: int) -> dict[str, list[tuple[float, float]]]:
    engine = create_async_engine(
        to_asyncpg_url(url), pool_size=10, max_overflow=0, isolation_level="AUTOCOMMIT", pool_reset_on_return=None
    )
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))
            await connection.execute(text(f"CREATE TABLE {TABLE} (id bigserial PRIMARY KEY, event_id bigint UNIQUE)"))
        sessions, start = session_factory(engine), 0
        for write in WAYS.values():  # warm-up: pool filled, statements prepared
            await _round(write, sessions, range(start, start + 300), workers)
            start += 300
        gc.freeze()
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in WAYS}
        for index in range(rounds):
            order = list(WAYS.items()) if index % 2 == 0 else list(reversed(WAYS.items()))
            for name, write in order:
                results[name].append(await _round(write, sessions, range(start, start + writes), workers))
                start += writes
            print(f"round {index + 1}/{rounds} done", flush=True)
        async with engine.connect() as connection:
            await connection.execute(text(f"DROP TABLE {TABLE}"))
        return results
    finally:
        await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.writes", description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=positive, default=3000, help="writes per way and round (default 3000)")
    parser.add_argument("--workers", type=positive, default=50, help="writes in flight (default 50)")
    parser.add_argument("--rounds", type=positive, default=6, help="rounds, alternating the order (default 6)")
    args = parser.parse_args(argv)
    url = os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER)
    results = run(measure(url, args.writes, args.workers, args.rounds))
    print("| way | CPU µs per write, median | range | writes/s, median | range |")
    print("|---|---|---|---|---|")
    for name, rounds in results.items():
        cpu, rate = [r[0] for r in rounds], [r[1] for r in rounds]
        print(
            f"| {name} | {statistics.median(cpu):.0f} | {min(cpu):.0f}–{max(cpu):.0f} "
            f"| {statistics.median(rate):.0f} | {min(rate):.0f}–{max(rate):.0f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
