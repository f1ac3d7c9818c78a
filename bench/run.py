"""Dispatch benchmarks: run-once against the reference agent, compared with what the machine can do.

For N events, W workers and an agent of latency L, the dispatch cannot beat ceil(N / W) × L. With L = 0 the
bound is the machine: the same run measures the raw request rate of a bare aiohttp client against the same
agent with W in flight, and the raw rate of single-row commits with W concurrent asyncpg connections, and
reports cyberevents' rate as a fraction of the smaller. Each case runs `cyberevents run-once` as its own
process against a fresh database on the PostgreSQL at BENCH_DATABASE_URL (default: the machine's,
postgresql://postgres@127.0.0.1:5432/test) and a `cyberevents agent` process with latency L, which reports the
requests it saw in flight. Each case runs `--repeat` times (run-once and the raw limits again each time) and the
table shows medians: on a shared machine one run can be a quarter faster or slower than the next. A case with a
fourth field R runs R daemons that share one cycle instead (bench.replicas).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import asyncpg

from cyberevents.eventloop import run
from cyberevents.settings import to_asyncpg_url

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
REPLICA_CASE = "30000,500,2000"  # shared by replicas: 30,000 events, W = 500 in each, L = 2 s (--replicas R alone)
# The targets (docs/performance.md): latency-bound at two scales, fan-out thousands wide, machine-bound at W = 50
# with memory from 1,000 to 100,000 events, and three replicas sharing one cycle (the fourth field: R).
DEFAULT_CASES = [
    "434,10,200", "10000,500,1000", "20000,5000,10000", "50000,10000,20000",
    "2000,50,0", "1000,50,0", "100000,50,0", f"{REPLICA_CASE},3",
]  # fmt: skip
BENCH_DB = "cyberevents_bench"


@dataclass(frozen=True)
class Case:
    events: int
    workers: int  # in each replica
    latency_ms: float
    replicas: int = 1  # daemons sharing the cycle (bench.replicas); 1 is run-once itself

    @classmethod
    def parse(cls, text: str, replicas: int | None = None) -> Case:
        """`N,W,L_MS` or `N,W,L_MS,R`; `replicas` (--replicas) is R for a case that does not give its own."""
        fields = text.split(",")
        try:
            if len(fields) not in (3, 4):
                raise ValueError
            events, workers, latency = int(fields[0]), int(fields[1]), float(fields[2]) + 0.0  # -0 is 0
            given = int(fields[3]) if len(fields) == 4 else None
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not N,W,L_MS or N,W,L_MS,R") from None
        if given is not None and replicas is not None and given != replicas:
            raise argparse.ArgumentTypeError(f"{text!r} gives R = {given}, --replicas {replicas}")
        count = given if given is not None else replicas or 1
        if min(events, workers, count) < 1 or not 0 <= latency < math.inf:
            raise argparse.ArgumentTypeError(f"{text!r}: N, W and R are at least 1, L_MS a finite number from 0")
        if count > 1 and latency == 0:
            raise argparse.ArgumentTypeError(f"{text!r}: replicas are measured against the agent's latency, L_MS > 0")
        return cls(events, workers, latency, count)

    @property
    def ideal(self) -> float:
        """The dispatch's floor: ceil(N / (R·W)) waves of L."""
        return math.ceil(self.events / (self.replicas * self.workers)) * self.latency_ms / 1000

    @property
    def label(self) -> str:
        shared = f" x {self.replicas} replicas" if self.replicas > 1 else ""
        return f"N={self.events} W={self.workers} L={self.latency_ms:g} ms{shared}"


