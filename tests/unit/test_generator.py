from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from cyberevents.generator import (
    BENIGN,
    BRUTE_FORCE,
    CREDENTIAL_STUFFING,
    EXFILTRATION,
    PORT_SCAN,
    SCENARIOS,
    UNPATCHED_CRITICAL,
    Counts,
    Firewall,
    GeneratedEvent,
    Login,
    Patch,
    cycle_seed,
    generate,
)
from cyberevents.models import EventKind
from cyberevents.world import DIRECTORY

END = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DEFAULT = Counts(63, 319, 52)


def cycle(seed: int = 7, counts: Counts = DEFAULT) -> list[GeneratedEvent]:
    return list(generate(seed, counts, END))


def of(events: list[GeneratedEvent], scenario: str) -> list[GeneratedEvent]:
    return [event for event in events if event.scenario == scenario]


def test_same_seed_and_window_give_identical_events() -> None:
    assert cycle(seed=123) == cycle(seed=123)


def test_different_seeds_give_different_events() -> None:
    assert cycle(seed=1) != cycle(seed=2)


def test_cycle_seeds_are_stable_and_distinct_per_cycle() -> None:
    assert cycle_seed(42, 1) == cycle_seed(42, 1)
    assert len({cycle_seed(42, n) for n in range(1000)}) == 1000
    assert cycle_seed(42, 1) != cycle_seed(43, 1)
    assert 0 <= cycle_seed(42, 1) < 2**63  # fits PostgreSQL's BIGINT


def test_exact_counts_per_kind() -> None:
    counted = Counter(event.kind for event in cycle())
    assert counted == {EventKind.LOGIN: 63, EventKind.FIREWALL: 319, EventKind.PATCH: 52}
    assert Counter(event.kind for event in cycle(counts=Counts(5, 0, 1))) == {EventKind.LOGIN: 5, EventKind.PATCH: 1}


def test_each_kind_has_its_own_stream() -> None:
    """Changing the firewall count leaves the login and patch events of the cycle as they were."""
    more_firewall = [e for e in cycle(counts=Counts(63, 1000, 52)) if e.kind is not EventKind.FIREWALL]
    assert more_firewall == [e for e in cycle() if e.kind is not EventKind.FIREWALL]


def test_a_default_cycle_contains_every_scenario_and_mostly_benign_traffic() -> None:
    events = cycle()
    scenarios = Counter(event.scenario for event in events)
    assert set(SCENARIOS) <= set(scenarios)
    assert scenarios[BENIGN] > len(events) * 0.6


@pytest.mark.parametrize("seed", range(20))
def test_brute_force_is_failures_from_one_source_then_a_success(seed: int) -> None:
    attempts = sorted(of(cycle(seed), BRUTE_FORCE), key=lambda e: e.occurred_at)
    logins = [event.detail for event in attempts]
    assert all(isinstance(login, Login) for login in logins)
    assert len({(login.src_ip, login.username) for login in logins if isinstance(login, Login)}) == 1
    assert [login.success for login in logins if isinstance(login, Login)] == [False] * (len(logins) - 1) + [True]
    assert len({event.campaign for event in attempts}) == 1


def test_credential_stuffing_tries_many_accounts_from_one_source() -> None:
    logins = [event.detail for event in of(cycle(), CREDENTIAL_STUFFING)]
    assert len({login.src_ip for login in logins if isinstance(login, Login)}) == 1
    assert len({login.username for login in logins if isinstance(login, Login)}) == len(logins) >= 6


def test_port_scan_sweeps_many_ports_of_one_host_and_is_mostly_denied() -> None:
    rules = [event.detail for event in of(cycle(), PORT_SCAN)]
    assert all(isinstance(rule, Firewall) for rule in rules)
    firewall = [rule for rule in rules if isinstance(rule, Firewall)]
    assert len({(rule.src_ip, rule.dst_ip) for rule in firewall}) == 1
    assert len({rule.dst_port for rule in firewall}) == len(firewall) >= 10
    assert {22, 3389, 445} <= {rule.dst_port for rule in firewall}
    assert sum(rule.action == "deny" for rule in firewall) > len(firewall) * 0.9


def test_exfiltration_is_large_outbound_transfers_to_one_destination() -> None:
    flows = [event.detail for event in of(cycle(), EXFILTRATION) if isinstance(event.detail, Firewall)]
    assert flows and len({flow.dst_ip for flow in flows}) == 1
    assert all(flow.direction == "outbound" and flow.bytes >= 200_000_000 for flow in flows)


def test_unpatched_critical_cve_is_missing_on_several_hosts() -> None:
    patches = [event.detail for event in of(cycle(), UNPATCHED_CRITICAL) if isinstance(event.detail, Patch)]
    assert len({patch.cve_id for patch in patches}) == 1
    assert len({patch.host for patch in patches}) == len(patches) >= 3
    assert all(patch.cvss >= 9.0 and patch.state == "missing" for patch in patches)


def test_benign_logins_come_from_the_directory() -> None:
    usernames = {user.username for user in DIRECTORY}
    benign = [event.detail for event in of(cycle(), BENIGN) if isinstance(event.detail, Login)]
    assert benign and all(login.username in usernames for login in benign)
    assert any(user.privileged for user in DIRECTORY)


def test_every_event_falls_inside_the_window() -> None:
    window = timedelta(minutes=30)
    assert all(END - window <= event.occurred_at <= END for event in cycle())


def test_small_counts_leave_out_scenarios_that_do_not_fit() -> None:
    events = cycle(counts=Counts(3, 4, 1))
    assert len(events) == 8
    assert {event.scenario for event in events} == {BENIGN}


def test_huge_counts_still_give_exact_counts() -> None:
    counts = Counts(2_000, 20_000, 500)
    assert Counter(event.kind for event in generate(3, counts, END)) == {
        EventKind.LOGIN: 2_000,
        EventKind.FIREWALL: 20_000,
        EventKind.PATCH: 500,
    }
