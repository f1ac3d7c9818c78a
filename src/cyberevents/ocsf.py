"""Events in OCSF 1.5.0, the schema SIEMs and data lakes read: each kind as its class, a verdict as a Detection
Finding that points at its event. Pure functions of the native shape (docs/agent-protocol.md); the mapping is
documented field by field in docs/ocsf.md.

`native` reads an OCSF event of ours back into the native shape, losing nothing: an agent that reasons on
cyberevents' own fields (the reference agent) takes either payload.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from . import __version__
from .vocabulary import EventKind, Severity

VERSION = "1.5.0"
PRODUCT = {"name": "cyberevents", "vendor_name": "cyberevents", "version": __version__}
# Every event carries its occurred_at, to the microsecond, as `time_dt`: `time` holds milliseconds only.
DATETIME = "datetime"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)

Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class OcsfClass:
    name: str  # what `event_type` says in an OCSF payload
    caption: str
    uid: int
    category_uid: int
    category_name: str
    profiles: tuple[str, ...]


CLASSES = {
    EventKind.LOGIN: OcsfClass(
        "authentication", "Authentication", 3002, 3, "Identity & Access Management", (DATETIME,)
    ),
    EventKind.FIREWALL: OcsfClass(
        "network_activity", "Network Activity", 4001, 4, "Network Activity", (DATETIME, "security_control")
    ),
    EventKind.PATCH: OcsfClass("vulnerability_finding", "Vulnerability Finding", 2002, 2, "Findings", (DATETIME,)),
}
DETECTION_FINDING = OcsfClass("detection_finding", "Detection Finding", 2004, 2, "Findings", (DATETIME,))
KINDS = {ocsf_class.name: kind for kind, ocsf_class in CLASSES.items()}

# severity_id: a source's event is informational; a vulnerability is as severe as its CVSS; a verdict as it says.
INFORMATIONAL = (1, "Informational")
_VERDICT_SEVERITY = {
    Severity.LOW: ((2, "Low"), (1, "Low")),  # (severity_id, caption), (risk_level_id, caption)
    Severity.MEDIUM: ((3, "Medium"), (2, "Medium")),
    Severity.HIGH: ((4, "High"), (3, "High")),
    Severity.CRITICAL: ((5, "Critical"), (4, "Critical")),
}

# Authentication: a password, with a push as its second factor or not, is told by its factors; any other method
# (sso, ssh_key) by its name as the protocol, which OCSF's list of protocols does not name ("Other").
PASSWORD = {"factor_type_id": 11, "factor_type": "Password"}
_FACTORS: dict[str, Record] = {
    "password": {"auth_factors": [PASSWORD]},
    "mfa_push": {"auth_factors": [PASSWORD, {"factor_type_id": 5, "factor_type": "Push Notification"}]},
}

# Network Activity: an allowed flow is traffic, a denied one a refused connection.
_DIRECTIONS = {"inbound": (1, "Inbound"), "outbound": (2, "Outbound")}
_PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17}
_ACTIONS = {  # action: activity, (action_id, caption), (disposition_id, caption)
    "allow": ((6, "Traffic"), (1, "Allowed"), (1, "Allowed")),
    "deny": ((5, "Refuse"), (2, "Denied"), (2, "Blocked")),
}
_DIRECTION_IDS = {direction_id: direction for direction, (direction_id, _) in _DIRECTIONS.items()}
_ACTION_IDS = {action_id: action for action, (_, (action_id, _), _) in _ACTIONS.items()}

# Vulnerability Finding: a patch's state is the finding's lifecycle.
_STATES = {  # state: activity, status
    "missing": ((1, "Create"), (1, "New")),
    "failed": ((2, "Update"), (2, "In Progress")),
    "installed": ((3, "Close"), (4, "Resolved")),
}
_STATUS_IDS = {status_id: state for state, (_, (status_id, _)) in _STATES.items()}
CVSS_VERSION = "3.1"  # the advisories' NVD base scores
# A login names no target in the native shape, and OCSF asks for one: every login is to the organisation's sign-in.
SIGN_IN = {"name": "sign-in"}


def event(kind: EventKind, uid: uuid.UUID | str, fields: Record, truth: Record | None = None) -> Record:
    """The OCSF event of one native event (its `event` object); `truth`, when given, in `unmapped.ground_truth`."""
    mapped = _MAPPERS[kind](fields)
    mapped["metadata"] = _metadata(CLASSES[kind], uid)
    mapped["time"], mapped["time_dt"] = _milliseconds(fields["occurred_at"]), fields["occurred_at"]
    if truth is not None:
        mapped["unmapped"] = {"ground_truth": {key: value for key, value in truth.items() if value is not None}}
    return mapped


def detection_finding(of: Record, verdict: Record) -> Record:
    """The agent's verdict on an OCSF event (`of`), as the Detection Finding that names it among its related events.

    A finding of its own, not the event's severity: the event stays as its source reported it, whether or not
    an agent has judged it, and a SIEM correlates the two by the event's uid.
    """
    (severity_id, severity), (risk_level_id, risk_level) = _VERDICT_SEVERITY[Severity(verdict["severity"])]
    event_uid = of["metadata"]["uid"]
    uid = str(uuid.uuid5(uuid.UUID(event_uid), "verdict"))
    return {
        **_classified(DETECTION_FINDING, (1, "Create"), (severity_id, severity)),
        "metadata": _metadata(DETECTION_FINDING, uid),
        "time": _milliseconds(verdict["analysed_at"]),
        "time_dt": verdict["analysed_at"],
        "status_id": 1,
        "status": "New",
        "risk_score": verdict["score"],
        "risk_level_id": risk_level_id,
        "risk_level": risk_level,
        "message": verdict["summary"],
        "finding_info": {
            "uid": uid,
            "title": f"Agent verdict: {verdict['severity']}, score {verdict['score']}",
            "related_events": [{"uid": event_uid, "type_uid": of["type_uid"], "type_name": of["type_name"]}],
        },
    }


def native(class_name: str, mapped: Record) -> tuple[EventKind, Record]:
    """The native kind and fields of an OCSF event this module wrote. KeyError or ValueError if it is not one."""
    kind = KINDS[class_name]
    return kind, {"occurred_at": mapped["time_dt"], **_READERS[kind](mapped)}


def _classified(ocsf_class: OcsfClass, activity: tuple[int, str], severity: tuple[int, str]) -> Record:
    """The attributes every OCSF event has: its class, category, activity, type and severity."""
    (activity_id, activity_name), (severity_id, severity_name) = activity, severity
    return {
        "class_uid": ocsf_class.uid,
        "class_name": ocsf_class.caption,
        "category_uid": ocsf_class.category_uid,
        "category_name": ocsf_class.category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": ocsf_class.uid * 100 + activity_id,
        "type_name": f"{ocsf_class.caption}: {activity_name}",
        "severity_id": severity_id,
        "severity": severity_name,
    }


def _metadata(ocsf_class: OcsfClass, uid: uuid.UUID | str) -> Record:
    return {"version": VERSION, "product": PRODUCT, "uid": str(uid), "profiles": list(ocsf_class.profiles)}


def _milliseconds(iso_time: str) -> int:
    return (datetime.fromisoformat(iso_time) - _EPOCH) // _MILLISECOND


def _login(fields: Record) -> Record:
    success, privileged, method = fields["success"], fields["privileged"], fields["auth_method"]
    return {
        **_classified(CLASSES[EventKind.LOGIN], (1, "Logon"), INFORMATIONAL),
        "status_id": 1 if success else 2,
        "status": "Success" if success else "Failure",
        "user": {
            "name": fields["username"],
            "type_id": 2 if privileged else 1,
            "type": "Admin" if privileged else "User",
        },
        "src_endpoint": {"ip": fields["src_ip"], "location": {"country": fields["country"]}},
        "service": SIGN_IN,
        "http_request": {"user_agent": fields["user_agent"]},
        "is_mfa": method == "mfa_push",
        **_FACTORS.get(method, {"auth_protocol_id": 99, "auth_protocol": method}),
        "message": (
            f"{'Logon' if success else 'Failed logon'} of {fields['username']} from {fields['src_ip']} "
            f"({fields['country']}) by {method}"
        ),
    }


def _read_login(mapped: Record) -> Record:
    method = mapped.get("auth_protocol", "mfa_push" if mapped["is_mfa"] else "password")
    return {
        "username": mapped["user"]["name"],
        "privileged": mapped["user"]["type_id"] == 2,
        "src_ip": mapped["src_endpoint"]["ip"],
        "country": mapped["src_endpoint"]["location"]["country"],
        "success": mapped["status_id"] == 1,
        "auth_method": method,
        "user_agent": mapped["http_request"]["user_agent"],
    }


def _firewall(fields: Record) -> Record:
    action, direction, protocol = fields["action"], fields["direction"], fields["protocol"]
    activity, (action_id, action_name), (disposition_id, disposition) = _ACTIONS.get(
        action, ((99, "Other"), (99, action), (99, action))
    )
    direction_id, direction_name = _DIRECTIONS.get(direction, (99, direction))
    connection: Record = {"direction_id": direction_id, "direction": direction_name, "protocol_name": protocol}
    if protocol in _PROTOCOL_NUMBERS:
        connection["protocol_num"] = _PROTOCOL_NUMBERS[protocol]
    source, destination = f"{fields['src_ip']}:{fields['src_port']}", f"{fields['dst_ip']}:{fields['dst_port']}"
    return {
        **_classified(CLASSES[EventKind.FIREWALL], activity, INFORMATIONAL),
        "src_endpoint": {"ip": fields["src_ip"], "port": fields["src_port"]},
        "dst_endpoint": {"ip": fields["dst_ip"], "port": fields["dst_port"]},
        "connection_info": connection,
        "traffic": {"bytes": fields["bytes"], "bytes_out": fields["bytes"]},
        "action_id": action_id,
        "action": action_name,
        "disposition_id": disposition_id,
        "disposition": disposition,
        "firewall_rule": {"name": fields["rule_name"]},
        "message": f"{direction} {protocol} {source} -> {destination}: {action} by {fields['rule_name']}",
    }


def _read_firewall(mapped: Record) -> Record:
    connection = mapped["connection_info"]
    return {
        "src_ip": mapped["src_endpoint"]["ip"],
        "src_port": mapped["src_endpoint"]["port"],
        "dst_ip": mapped["dst_endpoint"]["ip"],
        "dst_port": mapped["dst_endpoint"]["port"],
        "protocol": connection["protocol_name"],
        "direction": _DIRECTION_IDS.get(connection["direction_id"], connection["direction"]),
        "action": _ACTION_IDS.get(mapped["action_id"], mapped["action"]),
        "rule_name": mapped["firewall_rule"]["name"],
        "bytes": mapped["traffic"]["bytes_out"],
    }


def _cvss_severity(score: float) -> tuple[int, str]:
    """CVSS v3's qualitative rating, as OCSF's severity_id."""
    for floor, severity in ((9.0, (5, "Critical")), (7.0, (4, "High")), (4.0, (3, "Medium")), (0.1, (2, "Low"))):
        if score >= floor:
            return severity
    return INFORMATIONAL


def _patch(fields: Record) -> Record:
    host, package, cve, cvss, state = (
        fields["host"],
        fields["package"],
        fields["cve_id"],
        fields["cvss"],
        fields["state"],
    )
    activity, (status_id, status) = _STATES.get(state, ((99, "Other"), (99, state)))
    severity = _cvss_severity(cvss)
    return {
        **_classified(CLASSES[EventKind.PATCH], activity, severity),
        "status_id": status_id,
        "status": status,
        "finding_info": {
            "uid": f"{cve}@{host}",
            "title": f"{cve} in {package} {fields['installed_version']} on {host}",
        },
        "vulnerabilities": [
            {
                "cve": {"uid": cve, "cvss": [{"base_score": cvss, "version": CVSS_VERSION}]},
                "severity": severity[1],
                "affected_packages": [
                    {
                        "name": package,
                        "version": fields["installed_version"],
                        "fixed_in_version": fields["fixed_version"],
                    }
                ],
                "is_fix_available": True,
            }
        ],
        "device": {"type_id": 1, "type": "Server", "hostname": host, "name": host},
        "message": f"{cve} (CVSS {cvss}) in {package} on {host}: patch {state}",
    }


def _read_patch(mapped: Record) -> Record:
    vulnerability = mapped["vulnerabilities"][0]
    package = vulnerability["affected_packages"][0]
    return {
        "host": mapped["device"]["hostname"],
        "package": package["name"],
        "installed_version": package["version"],
        "fixed_version": package["fixed_in_version"],
        "cve_id": vulnerability["cve"]["uid"],
        "cvss": vulnerability["cve"]["cvss"][0]["base_score"],
        "state": _STATUS_IDS.get(mapped["status_id"], mapped["status"]),
    }


_MAPPERS = {EventKind.LOGIN: _login, EventKind.FIREWALL: _firewall, EventKind.PATCH: _patch}
_READERS = {EventKind.LOGIN: _read_login, EventKind.FIREWALL: _read_firewall, EventKind.PATCH: _read_patch}
