from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from cyberevents.agent.rules import EXFILTRATION_BYTES
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
from cyberevents.models import Difficulty, EventKind
from cyberevents.world import ATTACK_AGENTS, DIRECTORY, HOME_COUNTRIES

END = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
DEFAULT = Counts(63, 319, 52)


def cycle(seed: int = 7, counts: Counts = DEFAULT) -> list[GeneratedEvent]:
    return list(generate(seed, counts, END))


def of(
    events: list[GeneratedEvent], scenario: str, difficulty: Difficulty = Difficulty.EVIDENT
) -> list[GeneratedEvent]:
    return [event for event in events if event.scenario == scenario and event.difficulty is difficulty]


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


def test_a_default_cycle_contains_every_scenario_in_both_forms_and_mostly_benign_traffic() -> None:
    events = cycle()
    forms = Counter((event.scenario, event.difficulty) for event in events if event.scenario != BENIGN)
    assert set(forms) == {(scenario, difficulty) for scenario in SCENARIOS for difficulty in Difficulty}
    assert sum(event.scenario == BENIGN for event in events) > len(events) * 0.6
    assert all(event.difficulty is Difficulty.EVIDENT and event.campaign is None for event in of(events, BENIGN))


def test_the_subtle_share_splits_every_scenario() -> None:
    assert all(event.difficulty is Difficulty.EVIDENT for event in generate(7, DEFAULT, END, subtle_share=0))
    attacks = [event for event in generate(7, DEFAULT, END, subtle_share=1) if event.scenario != BENIGN]
    assert attacks and all(event.difficulty is Difficulty.SUBTLE for event in attacks)


@pytest.mark.parametrize("seed", range(20))
def test_brute_force_is_failures_from_one_source_then_a_success(seed: int) -> None:
    for difficulty in Difficulty:
        attempts = sorted(of(cycle(seed), BRUTE_FORCE, difficulty), key=lambda e: e.occurred_at)
        logins = [event.detail for event in attempts if isinstance(event.detail, Login)]
        assert len(logins) == len(attempts) >= 2
        assert len({(login.src_ip, login.username) for login in logins}) == 1
        assert [login.success for login in logins] == [False] * (len(logins) - 1) + [True]
        assert len({event.campaign for event in attempts}) == 1
        home = logins[0].country in HOME_COUNTRIES and not any(m in logins[0].user_agent for m in ATTACK_AGENTS)
        assert home is (difficulty is Difficulty.SUBTLE)  # the subtle form has no foreign country, no tool


def test_credential_stuffing_tries_many_accounts_evidently_from_one_source_subtly_from_many() -> None:
    for difficulty, sources in ((Difficulty.EVIDENT, 1), (Difficulty.SUBTLE, 3)):
        logins = [event.detail for event in of(cycle(), CREDENTIAL_STUFFING, difficulty)]
        accounts = [login for login in logins if isinstance(login, Login)]
        assert len({login.username for login in accounts}) == len(logins) >= 3
        assert len({login.src_ip for login in accounts}) >= sources
    evident = [e.detail for e in of(cycle(), CREDENTIAL_STUFFING) if isinstance(e.detail, Login)]
    assert len({login.src_ip for login in evident}) == 1


def test_port_scan_sweeps_many_ports_of_one_host_and_is_mostly_denied() -> None:
    for difficulty in Difficulty:
        firewall = [e.detail for e in of(cycle(), PORT_SCAN, difficulty) if isinstance(e.detail, Firewall)]
        assert len({rule.dst_ip for rule in firewall}) == 1
        assert len({rule.dst_port for rule in firewall}) == len(firewall) >= 10
        assert sum(rule.action == "deny" for rule in firewall) > len(firewall) * 0.9
    evident = [e.detail for e in of(cycle(), PORT_SCAN) if isinstance(e.detail, Firewall)]
    assert len({rule.src_ip for rule in evident}) == 1 and {22, 3389, 445} <= {rule.dst_port for rule in evident}
    slow = of(cycle(), PORT_SCAN, Difficulty.SUBTLE)
    assert len({e.detail.src_ip for e in slow if isinstance(e.detail, Firewall)}) > len(slow) // 2  # distributed
    assert max(e.occurred_at for e in slow) - min(e.occurred_at for e in slow) > timedelta(minutes=10)  # slow


def test_exfiltration_is_outbound_transfers_to_one_destination_large_or_in_chunks() -> None:
    for difficulty, sizes in ((Difficulty.EVIDENT, range(200_000_000, 2_000_000_000)),
                              (Difficulty.SUBTLE, range(1, EXFILTRATION_BYTES))):  # fmt: skip
        flows = [e.detail for e in of(cycle(), EXFILTRATION, difficulty) if isinstance(e.detail, Firewall)]
        assert flows and len({flow.dst_ip for flow in flows}) == 1
        assert all(flow.direction == "outbound" and flow.bytes in sizes for flow in flows)


def test_unpatched_critical_cve_is_missing_on_several_hosts() -> None:
    for difficulty in Difficulty:
        patches = [e.detail for e in of(cycle(), UNPATCHED_CRITICAL, difficulty) if isinstance(e.detail, Patch)]
        assert len({patch.cve_id for patch in patches}) == 1
        assert len({patch.host for patch in patches}) == len(patches) >= 2
        critical_score = all(patch.cvss >= 9.0 for patch in patches)
        assert critical_score is (difficulty is Difficulty.EVIDENT)  # the subtle one's CVSS looks routine
        assert all(patch.state == "missing" for patch in patches)


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


def test_a_subtle_unpatched_cve_is_never_among_the_routine_findings() -> None:
    """Else it would be an attack and a benign event at once: the exploited CVEs are told apart by knowing them."""
    subtle = {
        e.detail.cve_id for e in of(cycle(), UNPATCHED_CRITICAL, Difficulty.SUBTLE) if isinstance(e.detail, Patch)
    }
    routine = {e.detail.cve_id for e in of(cycle(counts=Counts(0, 0, 5000)), BENIGN) if isinstance(e.detail, Patch)}
    assert subtle and not subtle & routine