@dataclass(frozen=True)
class Result:
    case: Case
    dispatch_seconds: float
    peak_in_flight: int
    peak_rss_mib: float
    raw_http: float | None = None
    raw_db: float | None = None
    median_share: float | None = None  # set on a row of medians: the median of the runs' own ratios
    score_seconds: float | None = None  # scoring the cycle against its ground truth, after the dispatch
    # The ladder's "+ own AsyncSession" rung in the same run: a bare POST, then a one-row INSERT in an AsyncSession
    # of its own per delivery, the most a design that writes each verdict in its own session allows (issue 21).
    session_rung: float | None = None
    median_rung_share: float | None = None  # set on a row of medians, as median_share

    @property
    def rate(self) -> float:
        return self.case.events / self.dispatch_seconds

    @property
    def share_of_limit(self) -> float | None:
        if self.median_share is not None:
            return self.median_share
        if self.raw_http is None or self.raw_db is None:
            return None
        return self.rate / min(self.raw_http, self.raw_db)

    @property
    def share_of_rung(self) -> float | None:
        if self.median_rung_share is not None:
            return self.median_rung_share
        return None if self.session_rung is None else self.rate / self.session_rung

    @property
    def ideal(self) -> float:
        return self.case.ideal

    @property
    def ratio(self) -> float:
        return self.dispatch_seconds / self.ideal if self.ideal else float("nan")

    def summary(self) -> str:
        if self.case.latency_ms > 0:
            return f"dispatch {self.dispatch_seconds:.2f}s = {self.ratio:.3f} x ideal, {self.peak_in_flight} in flight"
        return (
            f"{self.rate:.0f} events/s, raw HTTP {_maybe(self.raw_http)}/s, raw DB {_maybe(self.raw_db)}/s: "
            f"{self.share_of_limit:.2f} of the smaller; own-session rung {_maybe(self.session_rung)}/s: "
            f"{self.share_of_rung:.2f} of it"
        )

    def as_json(self) -> dict[str, object]:
        """The run's figures, and the one that judges it (`figure`): the ratio to the ideal when the agent's
        latency bounds the dispatch, the rate when the machine does."""
        latency_bound = self.case.latency_ms > 0
        return {
            "dispatch_seconds": self.dispatch_seconds,
            "events_per_second": self.rate,
            "ratio_to_ideal": self.ratio if latency_bound else None,
            "share_of_raw_limit": self.share_of_limit,
            "session_rung": self.session_rung,
            "share_of_session_rung": self.share_of_rung,
            "raw_http": self.raw_http,
            "raw_db": self.raw_db,
            "peak_in_flight": self.peak_in_flight,
            "peak_rss_mib": self.peak_rss_mib,
            "score_seconds": self.score_seconds,
            "figure": "ratio_to_ideal" if latency_bound else "events_per_second",
        }


async def recreate(server: str) -> str:
    connection = await asyncpg.connect(server)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{BENCH_DB}"')
    finally:
        await connection.close()
    return to_asyncpg_url(server).set(database=BENCH_DB).render_as_string(hide_password=False)


RAW_REQUEST = json.dumps(
    {"event_type": "firewall", "event_id": 1, "event": {"occurred_at": "2026-11-23T12:00:00+00:00",
     "src_ip": "10.20.1.2", "src_port": 50000, "dst_ip": "10.30.1.2", "dst_port": 443, "protocol": "tcp",
     "direction": "outbound", "action": "allow", "rule_name": "allow-443-tcp", "bytes": 1200}}
).encode()  # fmt: skip


JSON_HEADERS = {"Content-Type": "application/json"}
# The raw commit: one row, in a table with nothing but a primary key, as its own transaction.
COMMITS_TABLE = "CREATE TABLE IF NOT EXISTS bench_commits (id bigserial PRIMARY KEY, note text)"
COMMIT = "INSERT INTO bench_commits (note) VALUES ($1)"


async def raw_http_rate(url: str, workers: int, requests: int) -> float:
    """Requests per second of a bare aiohttp client, `workers` in flight: the HTTP side's limit.

    `workers` loops rather than one coroutine per request: a gather of 100,000 coroutines would swell this
    process, and the next run-once forked from it would report that as its own peak RSS.
    """
    connector = aiohttp.TCPConnector(limit=workers, resolver=aiohttp.ThreadedResolver())
    async with aiohttp.ClientSession(connector=connector) as http:
        left = requests

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                async with http.post(url, data=RAW_REQUEST, headers=JSON_HEADERS) as r:
                    await r.read()

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(workers)))
        return requests / (time.monotonic() - started)


