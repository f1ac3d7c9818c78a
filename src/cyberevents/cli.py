"""Command line: parse, configure logging, enter the event loop once, and turn expected errors into one line.

Exit codes: 0 success; 1 the command ran but found a problem (run-once: some events failed, recorded, or the
cycle was cut off; check-db: schema not at head); 2 configuration or database error; 3 run-once found another
cycle running (another process holds the cycle lock); 70 an unexpected error (a bug: the traceback is printed);
130 interrupted by Ctrl-C (SIGINT), at any moment.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Coroutine, Sequence
from contextlib import AsyncExitStack
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from typing import Any

from . import __version__, migrations, queue, report
from .agent.server import AgentKnobs, serve
from .argtypes import cycle_span, timestamp, within
from .cycle import CycleBusy, CycleRequest, run_cycle
from .db import database_error, describe, driver_error, one_line, open_engine, session_factory
from .eventloop import run
from .generator import Counts, generate
from .logs import configure_logging
from .models import CycleOutcome, EventKind, EventStatus
from .progress import Progress
from .redaction import Redactor
from .resources import ensure_schema, open_service
from .service import graceful_stop, run_daemon
from .settings import MAX_EVENTS_PER_KIND, ConfigError, Settings, load_settings

log = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


class DatabaseError(Exception):
    """The database could not be reached or refused the work; the message is one line for the user."""


def _database_error(exc: BaseException, settings: Settings) -> DatabaseError:
    return DatabaseError(f"database at {describe(settings.sqlalchemy_url)}: {one_line(driver_error(exc))}")


async def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    async with open_engine(settings, pool_size=1) as engine:
        before, after = await migrations.upgrade(engine)
    if before == after:
        print(f"schema already at head ({after})")
    else:
        print(f"schema upgraded from {before or 'empty'} to {after}")
    return 0


async def _check_db(args: argparse.Namespace, settings: Settings) -> int:
    async with open_engine(settings, pool_size=1) as engine:
        found = await report.gather(engine, describe(settings.sqlalchemy_url), settings.max_attempts)
    print(report.render(found))
    return 0 if found.at_head else 1


async def _run_once(args: argparse.Namespace, settings: Settings) -> int:
    quiet_collector()
    progress, result, interrupted = Progress(sys.stderr), None, None
    try:
        async with open_service(settings) as resources, graceful_stop(settings) as stop:
            request = CycleRequest(_counts(args, settings), timeout=_timeout(settings), stop=stop.event, seed=args.seed)
            request.tally.listeners.append(progress)
            result = await run_cycle(resources, request)
        interrupted = stop.exit_code
    finally:
        progress.close()
    if result is None:  # cut short by a second signal or the end of the shutdown grace: recorded as interrupted
        print("cycle interrupted; undelivered events stay pending", file=sys.stderr)
        return interrupted or 1
    if args.json:
        print(json.dumps(result.as_json()))
    else:
        for kind in result.kinds:
            failed = f", {kind.failed} failed" if kind.failed else ""
            print(
                f"{kind.kind.value}: {kind.analysed}/{kind.generated} analysed in {kind.dispatch_seconds:.1f}s{failed}"
            )
        for line in result.score.lines() if result.score else ():
            print(f"score: {line}")
        print(
            f"cycle {result.cycle_id}: {result.analysed}/{result.generated} analysed, {result.outcome.value}; "
            f"dispatch {result.dispatch_seconds:.1f}s, total {result.total_seconds:.1f}s (seed {result.seed})"
        )
    return interrupted or (0 if result.outcome is CycleOutcome.SUCCEEDED else 1)


def _timeout(settings: Settings) -> timedelta | None:
    """run-once is cut off after CYCLE_TIMEOUT_SECONDS when it is set: a hung run must not block later CronJob runs.
    Unset, there is no schedule interval to take 90 % of: the CronJob's activeDeadlineSeconds is the bound."""
    seconds = settings.cycle_timeout_seconds
    return timedelta(seconds=seconds) if seconds is not None else None


