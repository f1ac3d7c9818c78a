"""The command line's grammar: every command, its options and their help. cli.py runs what it parses."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from . import __version__
from .argtypes import cycle_span, timestamp, within
from .vocabulary import MAX_EVENTS_PER_KIND, EventKind, EventStatus

STDOUT = Path("-")  # as a file name

_event_count = within(int, 0, MAX_EVENTS_PER_KIND)  # the cap the settings give LOGIN_EVENTS and the others


def _add_counts(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--login", type=_event_count, help="login events (default LOGIN_EVENTS)")
    parser.add_argument("--firewall", type=_event_count, help="firewall events (default FIREWALL_EVENTS)")
    parser.add_argument("--patch", type=_event_count, help="patch events (default PATCH_EVENTS)")


def _command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str
) -> argparse.ArgumentParser:
    """A command whose own `--help` starts by saying what it does: argparse shows `help` only in the list."""
    parser: argparse.ArgumentParser = commands.add_parser(
        name, help=summary, description=summary[0].upper() + summary[1:]
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cyberevents",
        description="Generate synthetic security events, store them in PostgreSQL, dispatch them to an agent.",
        epilog="Configuration comes from the environment and .env (see README). "
        "Exit codes: 0 ok, 1 problem found, 2 configuration or database error, 3 another cycle is running, "
        "70 internal error, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"cyberevents {__version__}")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    daemon = _command(
        commands,
        "run",
        "the daemon: cycles on SCHEDULE, health endpoints on HEALTH_HOST:HEALTH_PORT, clean stop on SIGTERM",
    )
    daemon.set_defaults(command="run")

    once = _command(
        commands, "run-once", "run one cycle (generate, store, dispatch, record) and exit: for cron jobs and CronJobs"
    )
    once.add_argument("--json", action="store_true", help="print one JSON object and nothing else on stdout")
    once.add_argument(
        "--seed",
        type=within(int, 0, 2**63 - 1),
        help="this cycle's seed (as logged by an earlier cycle): the same events again, to score another agent on",
    )
    _add_counts(once)
    once.set_defaults(command="run-once")

    agent = _command(commands, "agent", "serve the reference analysis agent (for tests and load runs)")
    agent.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    agent.add_argument(
        "--port", type=within(int, 0, 65535), default=8081, help="port (default 8081; 0 picks a free one)"
    )
    milliseconds = within(float, 0.0, 3_600_000.0)
    agent.add_argument("--latency-ms", type=milliseconds, default=0.0, help="added latency per request")
    agent.add_argument("--jitter-ms", type=milliseconds, default=0.0, help="random ± variation of the latency")
    agent.add_argument("--error-rate", type=within(float, 0.0, 1.0), default=0.0, help="fraction answered 503")
    agent.add_argument("--token", help="require this bearer token (default AGENT_TOKEN, if set)")
    agent.set_defaults(command="agent")

    requeue = _command(
        commands, "requeue", "put dead-lettered (or failed, or pending) events back in the queue with a fresh budget"
    )
    requeue.add_argument(
        "--status",
        nargs="+",
        default=[EventStatus.DEAD_LETTERED.value],
        choices=[EventStatus.DEAD_LETTERED.value, EventStatus.FAILED.value, EventStatus.PENDING.value],
        help="which events (default dead_lettered); never one a live process is delivering",
    )
    requeue.add_argument("--kind", choices=[kind.value for kind in EventKind], help="only events of this kind")
    requeue.add_argument("--id", type=within(int, 1, 2**63 - 1), nargs="+", help="only these event ids")
    requeue.set_defaults(command="requeue")

    migrate = _command(commands, "migrate", "bring the database schema to the latest migration")
    migrate.set_defaults(command="migrate")

    check = _command(commands, "check-db", "connectivity, schema revision, events, analyses, last cycles")
    check.set_defaults(command="check-db")

    score = _command(
        commands,
        "score",
        "the agent's scorecard against the ground truth: of a cycle, of the last cycles, or two compared",
    )
    which = score.add_mutually_exclusive_group()
    which.add_argument("--cycle", type=within(int, 1, 2**63 - 1), help="one cycle")
    which.add_argument("--last", type=within(int, 1, 100_000), help="the last N scored cycles (default 1)")
    which.add_argument(
        "--compare",
        type=cycle_span,
        nargs=2,
        metavar=("A", "B"),
        help='two cycles, or spans of cycles ("1-5"), side by side',
    )
    score.add_argument("--since", type=timestamp, help="the scored cycles started at or after this ISO time")
    score.add_argument("--until", type=timestamp, help="... and before this ISO time")
    score.add_argument("--json", action="store_true", help="print one JSON object")
    score.set_defaults(command="score")

    html = _command(
        commands,
        "report",
        "the scorecard and cycle history as one self-contained HTML file, for a pull request or notes",
    )
    html.add_argument("--html", type=Path, required=True, metavar="FILE", help="the file to write")
    chosen = html.add_mutually_exclusive_group()
    chosen.add_argument("--cycle", type=within(int, 1, 2**63 - 1), help="one cycle")
    chosen.add_argument(
        "--last", type=within(int, 1, 1_000), default=10, help="the last N scored cycles (default 10, at most 1,000)"
    )
    chosen.add_argument(
        "--compare", type=cycle_span, nargs=2, metavar=("A", "B"), help='two cycles, or spans of cycles ("1-5")'
    )
    html.set_defaults(command="report")

    exporting = _command(
        commands, "export", "stored events as JSON Lines, in OCSF 1.5.0 or the native shape, for a SIEM or a data lake"
    )
    exporting.add_argument(
        "--cycle", type=cycle_span, help='one cycle, or a span of them ("3-7"); default: every cycle'
    )
    exporting.add_argument("--since", type=timestamp, help="the cycles started at or after this ISO time")
    exporting.add_argument("--until", type=timestamp, help="... and before this ISO time")
    exporting.add_argument(
        "--output",
        "-o",
        type=Path,
        help="write to this file (gzip-compressed if it ends in .gz); default (or -) stdout",
    )
    exporting.add_argument("--format", choices=["ocsf", "native"], default="ocsf", help="default ocsf")
    exporting.add_argument(
        "--with-verdicts",
        action="store_true",
        help="each analysed event's verdict: OCSF, a Detection Finding on the line after its event; native, `verdict`",
    )
    exporting.add_argument(
        "--with-truth",
        action="store_true",
        help="the ground truth, in `unmapped.ground_truth` (OCSF) or `ground_truth` (native): never for the agent",
    )
    exporting.set_defaults(command="export")

    gen = _command(
        commands, "generate", "print a cycle's events as JSON lines (regenerate a cycle from its logged seed)"
    )
    gen.add_argument("--seed", type=int, required=True, help="the cycle seed (logged by every cycle)")
    gen.add_argument(
        "--window-end", type=timestamp, default=datetime.now(UTC), help="ISO time the window ends (default now)"
    )
    gen.add_argument("--window-minutes", type=within(int, 0, 525_600), default=30, help="length of the window")
    _add_counts(gen)
    gen.add_argument("--truth", action="store_true", help="include the ground truth (never sent to agents)")
    gen.set_defaults(command="generate")
    return parser
