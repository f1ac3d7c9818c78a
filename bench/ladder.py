"""Where the machine's limit goes: a delivery's path built up one layer at a time, each layer's rate measured.

`python -m bench` compares cyberevents' rate with the smaller of two raw limits, a bare aiohttp client's request
rate and a bare asyncpg loop's commit rate, each measured alone. A delivery needs both a request and a commit,
and on one machine they share the cores. This measures, in the same run and against the same agent and database,
what each layer of the path leaves of those limits, W deliveries in flight over the same N events:

    request + commit      a bare POST to the agent, then one single-row INSERT on the worker's own connection
    + own AsyncSession    the INSERT written in an AsyncSession of its own, as each delivery's write must be
    + verdict statement   cyberevents' write: the analysis inserted and its event marked analysed
    + agent client        cyberevents' AgentClient (verdict validated) instead of the bare POST
    cyberevents run-once  the whole service: claims, tasks, slots, progress, metrics

Layers after the first share write_connections_for(W) pooled connections, as the service does. Each layer's CPU per
delivery is read for the three parties, as `python -m bench.cpu` reads them: this process (the client), every
PostgreSQL process, and the agent; the service's, from a `python -m bench.cpu` run of its own after the layers
(its dispatch phase only: run-once's own process also generates and stores the cycle). Run it when no other
PostgreSQL work is going on.

    python -m bench.ladder [--events N] [--workers W] [--repeat K]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import asyncpg
from sqlalchemy.ext.asyncio import create_async_engine

from bench.cpu import spent
from bench.run import (
    BENCH_DB,
    COMMIT,
    COMMITS_TABLE,
    DEFAULT_SERVER,
    JSON_HEADERS,
    RAW_REQUEST,
    Case,
    positive,
    reference_agent,
    run_case,
)
from cyberevents import queue
from cyberevents.agent_client import AgentClient
from cyberevents.db import execute_on_driver, open_write_engine, session_factory
from cyberevents.dispatcher import write_connections_for
from cyberevents.eventloop import run
from cyberevents.models import EventKind
from cyberevents.protocol import Delivery, Verdict, parse_verdict
from cyberevents.settings import to_asyncpg_url

LAYERS = ("request + commit", "+ own AsyncSession", "+ verdict statement", "+ agent client")
SERVICE = "cyberevents run-once"
PARTIES = ("client", "postgres", "agent")  # whose CPU: this process (or run-once's), PostgreSQL, the agent
Measured = tuple[float, dict[str, float]]  # deliveries per second, and CPU per delivery in µs by party


async def _pending_again(dsn: str) -> list[asyncpg.Record]:
    """Every event back to pending with no analysis, and vacuumed: each layer starts from the same tables."""
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(COMMITS_TABLE)
        await connection.execute("TRUNCATE event_analyses")
        await connection.execute("UPDATE events SET status = 'pending', attempts = 0")
        await connection.execute("VACUUM ANALYZE events")
        return list(await connection.fetch("SELECT id, uid, kind FROM events ORDER BY id"))
    finally:
        await connection.close()


async def layer_rate(layer: str, reference: tuple[int, str], database_url: str, workers: int) -> Measured:
    """Deliveries per second through `layer`, `workers` at a time, over every event in the database; and each
    party's CPU per delivery in µs, read around the deliveries alone (not the tables' reset, nor the connections)."""
    agent_pid, agent_url = reference  # the reference agent's process and URL
    dsn = database_url.replace("+asyncpg", "")
    events = iter(await _pending_again(dsn))
    async with AsyncExitStack() as stack:
        connector = aiohttp.TCPConnector(limit=workers, resolver=aiohttp.ThreadedResolver())
        http = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
        agent = await stack.enter_async_context(AgentClient(agent_url, workers=workers, timeout_seconds=30))
        engine = create_async_engine(database_url)
        stack.push_async_callback(engine.dispose)
        pool_size = write_connections_for(workers)
        writes = session_factory(await stack.enter_async_context(open_write_engine(engine, pool_size=pool_size)))
        connections = asyncio.Semaphore(pool_size)
        own: list[asyncpg.Connection] = []
        stack.push_async_callback(lambda: asyncio.gather(*(connection.close() for connection in own)))
        if layer == LAYERS[0]:
            own.extend([await asyncpg.connect(dsn) for _ in range(workers)])

        async def post() -> bytes:
            async with http.post(agent_url, data=RAW_REQUEST, headers=JSON_HEADERS) as response:
                return await response.read()

        async def record(event_id: int, verdict: Verdict, raw: str) -> None:
            async with connections:
                severity, score, summary = verdict.severity.value, verdict.score, verdict.summary
                await queue.record_analysis(writes, event_id, severity, score, summary, raw)

        def deliver_as(worker: int) -> Callable[[asyncpg.Record], Awaitable[object]]:
            async def request_and_commit(event: asyncpg.Record) -> None:
                await post()
                await own[worker].execute(COMMIT, str(event["id"]))

            async def in_own_session(event: asyncpg.Record) -> None:
                await post()
                async with connections:
                    await execute_on_driver(writes, COMMIT, str(event["id"]))

            async def verdict_statement(event: asyncpg.Record) -> None:
                await record(event["id"], *parse_verdict(await post()))

            async def agent_client(event: asyncpg.Record) -> None:
                delivery = Delivery(event["id"], event["uid"], EventKind(event["kind"]), RAW_REQUEST)
                answer = await agent.analyse(delivery)
                await record(event["id"], answer.verdict, answer.raw)

            layers = (request_and_commit, in_own_session, verdict_statement, agent_client)
            return dict(zip(LAYERS, layers, strict=True))[layer]

        async def worker(index: int) -> int:
            deliver, delivered = deliver_as(index), 0
            for event in events:
                await deliver(event)
                delivered += 1
            return delivered

        before, started = spent(agent_pid), time.monotonic()
        delivered = sum(await asyncio.gather(*(worker(index) for index in range(workers))))
        seconds, after = time.monotonic() - started, spent(agent_pid)
        return delivered / seconds, {party: (after[party] - before[party]) / delivered * 1e6 for party in PARTIES}


def service_cpu(events: int, workers: int) -> dict[str, float]:
    """The service's CPU per event in µs during its dispatch, from a `python -m bench.cpu` run."""
    with tempfile.TemporaryDirectory() as scratch:
        figures = Path(scratch) / "cpu.json"
        command = [sys.executable, "-m", "bench.cpu", "--events", str(events), "--workers", str(workers)]
        done = subprocess.run([*command, "--json", str(figures)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"bench.cpu failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
        measured: dict[str, float] = json.loads(figures.read_text())["cpu_us_per_event"]
    return measured


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ladder", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=positive, default=10_000, metavar="N", help="events (default 10,000)")
    parser.add_argument("--workers", type=positive, default=50, metavar="W", help="DISPATCH_WORKERS (default 50)")
    parser.add_argument("--repeat", type=positive, default=3, metavar="K", help="runs, medians shown (default 3)")
    args = parser.parse_args(argv)
    server = os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER)
    database_url = to_asyncpg_url(server).set(database=BENCH_DB).render_as_string(hide_password=False)
    names = (*LAYERS, SERVICE)
    limit_shares: dict[str, list[float]] = {name: [] for name in names}
    rung_shares: dict[str, list[float]] = {name: [] for name in names}
    rates: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, dict[str, list[float]]] = {name: {party: [] for party in PARTIES} for name in names}
    for attempt in range(1, args.repeat + 1):
        print(f"run {attempt}/{args.repeat}: run-once and the raw limits ...", file=sys.stderr, flush=True)
        # run_case creates the database, with its N events delivered once, then measures the raw limits.
        service = run_case(Case(args.events, args.workers, 0.0), server)
        assert service.raw_http is not None and service.raw_db is not None
        limit = min(service.raw_http, service.raw_db)
        print(f"  raw HTTP {service.raw_http:.0f}/s, raw DB {service.raw_db:.0f}/s", file=sys.stderr, flush=True)
        measured: dict[str, Measured] = {}
        with reference_agent() as agent:
            for name in LAYERS:
                measured[name] = run(layer_rate(name, agent, database_url, args.workers))
        measured[SERVICE] = service.rate, service_cpu(args.events, args.workers)
        for name, (rate, per_party) in measured.items():
            rates[name].append(rate)
            limit_shares[name].append(rate / limit)
            rung_shares[name].append(rate / measured[LAYERS[1]][0])
            for party in PARTIES:
                cpu[name][party].append(per_party[party])
            print(
                f"  {name}: {rate:.0f}/s = {rate / limit:.2f}; CPU per delivery (µs): "
                + ", ".join(f"{party} {per_party[party]:.0f}" for party in PARTIES),
                file=sys.stderr,
                flush=True,
            )
    print(f"N={args.events} W={args.workers}, medians of {args.repeat} runs\n")
    print(
        "| layer | deliveries/s | ÷ min(raw) | range of ÷ min(raw) | ÷ own-session rung | client CPU (µs) "
        "| PostgreSQL CPU (µs) | agent CPU (µs) |\n|---|---|---|---|---|---|---|---|"
    )
    for name in names:
        figures = [
            f"{statistics.median(rates[name]):.0f}",
            f"{statistics.median(limit_shares[name]):.2f}",
            f"{min(limit_shares[name]):.2f}–{max(limit_shares[name]):.2f}",
            f"{statistics.median(rung_shares[name]):.2f}",
            *(f"{statistics.median(cpu[name][party]):.0f}" for party in PARTIES),
        ]
        print(f"| {name} | {' | '.join(figures)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