async def _score(args: argparse.Namespace, settings: Settings) -> int:
    between = (args.since, args.until) if args.since or args.until else None
    if between and (args.cycle or args.compare or args.last):
        raise ConfigError("--since and --until choose cycles by time: not with --cycle, --last or --compare")
    if args.since and args.until and args.since >= args.until:
        raise ConfigError(f"--since ({args.since.isoformat()}) must come before --until ({args.until.isoformat()})")
    async with open_engine(settings, pool_size=1) as engine:
        await ensure_schema(engine, settings)
        if args.compare:
            sides = await report.kept_spans(engine, args.compare)
        else:
            kept = await report.kept_scorecards(engine, [args.cycle] if args.cycle else None, args.last or 1, between)
    try:
        if args.compare:
            if empty := [_span_text(span) for span, side in zip(args.compare, sides, strict=True) if not side]:
                return _nothing_scored(f"cycle {empty[0]}")
            shown = report.render_comparison(sides, as_json=args.json)
        elif args.cycle and args.cycle not in kept:
            return _nothing_scored(f"cycle #{args.cycle}")
        elif not kept:
            return _nothing_scored("any cycle started in that time" if between else None)
        else:
            shown = report.render_scorecards(kept, as_json=args.json)
    except ValueError as exc:  # cycles scored at different thresholds do not add up
        print(f"cyberevents: {exc}", file=sys.stderr)
        return 1
    print(shown)
    return 0


def _nothing_scored(which: str | None) -> int:
    print(f"cyberevents: no scorecard for {which}" if which else "no scored cycle yet", file=sys.stderr)
    return 1


def _span_text(span: tuple[int, int]) -> str:
    return f"#{span[0]}" if span[0] == span[1] else f"#{span[0]} to #{span[1]}"


async def _requeue(args: argparse.Namespace, settings: Settings) -> int:
    statuses = [EventStatus(status) for status in args.status]
    kind = EventKind(args.kind) if args.kind else None
    async with open_engine(settings, pool_size=1) as engine:
        await ensure_schema(engine, settings)
        async with session_factory(engine)() as session, session.begin():
            count = await queue.requeue(session, "cyberevents requeue", statuses, kind, args.id or ())
    which = " or ".join(status.value.replace("_", "-") for status in statuses)
    print(f"requeued {count} {which} events; the next cycle delivers them again")
    return 0


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    quiet_collector()
    return await run_daemon(settings)


