"""Where a machine-bound dispatch spends its CPU: cyberevents, PostgreSQL and the agent, per event.

On one machine the three share the cores, so what each spends per event bounds the rate together. This runs one
`run-once` in this process against a fresh database and a `cyberevents agent` process, and measures the dispatch
phase only: this process's CPU time, the agent process's, and that of every PostgreSQL process on the machine
(its exited backends included, counted in the postmaster's reaped children), read from /proc.

    python -m bench.cpu [--events N] [--workers W] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.run import DEFAULT_SERVER, event_counts, positive, recreate, reference_agent
from cyberevents import cli
from cyberevents.dispatcher import Dispatcher, Scope
from cyberevents.eventloop import run
from cyberevents.tally import Tally


def cpu_seconds(pid: int, reaped_children: bool = False) -> float:
    """User and system CPU of a process, and of its children it has waited for when asked."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / os.sysconf("SC_CLK_TCK")


def postgres_cpu_seconds() -> float:
    total = 0.0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().startswith("postgres"):
                total += cpu_seconds(int(entry.name), reaped_children=True)
        except OSError:
            continue  # gone meanwhile
    return total


def spent(agent_pid: int) -> dict[str, float]:
    """CPU seconds so far of the three parties: this process (the agent's client), every PostgreSQL process, the
    agent."""
    return {"client": time.process_time(), "postgres": postgres_cpu_seconds(), "agent": cpu_seconds(agent_pid)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu", description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=positive, default=10_000, metavar="N", help="events (default 10,000)")
    parser.add_argument("--workers", type=positive, default=50, metavar="W", help="DISPATCH_WORKERS (default 50)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures to FILE")
    args = parser.parse_args(argv)
    server = os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER)
    measured: dict[str, float] = {}

    def clocks() -> dict[str, float]:
        return {"wall": time.monotonic()} | spent(agent_pid)

    own_dispatch = Dispatcher.dispatch

    async def measured_dispatch(self: Dispatcher, cycle_id: int, tally: Tally, *rest: Any, **named: Any) -> int:
        scope: Scope = named.get("scope", rest[1] if len(rest) > 1 else "own")
        if scope != "own":
            return await own_dispatch(self, cycle_id, tally, *rest, **named)
        before = clocks()
        claimed = await own_dispatch(self, cycle_id, tally, *rest, **named)
        measured.update({name: now - before[name] for name, now in clocks().items()})
        return claimed

    with reference_agent() as (agent_pid, agent_url):
        os.environ.update(
            DATABASE_URL=run(recreate(server)), AGENT_URL=agent_url, DISPATCH_WORKERS=str(args.workers),
            LOG_LEVEL="WARNING",
        )  # fmt: skip
        Dispatcher.dispatch = measured_dispatch  # type: ignore[method-assign]
        status = cli.main(["run-once", *event_counts(args.events)])
    if status != 0 or not measured:
        print(f"run-once did not dispatch the cycle to its end (exit {status}): nothing measured", file=sys.stderr)
        return status or 1
    per_event = {name: seconds / args.events * 1e6 for name, seconds in measured.items() if name != "wall"}
    rate = args.events / measured["wall"]
    print(
        f"N={args.events} W={args.workers}: {rate:.0f} events/s; CPU per event: cyberevents {per_event['client']:.0f} "
        f"us, PostgreSQL {per_event['postgres']:.0f} us, agent {per_event['agent']:.0f} us (on {os.cpu_count()} cores)",
        file=sys.stderr,
    )
    if args.json:
        args.json.write_text(json.dumps({"events_per_second": rate, "cpu_us_per_event": per_event}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
