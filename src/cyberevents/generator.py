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

from .models import EventKind, IPAddress
from .world import (
    ADVISORIES,
    ATTACK_AGENTS,
    CRITICAL_ADVISORIES,
    DIRECTORY,
    EXPOSED_PORTS,
    HOME_COUNTRIES,
    HOSTILE_COUNTRIES,
    PREFIXES,
    SERVERS,
    SERVICES,
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


def _logins(rng: random.Random, window: Window, total: int, tag: str) -> Iterator[GeneratedEvent]:
    def event(at: datetime, login: Login, scenario: str = BENIGN, campaign: str | None = None) -> GeneratedEvent:
        return GeneratedEvent(EventKind.LOGIN, at, login, scenario, campaign)

    brute = _share(total, 0.16, 6)
    if brute:
        country = rng.choice(HOSTILE_COUNTRIES)
        ip, agent = public_ip(rng, country), rng.choice(ATTACK_AGENTS)
        victim = rng.choice([user for user in DIRECTORY if user.privileged] if rng.random() < 0.5 else DIRECTORY)
        campaign = f"{BRUTE_FORCE}-{tag}"
        for n, at in enumerate(window.burst(brute, 4.0)):
            success = n == brute - 1  # failures, then the guess that works
            yield event(
                at,
                Login(victim.username, victim.privileged, ip, country, success, "password", agent),
                BRUTE_FORCE,
                campaign,
            )
    stuffing = min(_share(total, 0.12, 6), len(DIRECTORY))  # each leaked account tried once
    if stuffing:
        country = rng.choice(HOSTILE_COUNTRIES)
        ip, agent = public_ip(rng, country), rng.choice(ATTACK_AGENTS)
        campaign = f"{CREDENTIAL_STUFFING}-{tag}"
        for at, user in zip(window.burst(stuffing, 1.5), rng.sample(DIRECTORY, stuffing), strict=True):
            yield event(
                at,
                Login(user.username, user.privileged, ip, country, False, "password", agent),
                CREDENTIAL_STUFFING,
                campaign,
            )
    for _ in range(total - brute - stuffing):
        user = rng.choice(DIRECTORY)
        travelling = rng.random() < 0.05
        country = rng.choice(HOME_COUNTRIES) if travelling else user.country
        ip = public_ip(rng, country) if travelling else user.ip
        success = rng.random() > 0.07  # a mistyped password now and then
        yield event(
            window.anywhere(),
            Login(user.username, user.privileged, ip, country, success, user.auth_method, user.user_agent),
        )


def _firewall(rng: random.Random, window: Window, total: int, tag: str) -> Iterator[GeneratedEvent]:
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
        scenario: str = BENIGN,
        campaign: str | None = None,
    ) -> GeneratedEvent:
        rule_hit = Firewall(src, rng.randrange(1024, 65535), dst, port, protocol, direction, action, rule, size)
        return GeneratedEvent(EventKind.FIREWALL, at, rule_hit, scenario, campaign)

    scan = min(_share(total, 0.12, 10), 65535)
    if scan:
        src, dst, campaign = (
            public_ip(rng, rng.choice(HOSTILE_COUNTRIES)),
            internal_ip(rng, 30),
            f"{PORT_SCAN}-{tag}",
        )
        ports = list(dict.fromkeys([*EXPOSED_PORTS, *range(1, 65536)]))[:scan]  # the usual suspects first
        for at, port in zip(window.burst(scan, 0.2), ports, strict=True):
            action, rule = ("allow", "allow-https") if port == 443 else ("deny", "default-deny-inbound")
            yield flow(at, src, dst, port, "inbound", action, rule, 60, scenario=PORT_SCAN, campaign=campaign)
    exfil = _share(total, 0.025, 5)
    if exfil:
        src, dst = internal_ip(rng, 20), public_ip(rng, rng.choice(HOSTILE_COUNTRIES))
        campaign = f"{EXFILTRATION}-{tag}"
        for at in window.burst(exfil, 45.0):
            size = rng.randrange(200_000_000, 2_000_000_000)
            yield flow(
                at,
                src,
                dst,
                443,
                "outbound",
                "allow",
                "allow-web-egress",
                size,
                scenario=EXFILTRATION,
                campaign=campaign,
            )
    for _ in range(total - scan - exfil):
        at = window.anywhere()
        if rng.random() < 0.8:  # workstations reaching servers and the internet
            port, protocol = rng.choice(SERVICES)
            internal = port in (22, 5432, 53, 123)
            dst = internal_ip(rng, 30) if internal else public_ip(rng, rng.choice(HOME_COUNTRIES))
            yield flow(
                at,
                internal_ip(rng, 20),
                dst,
                port,
                "outbound",
                "allow",
                f"allow-{port}-{protocol}",
                rng.randrange(200, 5_000_000),
                protocol,
            )
        else:  # internet background noise against the edge
            port = rng.choice((*EXPOSED_PORTS, 443, 80))
            action, rule = ("allow", "allow-web-inbound") if port in (443, 80) else ("deny", "default-deny-inbound")
            src = public_ip(rng, rng.choice(tuple(PREFIXES)))
            yield flow(at, src, internal_ip(rng, 30), port, "inbound", action, rule, rng.randrange(40, 20_000))


def _patches(rng: random.Random, window: Window, total: int, tag: str) -> Iterator[GeneratedEvent]:
    unpatched = min(_share(total, 0.12, 3), len(SERVERS))  # one finding per host
    if unpatched:
        package, installed, fixed, cve, cvss = rng.choice(CRITICAL_ADVISORIES)
        hosts = rng.sample(SERVERS, unpatched)
        for host, at in zip(hosts, window.burst(unpatched, 30.0), strict=True):
            yield GeneratedEvent(
                EventKind.PATCH,
                at,
                Patch(host, package, installed, fixed, cve, cvss, "missing"),
                UNPATCHED_CRITICAL,
                f"{UNPATCHED_CRITICAL}-{tag}",
            )
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
    seed: int, counts: Counts, window_end: datetime, window: timedelta = timedelta(minutes=30)
) -> Iterator[GeneratedEvent]:
    """Yield a cycle's events kind by kind: exactly `counts` of each, scenarios included where they fit."""
    tag = f"{derive_seed('campaign', seed):016x}"[:8]
    for kind, make in _KINDS.items():
        rng = random.Random(derive_seed(seed, kind.value))
        yield from make(rng, Window(rng, window_end, window), counts.of(kind), tag)
