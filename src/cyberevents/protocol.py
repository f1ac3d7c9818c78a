"""The agent protocol on the wire: the request cyberevents sends and the verdict it accepts back.

Documented for agent authors in docs/agent-protocol.md.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, replace
from typing import Any, Literal, NoReturn

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from . import ocsf
from .vocabulary import EventKind, Severity

# The two shapes an event is sent (AGENT_PAYLOAD) and exported in: cyberevents' own, or OCSF 1.5.0 (ocsf.py).
Shape = Literal["native", "ocsf"]
IDEMPOTENCY_HEADER = "Idempotency-Key"
# Optional in a 200 answer: the agent's version, recorded with the scorecards it earns.
VERSION_HEADER = "X-Agent-Version"


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a dispatch task gets: plain immutable data, never an ORM object.

    `body` is the request as sent, `{"event_type": …, "event_id": …, "event": {…}}`, encoded once, by the claim
    (queue.claim) that leased the event: its `event` holds the event's own fields and nothing else.
    """

    event_id: int
    uid: uuid.UUID
    kind: EventKind
    body: bytes


def in_ocsf(delivery: Delivery) -> Delivery:
    """The delivery with its event as OCSF, `event_type` naming the class (AGENT_PAYLOAD=ocsf)."""
    event = json.loads(delivery.body)["event"]
    request = {
        "event_type": ocsf.CLASSES[delivery.kind].name,
        "event_id": delivery.event_id,
        "event": ocsf.event(delivery.kind, delivery.uid, event),
    }
    return replace(delivery, body=json.dumps(request, separators=(",", ":")).encode())


class AgentRequest(BaseModel):
    """The request body, as an agent parses it: the native shape, or OCSF."""

    model_config = ConfigDict(extra="forbid")

    event_type: Literal["login", "firewall", "patch", "authentication", "network_activity", "vulnerability_finding"]
    event_id: int
    event: dict[str, Any]

    def native(self) -> tuple[EventKind, dict[str, Any]]:
        """The event's kind and native fields, whichever shape it came in; KeyError, TypeError or ValueError if an
        OCSF event lacks what cyberevents writes."""
        if self.event_type in ocsf.KINDS:
            return ocsf.native(self.event_type, self.event)
        return EventKind(self.event_type), self.event


class Verdict(BaseModel):
    """The agent's answer. Unknown fields are allowed and kept, with the rest, as the raw JSON."""

    model_config = ConfigDict(extra="allow", frozen=True)

    severity: Severity
    score: StrictInt = Field(ge=0, le=100)
    summary: str = Field(max_length=10_000)


class InvalidVerdict(ValueError):
    """The agent answered, but not with a verdict this protocol accepts."""


# Escapes in a JSON string that PostgreSQL cannot store, in text or in jsonb: `\u0000` (NUL), and a UTF-16
# surrogate that is not half of a pair. An even run of backslashes before one is text, not an escape.
_UNSTORABLE_ESCAPE = re.compile(
    r"(?<!\\)(?:\\\\)*"
    r"(?:\\u0000|\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f][0-9a-f]{2})|(?<!\\ud[89ab][0-9a-f]{2})\\ud[c-f][0-9a-f]{2})",
    re.IGNORECASE,
)


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
    if "\\u" in text and (escape := _UNSTORABLE_ESCAPE.search(text)):  # the substring test is far cheaper
        unstorable = "a NUL character" if escape[0].endswith("0000") else "a lone UTF-16 surrogate"
        raise InvalidVerdict(f"response contains {unstorable} ({escape[0][-6:]}), which PostgreSQL cannot store")
    try:
        return Verdict.model_validate(raw), text
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, error['loc'])) or 'body'}: {error['msg']}" for error in exc.errors())
        raise InvalidVerdict(f"response is not a valid verdict: {problems}") from None