async def _agent(args: argparse.Namespace, settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    token = args.token or (settings.agent_token.get_secret_value() if settings.agent_token else None)
    knobs = AgentKnobs(args.latency_ms, args.jitter_ms, args.error_rate, token=token)
    async with AsyncExitStack() as stack:
        try:
            url = await stack.enter_async_context(serve(knobs, args.host, args.port))
        except OSError as exc:  # the port taken, the address not this host's
            raise ConfigError(f"--host {args.host} --port {args.port}: cannot listen ({exc.strerror or exc})") from None
        log.info(
            "Reference agent listening at %s (latency %g ms ± %g ms, error rate %g%s)",
            url,
            knobs.latency_ms,
            knobs.jitter_ms,
            knobs.error_rate,
            ", bearer token required" if token else "",
        )
        print(url, flush=True)
        await stop.wait()
    log.info("Reference agent stopped")
    return 0


def _counts(args: argparse.Namespace, settings: Settings) -> Counts:
    return Counts(
        settings.login_events if args.login is None else args.login,
        settings.firewall_events if args.firewall is None else args.firewall,
        settings.patch_events if args.patch is None else args.patch,
    )


async def _generate(args: argparse.Namespace, settings: Settings) -> int:
    window = timedelta(minutes=args.window_minutes)
    for event in generate(args.seed, _counts(args, settings), args.window_end, window, settings.subtle_share):
        record: dict[str, Any] = {"event_type": event.kind.value, "occurred_at": event.occurred_at.isoformat()}
        record["event"] = {f.name: _plain(getattr(event.detail, f.name)) for f in fields(event.detail)}
        if args.truth:
            record["ground_truth"] = {
                "scenario": event.scenario,
                "campaign": event.campaign,
                "difficulty": event.difficulty.value,
            }
        print(json.dumps(record))
    return 0


def _plain(value: object) -> object:
    return value if isinstance(value, str | int | float | bool) else str(value)


_event_count = within(int, 0, MAX_EVENTS_PER_KIND)  # the cap the settings give LOGIN_EVENTS and the others


def _add_counts(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--login", type=_event_count, help="login events (default LOGIN_EVENTS)")
    parser.add_argument("--firewall", type=_event_count, help="firewall events (default FIREWALL_EVENTS)")
    parser.add_argument("--patch", type=_event_count, help="patch events (default PATCH_EVENTS)")


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

    daemon = commands.add_parser(
        "run", help="the daemon: cycles on SCHEDULE, health endpoints on HEALTH_HOST:HEALTH_PORT, clean stop on SIGTERM"
    )
    daemon.set_defaults(handler=_run)

    once = commands.add_parser(
        "run-once", help="run one cycle (generate, store, dispatch, record) and exit: for cron jobs and CronJobs"
    )
    once.add_argument("--json", action="store_true", help="print one JSON object and nothing else on stdout")
    once.add_argument(
        "--seed",
        type=within(int, 0, 2**63 - 1),
        help="this cycle's seed (as logged by an earlier cycle): the same events again, to score another agent on",
    )
    _add_counts(once)
    once.set_defaults(handler=_run_once)

    agent = commands.add_parser("agent", help="serve the reference analysis agent (for tests and load runs)")
    agent.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    agent.add_argument(
        "--port", type=within(int, 0, 65535), default=8081, help="port (default 8081; 0 picks a free one)"
    )
    milliseconds = within(float, 0.0, 3_600_000.0)
    agent.add_argument("--latency-ms", type=milliseconds, default=0.0, help="added latency per request")
    agent.add_argument("--jitter-ms", type=milliseconds, default=0.0, help="random ± variation of the latency")
    agent.add_argument("--error-rate", type=within(float, 0.0, 1.0), default=0.0, help="fraction answered 503")
    agent.add_argument("--token", help="require this bearer token (default AGENT_TOKEN, if set)")
    agent.set_defaults(handler=_agent)

    requeue = commands.add_parser(
        "requeue", help="put dead-lettered (or failed, or pending) events back in the queue with a fresh budget"
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
    requeue.set_defaults(handler=_requeue)

    migrate = commands.add_parser("migrate", help="bring the database schema to the latest migration")
    migrate.set_defaults(handler=_migrate)

    check = commands.add_parser("check-db", help="connectivity, schema revision, events, analyses, last cycles")
    check.set_defaults(handler=_check_db)

    score = commands.add_parser(
        "score", help="the agent's scorecard against the ground truth: of a cycle, of the last cycles, or two compared"
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
    score.set_defaults(handler=_score)

    gen = commands.add_parser(
        "generate", help="print a cycle's events as JSON lines (regenerate a cycle from its logged seed)"
    )
    gen.add_argument("--seed", type=int, required=True, help="the cycle seed (logged by every cycle)")
    gen.add_argument(
        "--window-end", type=timestamp, default=datetime.now(UTC), help="ISO time the window ends (default now)"
    )
    gen.add_argument("--window-minutes", type=within(int, 0, 525_600), default=30, help="length of the window")
    _add_counts(gen)
    gen.add_argument("--truth", action="store_true", help="include the ground truth (never sent to agents)")
    gen.set_defaults(handler=_generate)
    return parser


# Young-generation collections run after this many net container allocations instead of CPython's 700: a busy
# dispatch allocates fast and frees nearly everything; much higher lets the heap swell (docs/performance.md).
GC_YOUNG_THRESHOLD = 10_000


def quiet_collector() -> None:
    """Keep the garbage collector off the dispatch's critical path, in the commands that run cycles (figures:
    docs/performance.md).

    `gc.freeze` moves everything imported so far out of the collector's sight, so full collections no longer
    rescan the libraries; the higher young threshold makes the frequent collections rare. Cycles are still
    collected, later.
    """
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


def main(argv: Sequence[str] | None = None) -> int:
    """Every outcome is an exit code: a signal or an unexpected error at any moment included."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("cyberevents: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `generate | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing more to flush at exit
        return 0
    except Exception:
        traceback.print_exc()
        print("cyberevents: internal error (the traceback above); please report it", file=sys.stderr)
        return 70


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        settings = load_settings()  # its errors never show a secret
    except ConfigError as exc:
        print(f"cyberevents: error: {exc}", file=sys.stderr)
        return 2
    redact = Redactor(settings.secret_values())  # whatever is printed from here on, a driver's text included
    configure_logging(settings.log_level, settings.log_format, redact)
    try:
        try:
            return run(handler(args, settings))
        except Exception as exc:
            if isinstance(exc, BrokenPipeError) or not database_error(exc):
                raise
            raise _database_error(exc, settings) from exc
    except (ConfigError, DatabaseError) as exc:
        print(redact(f"cyberevents: error: {exc}"), file=sys.stderr)
        return 2
    except CycleBusy as exc:
        print(f"cyberevents: busy: {exc}", file=sys.stderr)
        return 3
    except BrokenPipeError:
        raise
    except Exception:
        print(redact(traceback.format_exc()), end="", file=sys.stderr)
        print("cyberevents: internal error (the traceback above); please report it", file=sys.stderr)
        return 70
