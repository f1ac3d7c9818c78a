"""The agent protocol on the wire: the request cyberevents sends and the verdict it accepts back.

Documented for agent authors in docs/agent-protocol.md.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from .models import EventKind, Severity

IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a dispatch task gets: plain immutable data, never an ORM object.

    `body` is the request as sent, `{"event_type": …, "event_id": …, "event": {…}}`, encoded once, by the claim
    (repository.claim) that leased the event: its `event` holds the event's own fields and nothing else.
    """

    event_id: int
    uid: uuid.UUID
    kind: EventKind
    body: bytes


class AgentRequest(BaseModel):
    """The request body, as an agent parses it."""

    model_config = ConfigDict(extra="forbid")

    event_type: Literal["login", "firewall", "patch"]
    event_id: int
    event: dict[str, Any]


class Verdict(BaseModel):
    """The agent's answer. Unknown fields are allowed and kept, with the rest, as the raw JSON."""

    model_config = ConfigDict(extra="allow", frozen=True)

    severity: Severity
    score: StrictInt = Field(ge=0, le=100)
    summary: str = Field(max_length=10_000)


class InvalidVerdict(ValueError):
    """The agent answered, but not with a verdict this protocol accepts."""


# `\u0000` escaped in a JSON string (an even run of backslashes before it is text, not an escape): PostgreSQL
# stores no NUL character, in text or in jsonb.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not a JSON number")


# Built once: json.loads with an option builds a new decoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def parse_verdict(payload: bytes) -> tuple[Verdict, str]:
    """Validate a response body; returns the verdict and the JSON text to store as raw.

    The text is stored as received, not re-encoded, so it is refused here if PostgreSQL could not store it.
    """
    try:
        text = payload.decode()
        raw = _DECODER.decode(text)
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidVerdict(f"response is not JSON: {exc}") from None
    except RecursionError:
        raise InvalidVerdict("response is not JSON this service accepts: nested too deeply") from None
    if not isinstance(raw, dict):
        raise InvalidVerdict(f"response is a JSON {type(raw).__name__}, not an object")
    if "\\u0000" in text and _NUL_ESCAPE.search(text):  # the substring test is far cheaper than the pattern
        raise InvalidVerdict("response contains a NUL character (\\u0000), which PostgreSQL cannot store")
    try:
        return Verdict.model_validate(raw), text
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, error['loc'])) or 'body'}: {error['msg']}" for error in exc.errors())
        raise InvalidVerdict(f"response is not a valid verdict: {problems}") from None