async def raw_commit_rate(dsn: str, workers: int, commits: int) -> float:
    """Single-row commits per second with `workers` asyncpg connections of their own: the database's limit.

    Each commit is one INSERT outside any explicit transaction (its own transaction, one round trip), the
    cheapest commit there is. A loop of BEGIN / INSERT / COMMIT through a pool that resets each connection on
    release takes four round trips and measured a third of this rate here: it made the limit look lower, and
    cyberevents' share of it higher, than they are.
    """
    connections: list[asyncpg.Connection] = []
    try:
        for _ in range(workers):  # each one kept as soon as it opens, so that a failed connect closes the rest
            connections.append(await asyncpg.connect(dsn))
        await connections[0].execute(COMMITS_TABLE)
        left = commits

        async def worker(connection: asyncpg.Connection) -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await connection.execute(COMMIT, str(left))

        started = time.monotonic()
        await asyncio.gather(*(worker(connection) for connection in connections))
        return commits / (time.monotonic() - started)
    finally:
        for connection in connections:
            await connection.close()


def clean_env() -> dict[str, str]:
    names = {"DATABASE_URL", "AGENT_URL", "AGENT_TOKEN", "DISPATCH_WORKERS", "LOG_LEVEL"}
    return {key: value for key, value in os.environ.items() if key not in names}


def event_counts(events: int) -> list[str]:
    """run-once's arguments for `events` events, about the default cycle's mix of kinds."""
    login, patch = events // 7, events // 8
    return ["--login", str(login), "--firewall", str(events - login - patch), "--patch", str(patch)]


