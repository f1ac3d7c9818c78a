"""Replicas that add up: R daemons on one database share one cycle's dispatch (`python -m bench --case N,W,L_MS,R`).

Each case starts R `cyberevents run` processes on a fresh database, against one reference agent with latency L;
the first to take the cycle lock runs the start cycle of N events and the others help it, through leased claims.
The dispatch cannot beat ceil(N / (R·W)) × L. It is measured from the verdicts themselves: from the first one's
request (its time less L) to the last one. Each replica's share is what its /metrics counts as analysed.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from prometheus_client.parser import text_string_to_metric_families

from bench.run import Case, agent_peak_in_flight, clean_env, event_counts, recreate, reference_agent
from cyberevents.eventloop import run


@dataclass(frozen=True)
class Shared:
    case: Case
    dispatch_seconds: float
    peak_in_flight: int
    shares: list[int]  # events each replica analysed

    @property
    def ideal(self) -> float:
        return self.case.ideal

    @property
    def ratio(self) -> float:
        return self.dispatch_seconds / self.ideal

    @property
    def each(self) -> str:
        return " / ".join(f"{share:,}" for share in self.shares)

    def summary(self) -> str:
        return f"dispatch {self.dispatch_seconds:.2f}s = {self.ratio:.3f} x ideal, shares {self.each}"

    def as_json(self) -> dict[str, object]:
        return {
            "dispatch_seconds": self.dispatch_seconds,
            "ratio_to_ideal": self.ratio,
            "peak_in_flight": self.peak_in_flight,
            "shares": self.shares,
            "figure": "ratio_to_ideal",
        }


async def verdict_span(dsn: str, events: int, within: float) -> float:
    """Wait until every event has its verdict; the seconds from the first verdict to the last."""
    connection = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + within
        while await connection.fetchval("SELECT count(*) FROM event_analyses") < events:
            if time.monotonic() > deadline:
                raise TimeoutError(f"not every one of {events} events analysed within {within:g}s")
            await asyncio.sleep(0.5)
        first, last = await connection.fetchrow("SELECT min(analysed_at), max(analysed_at) FROM event_analyses")
        return float((last - first).total_seconds())
    finally:
        await connection.close()


def analysed_by(base: str) -> int:
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        families = text_string_to_metric_families(response.read().decode())
    return int(
        sum(
            sample.value
            for family in families
            if family.name == "cyberevents_events"
            for sample in family.samples
            if sample.name == "cyberevents_events_total" and sample.labels.get("outcome") == "analysed"
        )
    )


def health_url(log: Path, within: float = 60) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for line in log.read_text().splitlines():
            if "Health server at " in line:
                return line.split("Health server at ")[1].split()[0]
        time.sleep(0.2)
    raise TimeoutError(f"no health server in {log}")


def run_replicas(case: Case, server: str) -> Shared:
    database_url = run(recreate(server))
    env = clean_env() | {"DATABASE_URL": database_url, "LOG_LEVEL": "INFO"}
    subprocess.run([sys.executable, "-m", "cyberevents", "migrate"], env=env, check=True, capture_output=True)
    counts = dict(
        zip(("LOGIN_EVENTS", "FIREWALL_EVENTS", "PATCH_EVENTS"), event_counts(case.events)[1::2], strict=True)
    )
    with reference_agent(case.latency_ms) as (_, agent_url), tempfile.TemporaryDirectory() as logs:
        daemon_env = env | counts | {
            "AGENT_URL": agent_url, "DISPATCH_WORKERS": str(case.workers), "SCHEDULE": "0 0 1 1 *",
            "RUN_ON_START": "true", "HEALTH_PORT": "0", "AGENT_TIMEOUT_SECONDS": str(case.latency_ms / 1000 + 60),
            "LEASE_SECONDS": str(case.latency_ms / 1000 + 120),
        }  # fmt: skip
        daemons = []
        try:
            for index in range(case.replicas):
                log = Path(logs) / f"replica-{index}.log"
                with log.open("w") as stderr:
                    command = [sys.executable, "-m", "cyberevents", "run"]
                    daemons.append((subprocess.Popen(command, env=daemon_env, stderr=stderr), log))
            bases = [health_url(log) for _, log in daemons]
            dsn = database_url.replace("+asyncpg", "")
            span = run(verdict_span(dsn, case.events, within=20 * case.latency_ms / 1000 + 600))
            shares = [analysed_by(base) for base in bases]
            peak = agent_peak_in_flight(agent_url)
        finally:
            for daemon, _ in daemons:
                daemon.send_signal(signal.SIGTERM)
            for daemon, _ in daemons:
                daemon.wait(timeout=120)
    return Shared(case, span + case.latency_ms / 1000, peak, shares)


def shared_table(cases: list[list[Shared]]) -> str:
    """A row per case, from its runs: the median dispatch, the highest peak in flight, every run's shares."""
    rows = [
        "| R | N | W each | L (ms) | dispatch (s) | ideal (s) | ratio | agent peak in flight "
        "| each replica's share, per run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for runs in cases:
        case, ideal = runs[0].case, runs[0].ideal
        dispatch = statistics.median(run.dispatch_seconds for run in runs)
        rows.append(
            f"| {case.replicas} | {case.events} | {case.workers} | {case.latency_ms:g} | {dispatch:.2f} | "
            f"{ideal:.2f} | {dispatch / ideal:.3f} | {max(run.peak_in_flight for run in runs)} | "
            f"{'; '.join(run.each for run in runs)} |"
        )
    return "\n".join(rows)
