"""Latency-bound dispatch benchmark: run-once against the reference agent, compared with the ideal.

For N events, W workers and an agent of latency L, the dispatch cannot beat ceil(N / W) × L. Each case runs
`cyberevents run-once` as its own process against a fresh database on the PostgreSQL at BENCH_DATABASE_URL
(default: the machine's, postgresql://postgres@127.0.0.1:5432/test) and a `cyberevents agent` process with
latency L, which reports the requests it saw in flight.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass

import asyncpg

from cyberevents.eventloop import run
from cyberevents.settings import to_asyncpg_url

DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/test"
BENCH_DB = "cyberevents_bench"


@dataclass(frozen=True)
class Case:
    events: int
    workers: int
    latency_ms: float


@dataclass(frozen=True)
class Result:
    case: Case
    dispatch_seconds: float
    peak_in_flight: int
    peak_rss_mib: float

    @property
    def ideal(self) -> float:
        return math.ceil(self.case.events / self.case.workers) * self.case.latency_ms / 1000

    @property
    def ratio(self) -> float:
        return self.dispatch_seconds / self.ideal if self.ideal else float("nan")


async def _recreate(server: str) -> str:
    connection = await asyncpg.connect(server)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{BENCH_DB}"')
    finally:
        await connection.close()
    return to_asyncpg_url(server).set(database=BENCH_DB).render_as_string(hide_password=False)


def _clean_env() -> dict[str, str]:
    names = {"DATABASE_URL", "AGENT_URL", "AGENT_TOKEN", "DISPATCH_WORKERS", "LOG_LEVEL"}
    return {key: value for key, value in os.environ.items() if key not in names}


def run_case(case: Case, server: str) -> Result:
    database_url = run(_recreate(server))
    agent = subprocess.Popen(
        [sys.executable, "-m", "cyberevents", "agent", "--port", "0", "--latency-ms", str(case.latency_ms)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_clean_env(),
    )  # fmt: skip
    try:
        assert agent.stdout is not None
        agent_url = agent.stdout.readline().strip()
        login = case.events // 7
        patch = case.events // 8
        env = _clean_env() | {
            "DATABASE_URL": database_url,
            "AGENT_URL": agent_url,
            "DISPATCH_WORKERS": str(case.workers),
            "LOG_LEVEL": "WARNING",
        }
        command = [sys.executable, "-m", "cyberevents", "run-once", "--json", "--login", str(login),
                   "--firewall", str(case.events - login - patch), "--patch", str(patch)]  # fmt: skip
        with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
            cycle = subprocess.Popen(command, env=env, stdout=stdout, stderr=stderr, text=True)
            _, status, usage = os.wait4(cycle.pid, 0)  # wait4, not wait: it returns this child's peak RSS
            cycle.returncode = os.waitstatus_to_exitcode(status)
            stdout.seek(0), stderr.seek(0)
            if cycle.returncode != 0:
                raise RuntimeError(f"run-once failed ({cycle.returncode}): {stderr.read().strip().splitlines()[-1:]}")
            report = json.load(stdout)
        with urllib.request.urlopen(agent_url.removesuffix("/analyse") + "/stats", timeout=10) as response:
            stats = json.load(response)
    finally:
        agent.terminate()
        agent.communicate(timeout=10)
    return Result(case, report["dispatch_seconds"], stats["peak_in_flight"], usage.ru_maxrss / 1024)


def table(results: list[Result]) -> str:
    head = "| N | W | L (ms) | dispatch (s) | ideal (s) | ratio | events/s | agent peak in flight | peak RSS (MiB) |"
    rows = [head, "|" + "---|" * 9]
    for r in results:
        rows.append(
            f"| {r.case.events} | {r.case.workers} | {r.case.latency_ms:g} | {r.dispatch_seconds:.2f} | "
            f"{r.ideal:.2f} | {r.ratio:.3f} | {r.case.events / r.dispatch_seconds:.0f} | {r.peak_in_flight} | "
            f"{r.peak_rss_mib:.0f} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", metavar="N,W,L_MS", help="a case (default 434,10,200)")
    args = parser.parse_args(argv)
    cases = [Case(int(n), int(w), float(ms)) for n, w, ms in (c.split(",") for c in args.case or ["434,10,200"])]
    server = os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER)
    results = []
    for case in cases:
        started = time.monotonic()
        print(f"running N={case.events} W={case.workers} L={case.latency_ms:g} ms ...", file=sys.stderr, flush=True)
        results.append(run_case(case, server))
        print(f"  done in {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)
    print(table(results))
    return 0
