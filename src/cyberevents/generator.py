"""Synthetic security events: benign background traffic with injected attack scenarios. Pure and seedable.

The same seed, counts and window give the same events, byte for byte. Each kind draws from its own random
stream, so changing the number of firewall events does not change the login events of a cycle.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from .models import Difficulty, EventKind, IPAddress
from .world import (
    ADVISORIES,
    ATTACK_AGENTS,
    CRITICAL_ADVISORIES,
    DIRECTORY,
    EXPLOITED_ADVISORIES,
    EXPOSED_PORTS,
    HOME_COUNTRIES,
    HOSTILE_COUNTRIES,
    PREFIXES,
    SERVERS,
    SERVICES,
    USER_AGENTS,
    Window,
    derive_seed,
    internal_ip,
    public_ip,
)

BENIGN = "benign"
BRUTE_FORCE = "brute_force"
CREDENTIAL_STUFFING = "credential_stuffing"
PORT_SCAN = "port_scan"
EXFILTRATION = "exfiltration"
UNPATCHED_CRITICAL = "unpatched_critical"
SCENARIOS = (BRUTE_FORCE, CREDENTIAL_STUFFING, PORT_SCAN, EXFILTRATION, UNPATCHED_CRITICAL)
# The share of each scenario's events generated in its subtle form (the setting SUBTLE_SHARE).
DEFAULT_SUBTLE_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class Login:
    username: str
    privileged: bool
    src_ip: IPAddress
    country: str
    success: bool
    auth_method: str
    user_agent: str


@dataclass(frozen=True, slots=True)
class Firewall:
    src_ip: IPAddress
    src_port: int
    dst_ip: IPAddress
    dst_port: int
    protocol: str
    direction: str
    action: str
    rule_name: str
    bytes: int


@dataclass(frozen=True, slots=True)
class Patch:
    host: str
    package: str
    installed_version: str
    fixed_version: str
    cve_id: str
    cvss: float
    state: str


Detail = Login | Firewall | Patch


@dataclass(frozen=True, slots=True)
class GeneratedEvent:
    """One event as generated: what the agent may see (`detail`) and the ground truth it must not."""

    kind: EventKind
    occurred_at: datetime
    detail: Detail
    scenario: str
    campaign: str | None
    difficulty: Difficulty = Difficulty.EVIDENT  # an attack's form: a marker gives it away, or no single field does


class Counts(NamedTuple):
    login: int
    firewall: int
    patch: int

    def of(self, kind: EventKind) -> int:
        return int(getattr(self, kind.value))


def cycle_seed(base_seed: int, cycle_id: int) -> int:
    """The seed of one cycle: regenerate a cycle exactly from GENERATOR_SEED and its id."""
    return derive_seed("cycle", base_seed, cycle_id)


def _share(total: int, fraction: float, minimum: int) -> int:
    """How many of `total` events a scenario takes: none when there is too little room for it."""
    size = int(total * fraction)
    return size if size >= minimum and total - size >= minimum else 0


def _forms(size: int, subtle_share: float) -> tuple[int, int]:
    """A scenario's events split into (evident, subtle); each form keeps at least one event when both fit."""
    subtle = round(size * subtle_share)
    if size >= 2 and 0 < subtle_share < 1:
        subtle = min(max(subtle, 1), size - 1)
    return size - subtle, subtle


def _attack(
    kind: EventKind, at: datetime, detail: Detail, scenario: str, difficulty: Difficulty, tag: str
) -> GeneratedEvent:
    """An attack event; each form of a scenario is a campaign of its own."""
    campaign = f"{scenario}-{tag}" if difficulty is Difficulty.EVIDENT else f"{scenario}-subtle-{tag}"
    return GeneratedEvent(kind, at, detail, scenario, campaign, difficulty)


