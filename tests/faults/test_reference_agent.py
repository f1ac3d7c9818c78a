"""Whatever body the reference agent is sent, in either payload, it answers a verdict or a 400 naming the problem,
never a 500: a field missing or of a type its rules cannot use (a string for a number, a number too large for
one) included."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cyberevents import ocsf
from cyberevents.agent.server import AgentKnobs, serve
from cyberevents.models import EventKind
from cyberevents.protocol import parse_verdict

pytestmark = pytest.mark.slow

IDS = st.integers(-(2**63), 2**63 - 1)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
AT = "2026-11-23T06:44:26.706272+00:00"
EVENTS = {
    EventKind.LOGIN: {
        "occurred_at": AT,
        "username": "admin",
        "privileged": True,
        "src_ip": "175.45.148.99",
        "country": "KP",
        "success": False,
        "auth_method": "password",
        "user_agent": "Hydra v9.5",
    },
    EventKind.FIREWALL: {
        "occurred_at": AT,
        "src_ip": "10.20.1.2",
        "src_port": 50123,
        "dst_ip": "95.165.1.2",
        "dst_port": 443,
        "protocol": "tcp",
        "direction": "outbound",
        "action": "allow",
        "rule_name": "allow-web-egress",
        "bytes": 900_000_000,
    },
    EventKind.PATCH: {
        "occurred_at": AT,
        "host": "k8s-node-02",
        "package": "xz-utils",
        "installed_version": "5.6.0",
        "fixed_version": "5.6.2",
        "cve_id": "CVE-2024-3094",
        "cvss": 10.0,
        "state": "missing",
    },
}
LOGIN = EVENTS[EventKind.LOGIN]
OCSF_LOGIN = ocsf.event(EventKind.LOGIN, uuid.UUID(int=1), LOGIN)


def broken(event: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """`event` with one of its fields replaced by any JSON value (a huge number among them), or removed."""
    values = JSON | st.sampled_from([1e308, -1e308, 10**400, "1e999"])
    return st.sampled_from(sorted(event)).flatmap(
        lambda key: st.one_of(
            values.map(lambda value: {**event, key: value}),
            st.just({name: value for name, value in event.items() if name != key}),
        )
    )


def either_payload(kind: EventKind) -> st.SearchStrategy[dict[str, Any]]:
    """A body of `kind` in the native shape or in OCSF, one of its event's fields broken."""
    mapped = ocsf.event(kind, uuid.UUID(int=1), EVENTS[kind])
    return st.fixed_dictionaries(
        {"event_type": st.just(kind.value), "event_id": IDS, "event": broken(EVENTS[kind])}
    ) | st.fixed_dictionaries(
        {"event_type": st.just(ocsf.CLASSES[kind].name), "event_id": IDS, "event": broken(mapped)}
    )


BODIES = st.one_of(
    *(either_payload(kind) for kind in EventKind),
    st.fixed_dictionaries(  # anything else
        {
            "event_type": st.sampled_from([kind.value for kind in EventKind] + list(ocsf.KINDS)) | st.text(max_size=9),
            "event_id": IDS | JSON,
            "event": st.dictionaries(st.text(max_size=12), JSON, max_size=6) | JSON,
        }
    ),
)


@pytest.fixture
async def reference_agent() -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    async with serve(AgentKnobs()) as url, aiohttp.ClientSession() as client:
        yield client, url


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(body=BODIES)
async def test_any_request_gets_a_verdict_or_a_400(
    reference_agent: tuple[aiohttp.ClientSession, str], body: dict[str, Any]
) -> None:
    client, url = reference_agent
    async with client.post(url, data=json.dumps(body)) as response:
        answer = await response.read()
    assert response.status in (200, 400), answer
    if response.status == 200:
        parse_verdict(answer)
    else:
        assert json.loads(answer)["error"]


async def test_both_payloads_of_one_event_get_the_same_verdict(
    reference_agent: tuple[aiohttp.ClientSession, str],
) -> None:
    client, url = reference_agent
    answers = []
    for body in ({"event_type": "login", "event_id": 1, "event": LOGIN},
                 {"event_type": "authentication", "event_id": 1, "event": OCSF_LOGIN}):  # fmt: skip
        async with client.post(url, json=body) as response:
            assert response.status == 200
            answers.append(await response.json())
    assert answers[0] == answers[1]
    assert answers[0]["severity"] == "critical"
