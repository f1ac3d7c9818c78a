"""Transparent scoring rules: every point of a score comes from a named rule, listed in the summary."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..models import EventKind, Severity

# Countries the organisation operates in; a login from elsewhere is foreign.
HOME_COUNTRIES = frozenset({"US", "GB", "DE", "FR", "NL", "IN"})
ADMIN_PORTS = frozenset({22, 23, 445, 1433, 3306, 3389, 5900})
ATTACK_TOOLS = ("python-requests", "hydra", "curl/", "go-http-client", "nmap", "masscan")
EXFILTRATION_BYTES = 100_000_000

Rule = tuple[int, str]


def severity_of(score: int) -> Severity:
    if score >= 85:
        return Severity.CRITICAL
    if score >= 60:
        return Severity.HIGH
    if score >= 30:
        return Severity.MEDIUM
    return Severity.LOW


def _login(event: Mapping[str, Any]) -> list[Rule]:
    failed, privileged = not event.get("success", True), bool(event.get("privileged"))
    foreign = event.get("country") not in HOME_COUNTRIES
    tool = any(marker in str(event.get("user_agent", "")).lower() for marker in ATTACK_TOOLS)
    rules: list[Rule] = []
    if failed:
        rules.append((20, "failed login"))
    if privileged:
        rules.append((15, "privileged account"))
    if foreign:
        rules.append((30, f"source country {event.get('country')} outside home countries"))
    if tool:
        rules.append((20, "scripted client user agent"))
    if failed and privileged and foreign:
        rules.append((10, "failed privileged login from abroad"))
    if not failed and privileged and foreign:
        rules.append((35, "successful privileged login from abroad"))
    return rules


def _firewall(event: Mapping[str, Any]) -> list[Rule]:
    inbound, denied = event.get("direction") == "inbound", event.get("action") == "deny"
    port, size = event.get("dst_port"), int(event.get("bytes") or 0)
    rules: list[Rule] = []
    if inbound and port in ADMIN_PORTS:
        rules.append((40 if denied else 65, f"inbound to admin port {port} {'denied' if denied else 'ALLOWED'}"))
    elif inbound and denied:
        rules.append((10, "inbound denied"))
    if not inbound and not denied and size >= EXFILTRATION_BYTES:
        rules.append((65, f"large outbound transfer ({size // 1_000_000} MB)"))
    return rules


def _patch(event: Mapping[str, Any]) -> list[Rule]:
    state, cvss = event.get("state"), float(event.get("cvss") or 0.0)
    if state == "installed":
        return []
    rules: list[Rule] = [(int(cvss * 6), f"{event.get('cve_id')} (CVSS {cvss}) {state}")]
    if cvss >= 9.0:
        rules.append((40, "critical vulnerability unpatched"))
    if state == "failed":
        rules.append((10, "patch installation failed"))
    return rules


_RULES: dict[EventKind, Callable[[Mapping[str, Any]], list[Rule]]] = {
    EventKind.LOGIN: _login,
    EventKind.FIREWALL: _firewall,
    EventKind.PATCH: _patch,
}


def score(kind: EventKind, event: Mapping[str, Any]) -> tuple[Severity, int, str]:
    """Severity, score 0–100 and a summary naming the rules that fired."""
    rules = _RULES[kind](event)
    total = min(100, 5 + sum(points for points, _ in rules))
    summary = "; ".join(reason for _, reason in rules) or f"routine {kind.value} event"
    return severity_of(total), total, summary