@contextmanager
def reference_agent(latency_ms: float = 0.0) -> Iterator[tuple[int, str]]:
    """A `cyberevents agent` process answering after `latency_ms`: yields its pid and analyse URL, stopped on exit."""
    agent = subprocess.Popen(
        [sys.executable, "-m", "cyberevents", "agent", "--port", "0", "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=clean_env(),
    )  # fmt: skip
    try:
        assert agent.stdout is not None
        yield agent.pid, agent.stdout.readline().strip()
    finally:
        agent.terminate()
        agent.communicate(timeout=10)


def agent_peak_in_flight(agent_url: str) -> int:
    """The most requests the reference agent has held at once, from its /stats."""
    with urllib.request.urlopen(agent_url.removesuffix("/analyse") + "/stats", timeout=10) as response:
        return int(json.load(response)["peak_in_flight"])


def run_case(case: Case, server: str) -> Result:
    database_url = run(recreate(server))
    with reference_agent(case.latency_ms) as (agent_pid, agent_url):
        env = clean_env() | {
            "DATABASE_URL": database_url,
            "AGENT_URL": agent_url,
            "DISPATCH_WORKERS": str(case.workers),
            "LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "cyberevents", "run-once", "--json", *event_counts(case.events)]
        with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
            cycle = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr, text=True)
            # wait4, not wait: it returns this child's peak RSS. Linux counts in it the RSS the child had between
            # fork and exec, a copy of this process's: the raw-limit loops keep this process small for that reason.
            _, status, usage = os.wait4(cycle.pid, 0)
            cycle.returncode = os.waitstatus_to_exitcode(status)
            stdout.seek(0), stderr.seek(0)
            if cycle.returncode != 0:
                raise RuntimeError(f"run-once failed ({cycle.returncode}): {stderr.read().strip().splitlines()[-1:]}")
            report = json.load(stdout)
        peak_in_flight = agent_peak_in_flight(agent_url)
        raw_http = raw_db = rung = None
        if case.latency_ms == 0:  # the machine-bound case: measure the machine in the same run
            from bench.ladder import LAYERS, layer_rate  # here: it imports this module

            raw_http = run(raw_http_rate(agent_url, case.workers, max(3000, case.events)))
            raw_db = run(raw_commit_rate(database_url.replace("+asyncpg", ""), case.workers, max(3000, case.events)))
            rung, _ = run(layer_rate(LAYERS[1], (agent_pid, agent_url), database_url, case.workers))
    rss = usage.ru_maxrss / 1024
    return Result(
        case, report["dispatch_seconds"], peak_in_flight, rss, raw_http, raw_db,
        score_seconds=report.get("score_seconds"), session_rung=rung,
    )  # fmt: skip


def median_of(runs: list[Result]) -> Result:
    """One row for repeated runs: the median of each figure, the ratio to the raw limit as the median of each
    run's own ratio (each run is compared with the machine as it was during that run), the highest RSS."""
    ratios = [r.share_of_limit for r in runs if r.share_of_limit is not None]
    rung_ratios = [r.share_of_rung for r in runs if r.share_of_rung is not None]

    def median(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return statistics.median(known) if known else None

    return Result(
        runs[0].case,
        statistics.median(r.dispatch_seconds for r in runs),
        max(r.peak_in_flight for r in runs),
        max(r.peak_rss_mib for r in runs),
        median([r.raw_http for r in runs]),
        median([r.raw_db for r in runs]),
        statistics.median(ratios) if ratios else None,
        median([r.score_seconds for r in runs]),
        median([r.session_rung for r in runs]),
        statistics.median(rung_ratios) if rung_ratios else None,
    )


def table(results: list[Result]) -> str:
    head = (
        "| N | W | L (ms) | dispatch (s) | ideal (s) | ratio | events/s | raw HTTP req/s | raw DB commits/s "
        "| events/s ÷ min(raw) | own-session rung/s | events/s ÷ rung | agent peak in flight | peak RSS (MiB) "
        "| scoring (s) |"
    )
    rows = [head, "|" + "---|" * 15]
    for r in results:
        latency_bound = r.case.latency_ms > 0
        rows.append(
            f"| {r.case.events} | {r.case.workers} | {r.case.latency_ms:g} | {r.dispatch_seconds:.2f} | "
            f"{f'{r.ideal:.2f}' if latency_bound else '–'} | {f'{r.ratio:.3f}' if latency_bound else '–'} | "
            f"{r.rate:.0f} | {_maybe(r.raw_http)} | {_maybe(r.raw_db)} | "
            f"{'–' if r.share_of_limit is None else f'{r.share_of_limit:.2f}'} | {_maybe(r.session_rung)} | "
            f"{'–' if r.share_of_rung is None else f'{r.share_of_rung:.2f}'} | {r.peak_in_flight} | "
            f"{r.peak_rss_mib:.0f} | {'–' if r.score_seconds is None else f'{r.score_seconds:.2f}'} |"
        )
    return "\n".join(rows)


def _maybe(rate: float | None) -> str:
    return "–" if rate is None else f"{rate:.0f}"


def positive(text: str) -> int:
    """argparse's type for counts: a positive whole number, or a one-line error."""
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--case",
        action="append",
        metavar="N,W,L_MS[,R]",
        help=f"a case, R replicas sharing its cycle if given (default: {' '.join(DEFAULT_CASES)})",
    )
    parser.add_argument(
        "--repeat", type=positive, default=3, metavar="K", help="runs per case, medians shown (default 3)"
    )
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="also write every run's figures, with the commit, to FILE"
    )
    parser.add_argument(
        "--replicas",
        type=positive,
        metavar="R",
        help=f"R daemons share the cycle of each case that gives no R (default case {REPLICA_CASE}; 1: run-once)",
    )
    args = parser.parse_args(argv)
    chosen = args.case or ([REPLICA_CASE] if args.replicas else DEFAULT_CASES)
    try:
        cases = [Case.parse(text, args.replicas) for text in chosen]
    except argparse.ArgumentTypeError as exc:
        parser.error(f"--case {exc}")
    from bench.replicas import Shared, run_replicas, shared_table  # here: it imports this module

    server = os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER)
    alone: list[Result] = []
    shared: list[list[Shared]] = []
    recorded = []
    for case in cases:
        runs: list[Result | Shared] = []
        for attempt in range(1, args.repeat + 1):
            started = time.monotonic()
            print(f"running {case.label}, run {attempt}/{args.repeat} ...", file=sys.stderr, flush=True)
            try:
                runs.append(run_replicas(case, server) if case.replicas > 1 else run_case(case, server))
            except (RuntimeError, TimeoutError) as exc:  # run-once refused the case, or a replica never finished
                print(f"python -m bench: {case.label}: {exc}", file=sys.stderr)
                return 1
            print(f"  {runs[-1].summary()} ({time.monotonic() - started:.1f}s)", file=sys.stderr, flush=True)
        if case.replicas > 1:
            shared.append([run for run in runs if isinstance(run, Shared)])
        else:
            alone.append(median_of([run for run in runs if isinstance(run, Result)]))
        recorded.append({"case": asdict(case), "runs": [run.as_json() for run in runs]})
    print("\n\n".join(([table(alone)] if alone else []) + ([shared_table(shared)] if shared else [])))
    if args.json:
        args.json.write_text(json.dumps({"commit": commit(), "cases": recorded}, indent=1) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def commit() -> str:
    """The commit measured, `+` when the working tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+" if dirty.stdout.strip() else "")
