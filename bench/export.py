"""Export benchmark: `cyberevents export` of a small and a large cycle, its rate and its peak memory.

One database (BENCH_DATABASE_URL's server, a fresh database) gets two analysed cycles, of SMALL and LARGE events,
through run-once against the reference agent. Each case then runs `cyberevents export --cycle N --output FILE` as
a process of its own, `--repeat` times, the cases interleaved, and the table shows medians: the rate from the
export's own timing (printed on its last line: the database's work and the writing, not the interpreter's
start), the process's wall time, and its peak RSS (wait4). The issue's targets: the large export's peak RSS within
1.5× of the small one's, and at least 20,000 events/s uncompressed.

    python -m bench.export [--small N] [--large N] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.run import DEFAULT_SERVER, clean_env, event_counts, positive, recreate, reference_agent
from cyberevents.eventloop import run

SUMMARY = re.compile(r"exported ([\d,]+) events.* in ([\d.]+)s$")


@dataclass(frozen=True)
class Case:
    cycle: int
    events: int
    options: tuple[str, ...] = ()
    gzip: bool = False

    @property
    def name(self) -> str:
        return " ".join([f"{self.events:,}", *self.options] + (["(.gz)"] if self.gzip else []))


@dataclass(frozen=True)
class Run:
    rate: float  # events per second, by the export's own timing
    wall_seconds: float
    peak_rss_mib: float
    size_mib: float


def fill(database_url: str, sizes: list[int]) -> None:
    """One analysed cycle per size, in order: cycle 1 has sizes[0] events, and so on."""
    with reference_agent() as (_, agent_url):
        env = clean_env() | {"DATABASE_URL": database_url, "AGENT_URL": agent_url, "DISPATCH_WORKERS": "50"}
        for size in sizes:
            command = [sys.executable, "-m", "cyberevents", "run-once", *event_counts(size)]
            subprocess.run(command, env=env | {"LOG_LEVEL": "WARNING"}, check=True, capture_output=True)


def export_once(database_url: str, case: Case, directory: Path) -> Run:
    output = directory / ("export.jsonl.gz" if case.gzip else "export.jsonl")
    command = [sys.executable, "-m", "cyberevents", "export", "--cycle", str(case.cycle), "--output", str(output)]
    env = clean_env() | {"DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
    with tempfile.TemporaryFile("w+") as stderr:
        started = time.monotonic()
        process = subprocess.Popen([*command, *case.options], env=env, stderr=stderr, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
        stderr.seek(0)
        last = stderr.read().strip().splitlines()[-1:]
    if os.waitstatus_to_exitcode(status) != 0 or not last or not (found := SUMMARY.search(last[0])):
        raise RuntimeError(f"export failed: {last}")
    events, seconds = int(found[1].replace(",", "")), float(found[2])
    size = output.stat().st_size / 2**20
    output.unlink()
    return Run(events / seconds, wall, usage.ru_maxrss / 1024, size)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.export", description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=positive, default=1_000, help="events in the small cycle (default 1,000)")
    parser.add_argument("--large", type=positive, default=100_000, help="events in the large cycle (default 100,000)")
    parser.add_argument("--repeat", type=positive, default=3, help="runs of each case, interleaved (default 3)")
    args = parser.parse_args(argv)
    database_url = run(recreate(os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER)))
    print(f"filling: a cycle of {args.small:,} events and one of {args.large:,}, analysed", file=sys.stderr)
    fill(database_url, [args.small, args.large])
    cases = [
        Case(1, args.small),
        Case(2, args.large),
        Case(2, args.large, ("--format", "native")),
        Case(2, args.large, ("--with-verdicts", "--with-truth")),
        Case(2, args.large, (), gzip=True),
    ]
    runs: dict[Case, list[Run]] = {case: [] for case in cases}
    with tempfile.TemporaryDirectory() as directory:
        for round_ in range(args.repeat):
            for case in cases:
                runs[case].append(export_once(database_url, case, Path(directory)))
                print(f"round {round_ + 1}/{args.repeat}: {case.name} done", file=sys.stderr)
    print("| export | events/s | wall (s) | peak RSS (MiB) | file (MiB) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for case, done in runs.items():
        rate, wall = statistics.median(r.rate for r in done), statistics.median(r.wall_seconds for r in done)
        rss, size = statistics.median(r.peak_rss_mib for r in done), statistics.median(r.size_mib for r in done)
        print(f"| {case.name} | {rate:,.0f} | {wall:.2f} | {rss:.0f} | {size:.1f} |")
    small, large = (statistics.median(r.peak_rss_mib for r in runs[case]) for case in cases[:2])
    print(f"\npeak RSS, {args.large:,} events over {args.small:,}: {large / small:.2f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
