"""What each command does, one coroutine per command, and how its outcome becomes an exit code (cli.py lists
them). Imported once the command line is parsed: `--help` and `--version` never load the database layer."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import signal
import sys
import time
import traceback
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import fields
from datetime import timedelta
from typing import Any

from . import export, ledger, migrations, ocsf, page, queue, report
from .agent.server import AgentKnobs, serve
from .commandline import STDOUT
from .cycle import CycleBusy, CycleRequest, run_cycle
from .db import database_error, describe, driver_error, one_line, open_engine, open_write_engine, session_factory
from .eventloop import run
from .generator import Counts, generate
from .limits import raise_open_file_limit
from .logs import configure_logging
from .models import CycleOutcome, EventKind, EventStatus
from .output import OutputError, written
from .progress import Progress
from .redaction import Redactor
from .repository import EVERY_CYCLE, ExportScope
from .resources import ensure_schema, open_service
from .scoring import compare_rows
from .service import graceful_stop, run_daemon
from .settings import ConfigError, Settings, load_settings

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
        again = result.redelivered
        if again.total:
            print(
                f"earlier cycles: {again.analysed}/{again.total} redelivered events analysed"
                + (f", {again.failed} failed" if again.failed else "")
                + f", in {again.seconds:.1f}s"
            )
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


async def _export(args: argparse.Namespace, settings: Settings) -> int:
    if args.since and args.until and args.since >= args.until:
        raise ConfigError(f"--since ({args.since.isoformat()}) must come before --until ({args.until.isoformat()})")
    scope = ExportScope(args.cycle or EVERY_CYCLE, args.since, args.until)
    to_stdout = args.output in (None, STDOUT)
    # No progress on the terminal the lines themselves are printed on: it would land among them.
    progress = None if to_stdout and sys.stdout.isatty() else Progress(sys.stderr)
    started = time.monotonic()
    try:
        async with open_engine(settings, pool_size=1) as engine:
            await ensure_schema(engine, settings)
            async with open_write_engine(engine, pool_size=1) as index_walks:
                done = await export.export(
                    session_factory(engine),
                    session_factory(index_walks),
                    scope,
                    None if to_stdout else args.output,
                    shape=args.format,
                    verdicts=args.with_verdicts,
                    truth=args.with_truth,
                    progress=progress,
                )
    finally:
        if progress is not None:
            progress.close()
    if not done.total:
        which = f"cycle {_span_text(args.cycle)}" if args.cycle else "any cycle"
        when = " started in that time" if args.since or args.until else ""
        print(f"cyberevents: no events in {which}{when}", file=sys.stderr)
        return 1
    shape = f"OCSF {ocsf.VERSION}" if args.format == "ocsf" else "native"
    verdicts = f" and {done.verdicts:,} verdicts" if args.with_verdicts else ""
    where = "stdout" if to_stdout else args.output
    print(
        f"exported {done.events:,} events{verdicts} ({shape}) to {where} in {time.monotonic() - started:.2f}s",
        file=sys.stderr,
    )
    return 0


async def _report(args: argparse.Namespace, settings: Settings) -> int:
    async with open_engine(settings, pool_size=1) as engine:
        await ensure_schema(engine, settings)
        if args.compare:
            sides = await report.kept_spans(engine, args.compare)
            if empty := [_span_text(span) for span, side in zip(args.compare, sides, strict=True) if not side]:
                return _nothing_scored(f"cycle {empty[0]}")
            kept = {cycle: scored for side in sides for cycle, scored in side.items()}
        else:
            kept = await report.kept_scorecards(engine, [args.cycle] if args.cycle else None, args.last)
            if not kept:
                return _nothing_scored(f"cycle #{args.cycle}" if args.cycle else None)
        async with session_factory(engine)() as session:
            cycles = await ledger.cycles_by_id(session, sorted(kept))
    try:  # cycles scored at different thresholds neither compare nor add up: a ValueError says so
        comparison = None
        if args.compare:
            first, second = (report.combined(side) for side in sides)
            report.check_comparable(first, second)
            names = [report.span_name(sorted(side)) for side in sides]
            comparison = page.Comparison((names[0], names[1]), compare_rows(first, second))
        title = " against ".join(comparison.names) if comparison else report.span_name(sorted(kept))
        html = page.render_report(kept, cycles, title, comparison)
    except ValueError as exc:
        print(f"cyberevents: {exc}", file=sys.stderr)
        return 1
    with written(args.html) as sink:
        sink.write(html.encode())
    print(f"wrote {args.html}: {title}", file=sys.stderr)
    return 0


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
    raise_open_file_limit()  # one socket per client request in flight, whatever DISPATCH_WORKERS they run
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


_HANDLERS: dict[str, Handler] = {
    "run": _run,
    "run-once": _run_once,
    "agent": _agent,
    "requeue": _requeue,
    "migrate": _migrate,
    "check-db": _check_db,
    "score": _score,
    "report": _report,
    "export": _export,
    "generate": _generate,
}


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


def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command: settings, logging, the one entry into the event loop, and every expected error
    as one line and its exit code (cli.py)."""
    handler = _HANDLERS[args.command]
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
    except (ConfigError, DatabaseError, OutputError) as exc:
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
