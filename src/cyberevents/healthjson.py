"""Health bodies in the `application/health+json` format of draft-inadarei-api-health-check-06: a status (pass,
warn or fail), and checks as arrays under `component:measurement` keys, each with an `output` only when it is not
passing. The worst check is the body's status; fail answers 503, pass and warn 200."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from aiohttp import web

from . import __version__

CONTENT_TYPE = "application/health+json"
Status = Literal["pass", "warn", "fail"]
Checks = dict[str, list[dict[str, Any]]]
_ORDER: dict[str, int] = {"pass": 0, "warn": 1, "fail": 2}


def check(
    status: Status,
    component_type: str,
    observed: object = None,
    unit: str | None = None,
    output: str = "",
    time: datetime | None = None,
) -> list[dict[str, Any]]:
    """One check, as the one-element array the draft keys it by: `output` says why it is not passing."""
    body: dict[str, Any] = {"status": status, "componentType": component_type}
    if observed is not None:
        body["observedValue"] = observed
    if unit is not None:
        body["observedUnit"] = unit
    if time is not None:
        body["time"] = time.isoformat()
    if status != "pass":
        body["output"] = output or status
    return [body]


def worst(checks: Checks) -> Status:
    statuses = [entry["status"] for entries in checks.values() for entry in entries]
    return max(statuses, key=_ORDER.__getitem__, default="pass")


def failing(checks: Checks) -> list[str]:
    """Why the checks do not pass: each failing check's output."""
    return [entry["output"] for entries in checks.values() for entry in entries if entry["status"] == "fail"]


def response(checks: Checks) -> web.Response:
    status = worst(checks)
    body = {"status": status, "version": __version__, "checks": checks}
    return web.json_response(body, status=503 if status == "fail" else 200, content_type=CONTENT_TYPE)