def _logins(rng: random.Random, window: Window, total: int, tag: str, subtle_share: float) -> Iterator[GeneratedEvent]:
    def attack(at: datetime, login: Login, scenario: str, difficulty: Difficulty) -> GeneratedEvent:
        return _attack(EventKind.LOGIN, at, login, scenario, difficulty, tag)

    brute, stuffing = _share(total, 0.16, 6), min(_share(total, 0.12, 6), len(DIRECTORY))  # each account once
    evident, subtle = _forms(brute, subtle_share)
    if evident:  # from abroad, with a scripted client, in a burst
        country = rng.choice(HOSTILE_COUNTRIES)
        ip, agent = public_ip(rng, country), rng.choice(ATTACK_AGENTS)
        victim = rng.choice([user for user in DIRECTORY if user.privileged] if rng.random() < 0.5 else DIRECTORY)
        for n, at in enumerate(window.burst(evident, 4.0)):
            success = n == evident - 1  # failures, then the guess that works
            login = Login(victim.username, victim.privileged, ip, country, success, "password", agent)
            yield attack(at, login, BRUTE_FORCE, Difficulty.EVIDENT)
    if subtle:  # from a residential address at home, a browser, spread over the window
        country = rng.choice(HOME_COUNTRIES)
        ip, agent, victim = public_ip(rng, country), rng.choice(USER_AGENTS[:3]), rng.choice(DIRECTORY)
        for n, at in enumerate(sorted(window.anywhere() for _ in range(subtle))):
            login = Login(victim.username, victim.privileged, ip, country, n == subtle - 1, "password", agent)
            yield attack(at, login, BRUTE_FORCE, Difficulty.SUBTLE)
    evident, subtle = _forms(stuffing, subtle_share)
    if evident:  # one foreign address, a scripted client, a burst
        country = rng.choice(HOSTILE_COUNTRIES)
        ip, agent = public_ip(rng, country), rng.choice(ATTACK_AGENTS)
        for at, user in zip(window.burst(evident, 1.5), rng.sample(DIRECTORY, evident), strict=True):
            login = Login(user.username, user.privileged, ip, country, False, "password", agent)
            yield attack(at, login, CREDENTIAL_STUFFING, Difficulty.EVIDENT)
    if subtle:  # many home-country addresses, browsers, spread out
        for user in rng.sample(DIRECTORY, subtle):
            country = rng.choice(HOME_COUNTRIES)
            login = Login(
                user.username,
                user.privileged,
                public_ip(rng, country),
                country,
                False,
                "password",
                rng.choice(USER_AGENTS[:3]),
            )
            yield attack(window.anywhere(), login, CREDENTIAL_STUFFING, Difficulty.SUBTLE)
    for _ in range(total - brute - stuffing):
        user = rng.choice(DIRECTORY)
        travelling = rng.random() < 0.05
        country = rng.choice(HOME_COUNTRIES) if travelling else user.country
        ip = public_ip(rng, country) if travelling else user.ip
        success = rng.random() > 0.07  # a mistyped password now and then
        yield GeneratedEvent(
            EventKind.LOGIN,
            window.anywhere(),
            Login(user.username, user.privileged, ip, country, success, user.auth_method, user.user_agent),
            BENIGN,
            None,
        )


def _firewall(
    rng: random.Random, window: Window, total: int, tag: str, subtle_share: float
) -> Iterator[GeneratedEvent]:
    def flow(
        at: datetime,
        src: IPAddress,
        dst: IPAddress,
        port: int,
        direction: str,
        action: str,
        rule: str,
        size: int,
        protocol: str = "tcp",
    ) -> Firewall:
        return Firewall(src, rng.randrange(1024, 65535), dst, port, protocol, direction, action, rule, size)

    def attack(at: datetime, rule_hit: Firewall, scenario: str, difficulty: Difficulty) -> GeneratedEvent:
        return _attack(EventKind.FIREWALL, at, rule_hit, scenario, difficulty, tag)

    def inbound(at: datetime, src: IPAddress, dst: IPAddress, port: int) -> Firewall:
        action, rule = ("allow", "allow-https") if port == 443 else ("deny", "default-deny-inbound")
        return flow(at, src, dst, port, "inbound", action, rule, 60)

    scan = min(_share(total, 0.12, 10), 65535)
    evident, subtle = _forms(scan, subtle_share)
    ports = list(dict.fromkeys([*EXPOSED_PORTS, *range(1, 65536)]))  # the usual suspects first
    if evident:  # one foreign address, every port in turn, within seconds
        src, dst = public_ip(rng, rng.choice(HOSTILE_COUNTRIES)), internal_ip(rng, 30)
        for at, port in zip(window.burst(evident, 0.2), ports, strict=False):
            yield attack(at, inbound(at, src, dst, port), PORT_SCAN, Difficulty.EVIDENT)
    if subtle:  # slow and distributed: a few ports each from many addresses, across the whole window
        dst = internal_ip(rng, 30)
        for port in rng.sample(ports[: max(1024, subtle)], subtle):
            at, src = window.anywhere(), public_ip(rng, rng.choice(tuple(PREFIXES)))
            yield attack(at, inbound(at, src, dst, port), PORT_SCAN, Difficulty.SUBTLE)
    exfil = _share(total, 0.025, 5)
    evident, subtle = _forms(exfil, subtle_share)
    if evident:  # large transfers to a hostile country
        src, dst = internal_ip(rng, 20), public_ip(rng, rng.choice(HOSTILE_COUNTRIES))
        for at in window.burst(evident, 45.0):
            size = rng.randrange(200_000_000, 2_000_000_000)
            rule_hit = flow(at, src, dst, 443, "outbound", "allow", "allow-web-egress", size)
            yield attack(at, rule_hit, EXFILTRATION, Difficulty.EVIDENT)
    if subtle:  # chunks under any single-transfer threshold, to a home-country host
        src, dst = internal_ip(rng, 20), public_ip(rng, rng.choice(HOME_COUNTRIES))
        for at in sorted(window.anywhere() for _ in range(subtle)):
            size = rng.randrange(20_000_000, 90_000_000)
            rule_hit = flow(at, src, dst, 443, "outbound", "allow", "allow-443-tcp", size)
            yield attack(at, rule_hit, EXFILTRATION, Difficulty.SUBTLE)
    for _ in range(total - scan - exfil):
        at = window.anywhere()
        if rng.random() < 0.8:  # workstations reaching servers and the internet
            port, protocol = rng.choice(SERVICES)
            internal = port in (22, 5432, 53, 123)
            dst = internal_ip(rng, 30) if internal else public_ip(rng, rng.choice(HOME_COUNTRIES))
            size = rng.randrange(200, 5_000_000)
            rule_hit = flow(
                at, internal_ip(rng, 20), dst, port, "outbound", "allow", f"allow-{port}-{protocol}", size, protocol
            )
        else:  # internet background noise against the edge
            port = rng.choice((*EXPOSED_PORTS, 443, 80))
            action, rule = ("allow", "allow-web-inbound") if port in (443, 80) else ("deny", "default-deny-inbound")
            src = public_ip(rng, rng.choice(tuple(PREFIXES)))
            rule_hit = flow(at, src, internal_ip(rng, 30), port, "inbound", action, rule, rng.randrange(40, 20_000))
        yield GeneratedEvent(EventKind.FIREWALL, at, rule_hit, BENIGN, None)


