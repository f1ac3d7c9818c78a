"""The OCSF mapping, against OCSF 1.5.0's own schema: any value a field can take in the native shape, within the
ranges docs/agent-protocol.md gives (ports 0–65535, CVSS 0.0–10.0, country codes of two characters), any text for
the names, not only those generated."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cyberevents import ocsf
from cyberevents.models import EventKind, Severity
from cyberevents.protocol import AgentRequest, Delivery, in_ocsf
from tests.ocsf_schema import ocsf_errors

MOMENTS = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)).map(
    lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%S.%f+00:00")
)  # as PostgreSQL writes it (repository.iso_time)
IPS = st.ip_addresses().map(str)
TEXT = st.text(max_size=64)
PORTS = st.integers(0, 65535)
# Each kind's fields, over the whole range their columns hold: the generator's values and any other.
FIELDS = {
    EventKind.LOGIN: st.fixed_dictionaries(
        {
            "username": TEXT,
            "privileged": st.booleans(),
            "src_ip": IPS,
            "country": st.text(min_size=2, max_size=2),
            "success": st.booleans(),
            "auth_method": st.sampled_from(["password", "sso", "mfa_push", "ssh_key"]) | st.text(max_size=32),
            "user_agent": st.text(),
        }
    ),
    EventKind.FIREWALL: st.fixed_dictionaries(
        {
            "src_ip": IPS,
            "src_port": PORTS,
            "dst_ip": IPS,
            "dst_port": PORTS,
            "protocol": st.sampled_from(["tcp", "udp"]) | st.text(max_size=8),
            "direction": st.sampled_from(["inbound", "outbound"]) | st.text(max_size=8),
            "action": st.sampled_from(["allow", "deny"]) | st.text(max_size=8),
            "rule_name": TEXT,
            "bytes": st.integers(0, 2**63 - 1),
        }
    ),
    EventKind.PATCH: st.fixed_dictionaries(
        {
            "host": TEXT,
            "package": TEXT,
            "installed_version": st.text(max_size=32),
            "fixed_version": st.text(max_size=32),
            "cve_id": st.text(max_size=20),
            "cvss": st.decimals(0, 10, places=1).map(float),
            "state": st.sampled_from(["missing", "installed", "failed"]) | st.text(max_size=16),
        }
    ),
}
EVENTS = st.sampled_from(list(EventKind)).flatmap(
    lambda kind: st.tuples(st.just(kind), st.uuids(), FIELDS[kind], MOMENTS)
)
VERDICTS = st.fixed_dictionaries(
    {
        "severity": st.sampled_from([severity.value for severity in Severity]),
        "score": st.integers(0, 100),
        "summary": st.text(max_size=200),
        "analysed_at": MOMENTS,
    }
)
# A verdict's severity as OCSF's severity_id and risk_level_id (their captions: the schema's enums).
VERDICT_LEVELS = {"low": (2, 1), "medium": (3, 2), "high": (4, 3), "critical": (5, 4)}
TRUTH = st.fixed_dictionaries(
    {
        "scenario": st.text(max_size=32),
        "campaign": st.none() | st.text(max_size=64),
        "difficulty": st.sampled_from(["evident", "subtle"]),
    }
)


@settings(max_examples=300, deadline=None)  # the first example builds the class's schema
@given(EVENTS, st.none() | TRUTH)
def test_every_event_is_valid_ocsf_and_reads_back_whole(
    mapped_from: tuple[EventKind, uuid.UUID, dict[str, Any], str], truth: dict[str, Any] | None
) -> None:
    kind, uid, fields, occurred_at = mapped_from
    native = {"occurred_at": occurred_at, **fields}
    event = ocsf.event(kind, uid, native, truth)
    assert ocsf_errors(event) == []
    assert event["metadata"]["uid"] == str(uid)
    assert event["class_uid"] == ocsf.CLASSES[kind].uid
    assert ocsf.native(ocsf.CLASSES[kind].name, event) == (kind, native)
    if truth is None:
        assert "unmapped" not in event
    else:
        assert event["unmapped"] == {"ground_truth": {key: value for key, value in truth.items() if value is not None}}


@settings(max_examples=200, deadline=None)
@given(EVENTS, VERDICTS)
def test_every_verdict_is_a_valid_detection_finding_on_its_event(
    mapped_from: tuple[EventKind, uuid.UUID, dict[str, Any], str], verdict: dict[str, Any]
) -> None:
    kind, uid, fields, occurred_at = mapped_from
    event = ocsf.event(kind, uid, {"occurred_at": occurred_at, **fields})
    finding = ocsf.detection_finding(event, verdict)
    assert ocsf_errors(finding) == []
    assert finding["finding_info"]["related_events"] == [
        {"uid": str(uid), "type_uid": event["type_uid"], "type_name": event["type_name"]}
    ]
    assert finding["metadata"]["uid"] != str(uid)
    assert finding["risk_score"] == verdict["score"]
    assert finding["message"] == verdict["summary"]
    assert (finding["severity_id"], finding["risk_level_id"], finding["severity"].lower()) == (
        *VERDICT_LEVELS[verdict["severity"]],
        verdict["severity"],
    )
    assert event == ocsf.event(kind, uid, {"occurred_at": occurred_at, **fields}), "the event itself is left alone"


def test_the_fields_land_where_ocsf_puts_them() -> None:
    at = "2026-11-23T06:44:26.706272+00:00"
    login = ocsf.event(
        EventKind.LOGIN,
        uuid.UUID(int=1),
        {
            "occurred_at": at,
            "username": "domain.admin",
            "privileged": True,
            "src_ip": "175.45.148.99",
            "country": "KP",
            "success": False,
            "auth_method": "mfa_push",
            "user_agent": "Hydra v9.5",
        },
    )
    assert (login["class_uid"], login["activity_id"], login["type_uid"]) == (3002, 1, 300201)
    assert login["time"] == (datetime.fromisoformat(at) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
    assert (login["status_id"], login["user"]["type_id"], login["is_mfa"]) == (2, 2, True)
    assert login["src_endpoint"] == {"ip": "175.45.148.99", "location": {"country": "KP"}}
    assert login["http_request"]["user_agent"] == "Hydra v9.5"
    assert login["metadata"]["product"]["name"] == "cyberevents"
    firewall = ocsf.event(
        EventKind.FIREWALL,
        uuid.UUID(int=2),
        {
            "occurred_at": at,
            "src_ip": "95.165.1.2",
            "src_port": 50123,
            "dst_ip": "10.30.0.7",
            "dst_port": 3389,
            "protocol": "tcp",
            "direction": "inbound",
            "action": "deny",
            "rule_name": "default-deny-inbound",
            "bytes": 60,
        },
    )
    assert (firewall["class_uid"], firewall["activity_id"], firewall["type_uid"]) == (4001, 5, 400105)
    assert (firewall["action_id"], firewall["disposition_id"]) == (2, 2)
    assert firewall["connection_info"] == {
        "direction_id": 1,
        "direction": "Inbound",
        "protocol_name": "tcp",
        "protocol_num": 6,
    }
    assert firewall["dst_endpoint"] == {"ip": "10.30.0.7", "port": 3389}
    assert firewall["traffic"]["bytes_out"] == 60
    assert "security_control" in firewall["metadata"]["profiles"]
    patch = ocsf.event(
        EventKind.PATCH,
        uuid.UUID(int=3),
        {
            "occurred_at": at,
            "host": "k8s-node-02",
            "package": "xz-utils",
            "installed_version": "5.6.0",
            "fixed_version": "5.6.2",
            "cve_id": "CVE-2024-3094",
            "cvss": 10.0,
            "state": "missing",
        },
    )
    assert (patch["class_uid"], patch["activity_id"], patch["severity_id"], patch["status_id"]) == (2002, 1, 5, 1)
    vulnerability = patch["vulnerabilities"][0]
    assert vulnerability["cve"] == {"uid": "CVE-2024-3094", "cvss": [{"base_score": 10.0, "version": "3.1"}]}
    assert vulnerability["affected_packages"] == [{"name": "xz-utils", "version": "5.6.0", "fixed_in_version": "5.6.2"}]
    assert patch["device"] == {"type_id": 1, "type": "Server", "hostname": "k8s-node-02", "name": "k8s-node-02"}


@settings(deadline=None)
@given(EVENTS)
def test_an_ocsf_delivery_carries_the_same_event_and_the_bundled_agent_reads_it_back(
    mapped_from: tuple[EventKind, uuid.UUID, dict[str, Any], str],
) -> None:
    kind, uid, fields, occurred_at = mapped_from
    native = {"occurred_at": occurred_at, **fields}
    body = AgentRequest(event_type=kind.value, event_id=7, event=native).model_dump_json().encode()
    sent = in_ocsf(Delivery(7, uid, kind, body))
    request = AgentRequest.model_validate_json(sent.body)
    assert (request.event_type, request.event_id) == (ocsf.CLASSES[kind].name, 7)
    assert ocsf_errors(request.event) == []
    assert request.native() == (kind, native)
    assert (sent.event_id, sent.uid, sent.kind) == (7, uid, kind)


@pytest.mark.parametrize(
    "event",
    [{}, {"time_dt": "2026-11-23T06:44:26+00:00"}, {"time_dt": "x", "user": "root"}, {"time_dt": 1, "user": [1]}],
)
def test_an_ocsf_event_that_lacks_what_cyberevents_writes_is_refused_by_a_named_error(event: dict[str, Any]) -> None:
    with pytest.raises((KeyError, TypeError, ValueError)):
        AgentRequest(event_type="authentication", event_id=1, event=event).native()


def test_the_schema_check_itself_catches_what_breaks_ocsf() -> None:
    fields = {"occurred_at": "2026-11-23T06:44:26.706272+00:00", "src_ip": "10.0.0.1", "src_port": 1, "dst_ip": "::1"}
    fields |= {
        "dst_port": 22,
        "protocol": "tcp",
        "direction": "inbound",
        "action": "allow",
        "rule_name": "r",
        "bytes": 1,
    }
    event = ocsf.event(EventKind.FIREWALL, uuid.UUID(int=1), fields)
    assert ocsf_errors(event) == []
    assert ocsf_errors({**event, "type_uid": 400101}) == ["type_uid 400101 is not class_uid × 100 + activity_id"]
    assert ocsf_errors({**event, "time": 1}) == [
        f"time 1 is not time_dt ({fields['occurred_at']}) in epoch milliseconds"
    ]
    assert ocsf_errors({**event, "metadata": {**event["metadata"], "version": "1.4.0"}}) == [
        "metadata.version '1.4.0' is not 1.5.0"
    ]
    without_profile = {**event, "metadata": {**event["metadata"], "profiles": ["datetime"]}}
    assert ocsf_errors(without_profile) == [
        "event: Additional properties are not allowed ('action', 'action_id', 'disposition', 'disposition_id', "
        "'firewall_rule' were unexpected)"
    ]
    assert ocsf_errors({**event, "src_endpoint": {"port": 70_000}}) != []
    assert ocsf_errors({**event, "message": None}) == []  # a null is left out, as OCSF leaves out what is unknown
