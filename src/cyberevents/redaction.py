"""Secrets out of every text cyberevents logs or stores, whatever an agent or a driver put in it.

An agent may echo the `Authorization` header in an error body, a driver may quote a connection string: the text
is not ours to trust, so the secrets are taken out of it at the two places text leaves the process (the log
handler, and the rows that keep a reason), not at each place a message is built.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from urllib.parse import quote

MASK = "***"
# PostgreSQL stores no NUL in text, and a lone surrogate cannot be encoded as UTF-8 for it.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


class Redactor:
    """Replaces each secret, as given, percent-encoded (in a URL) or JSON-escaped (in a JSON log line), with ***."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms = {
            form for secret in secrets if secret for form in (secret, quote(secret, safe=""), json.dumps(secret)[1:-1])
        }
        # Longest first, so that a secret containing another is masked whole.
        self._pattern = re.compile("|".join(map(re.escape, sorted(forms, key=len, reverse=True)))) if forms else None

    def __call__(self, text: str) -> str:
        return text if self._pattern is None else self._pattern.sub(MASK, text)

    def storable(self, text: str, limit: int = 2000) -> str:
        """Text fit for a row: redacted, without what PostgreSQL refuses, at most `limit` characters."""
        return _UNSTORABLE.sub("\ufffd", self(text))[:limit]


class RedactingFormatter(logging.Formatter):
    """Wraps a formatter: the whole line, traceback included, is redacted after formatting."""

    def __init__(self, inner: logging.Formatter, redact: Redactor) -> None:
        super().__init__()
        self._inner, self._redact = inner, redact

    def format(self, record: logging.LogRecord) -> str:
        return self._redact(self._inner.format(record))