def _patches(rng: random.Random, window: Window, total: int, tag: str, subtle_share: float) -> Iterator[GeneratedEvent]:
    unpatched = min(_share(total, 0.12, 3), len(SERVERS))  # one finding per host
    evident, subtle = _forms(unpatched, subtle_share)
    hosts = rng.sample(SERVERS, unpatched)
    if evident:  # a CVSS 9+ advisory missing
        package, installed, fixed, cve, cvss = rng.choice(CRITICAL_ADVISORIES)
        for host, at in zip(hosts[:evident], window.burst(evident, 30.0), strict=True):
            finding = Patch(host, package, installed, fixed, cve, cvss, "missing")
            yield _attack(EventKind.PATCH, at, finding, UNPATCHED_CRITICAL, Difficulty.EVIDENT, tag)
    if subtle:  # an exploited-in-the-wild advisory with a routine CVSS, on internet-facing hosts
        package, installed, fixed, cve, cvss = rng.choice(EXPLOITED_ADVISORIES)
        for host in hosts[evident:]:
            finding = Patch(host, package, installed, fixed, cve, cvss, "missing")
            yield _attack(EventKind.PATCH, window.anywhere(), finding, UNPATCHED_CRITICAL, Difficulty.SUBTLE, tag)
    for _ in range(total - unpatched):
        package, installed, fixed, cve, cvss = rng.choice(ADVISORIES)
        state = rng.choices(("installed", "missing", "failed"), weights=(75, 18, 7))[0]
        yield GeneratedEvent(
            EventKind.PATCH,
            window.anywhere(),
            Patch(rng.choice(SERVERS), package, installed, fixed, cve, cvss, state),
            BENIGN,
            None,
        )


_KINDS = {EventKind.LOGIN: _logins, EventKind.FIREWALL: _firewall, EventKind.PATCH: _patches}


def generate(
    seed: int,
    counts: Counts,
    window_end: datetime,
    window: timedelta = timedelta(minutes=30),
    subtle_share: float = DEFAULT_SUBTLE_SHARE,
) -> Iterator[GeneratedEvent]:
    """Yield a cycle's events kind by kind: exactly `counts` of each, scenarios included where they fit, each in
    its evident and its subtle form (`subtle_share` of its events, SUBTLE_SHARE)."""
    tag = f"{derive_seed('campaign', seed):016x}"[:8]
    for kind, make in _KINDS.items():
        rng = random.Random(derive_seed(seed, kind.value))
        yield from make(rng, Window(rng, window_end, window), counts.of(kind), tag, subtle_share)
