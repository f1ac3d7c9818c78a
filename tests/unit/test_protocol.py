from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from cyberevents.agent.rules import score
from cyberevents.models import EventKind, Severity
from cyberevents.protocol import InvalidVerdict, parse_verdict

AT = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_a_good_verdict_keeps_extra_fields_in_the_raw_json() -> None:
    verdict, raw = parse_verdict(b'{"severity": "high", "score": 70, "summary": "bad", "model": "x", "tags": [1]}')
    assert (verdict.severity, verdict.score, verdict.summary) == (Severity.HIGH, 70, "bad")
    assert json.loads(raw) == {"severity": "high", "score": 70, "summary": "bad", "model": "x", "tags": [1]}


def test_a_verdict_postgresql_cannot_store_is_refused_as_the_agents_fault() -> None:
    good = b'{"severity": "low", "score": 5, "summary": %b}'
    assert parse_verdict(good % rb'"a \\u0000 is text here"')[0].summary == "a \\u0000 is text here"
    with pytest.raises(InvalidVerdict, match="NUL character"):
        parse_verdict(good % rb'"a\u0000b"')
    with pytest.raises(InvalidVerdict, match="NUL character"):
        parse_verdict(good % rb'"a\\\u0000b"')  # an escaped backslash, then the escape
    with pytest.raises(InvalidVerdict, match="NaN is not a JSON number"):
        parse_verdict(b'{"severity": "low", "score": 5, "summary": "x", "confidence": NaN}')
    with pytest.raises(InvalidVerdict, match="nested too deeply"):
        parse_verdict(
            b'{"severity": "low", "score": 5, "summary": "x", "deep": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        )


@pytest.mark.parametrize(
    ("payload", "complaint"),
    [
        (b"<html>502 Bad Gateway</html>", "not JSON"),
        (b"[1, 2]", "JSON list, not an object"),
        (b'{"severity": "urgent", "score": 50, "summary": "x"}', "severity: Input should be 'low'"),
        (b'{"severity": "low", "score": 101, "summary": "x"}', "score: Input should be less than or equal to 100"),
        (b'{"severity": "low", "score": -1, "summary": "x"}', "score: Input should be greater than or equal to 0"),
        (b'{"severity": "low", "score": "50", "summary": "x"}', "score: Input should be a valid integer"),
        (b'{"severity": "low", "score": 50.5, "summary": "x"}', "score: Input should be a valid integer"),
        (b'{"severity": "low", "score": 5}', "summary: Field required"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_bad_verdicts_are_refused_with_a_reason(payload: bytes, complaint: str) -> None:
    with pytest.raises(InvalidVerdict, match=complaint):
        parse_verdict(payload)


@pytest.mark.parametrize(
    ("event_type", "event", "severity"),
    [
        ("login", {"success": False, "privileged": True, "country": "RU", "user_agent": "Hydra v9.5"}, "critical"),
        ("login", {"success": False, "privileged": True, "country": "CN", "user_agent": "Mozilla"}, "high"),
        ("login", {"success": True, "privileged": False, "country": "US", "user_agent": "Mozilla"}, "low"),
        ("firewall", {"direction": "inbound", "action": "deny", "dst_port": 3389, "bytes": 60}, "medium"),
        ("firewall", {"direction": "inbound", "action": "allow", "dst_port": 22, "bytes": 60}, "high"),
        ("firewall", {"direction": "outbound", "action": "allow", "dst_port": 443, "bytes": 900_000_000}, "high"),
        ("firewall", {"direction": "outbound", "action": "allow", "dst_port": 443, "bytes": 9_000}, "low"),
        ("patch", {"state": "missing", "cvss": 10.0, "cve_id": "CVE-2021-44228"}, "critical"),
        ("patch", {"state": "missing", "cvss": 7.5, "cve_id": "CVE-2022-3602"}, "medium"),
        ("patch", {"state": "installed", "cvss": 10.0, "cve_id": "CVE-2021-44228"}, "low"),
    ],
)
def test_reference_agent_rules(event_type: str, event: dict[str, object], severity: str) -> None:
    found, points, summary = score(EventKind(event_type), event)
    assert found.value == severity, summary
    assert 0 <= points <= 100
    assert summary
