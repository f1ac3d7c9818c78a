"""Synthetic security events: benign background traffic with injected attack scenarios. Pure and seedable.

The same seed, counts and window give the same events, byte for byte. Each kind draws from its own random
stream, so changing the number of firewall events does not change the login events of a cycle.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import IPv4Address
from typing import NamedTuple

from .models import EventKind, IPAddress

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


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts, stable across Python versions and runs (unlike `hash`)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def cycle_seed(base_seed: int, cycle_id: int) -> int:
    """The seed of one cycle: regenerate a cycle exactly from GENERATOR_SEED and its id."""
    return derive_seed("cycle", base_seed, cycle_id)


# --- the world the events happen in -------------------------------------------------------------------------

_FIRST = (
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "nina",
    "oscar",
    "peggy",
    "quinn",
    "rupert",
    "sybil",
    "trent",
    "ursula",
    "victor",
    "wendy",
    "yusuf",
)
_LAST = ("martin", "nguyen", "garcia", "smith", "kowalski", "haddad", "okafor", "jensen", "tanaka", "rossi")
_PRIVILEGED = ("admin", "root-ops", "svc-backup", "dba.jones", "domain.admin", "k8s-admin")
_HOME_COUNTRIES = ("US", "US", "US", "GB", "DE", "FR", "NL", "IN")
# Public /16 prefixes by country, used for remote workers and for attackers (synthetic data).
_PREFIXES = {
    "US": ("23.20", "104.28", "172.58"),
    "GB": ("81.2", "86.140"),
    "DE": ("85.214", "91.64"),
    "FR": ("90.84", "176.31"),
    "NL": ("145.53", "31.201"),
    "IN": ("49.36", "117.198"),
    "CN": ("36.112", "116.21"),
    "RU": ("95.165", "188.120"),
    "BR": ("177.54", "189.6"),
    "KP": ("175.45",),
    "IR": ("5.160", "91.98"),
    "NG": ("105.112", "197.210"),
    "VN": ("113.160",),
}
_HOSTILE_COUNTRIES = ("CN", "RU", "BR", "KP", "IR", "NG", "VN")
_AUTH_METHODS = ("password", "sso", "mfa_push", "ssh_key")
_USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "OpenSSH_9.6p1 Ubuntu-3ubuntu13",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928)",
)
_ATTACK_AGENTS = ("python-requests/2.32.3", "Hydra v9.5", "curl/8.5.0", "Go-http-client/1.1")
_SERVERS = tuple(
    f"{role}-{n:02d}" for role in ("web", "api", "db", "mail", "vpn", "build", "k8s-node") for n in (1, 2, 3)
)
_SERVICES = ((443, "tcp"), (80, "tcp"), (53, "udp"), (22, "tcp"), (5432, "tcp"), (123, "udp"), (25, "tcp"))
_EXPOSED_PORTS = (22, 23, 445, 1433, 3306, 3389, 5900, 8080)
# (package, installed, fixed, CVE, CVSS): real advisories, so an analyst recognises them.
_ADVISORIES = (
    ("openssl", "3.0.2", "3.0.7", "CVE-2022-3602", 7.5),
    ("openssh-server", "9.6p1", "9.8p1", "CVE-2024-6387", 8.1),
    ("sudo", "1.8.31", "1.9.5p2", "CVE-2021-3156", 7.8),
    ("glibc", "2.35", "2.38", "CVE-2023-4911", 7.8),
    ("curl", "8.3.0", "8.4.0", "CVE-2023-38545", 9.8),
    ("nginx", "1.25.2", "1.25.3", "CVE-2023-44487", 7.5),
    ("polkit", "0.105", "0.120", "CVE-2021-4034", 7.8),
    ("libwebp", "1.3.1", "1.3.2", "CVE-2023-4863", 8.8),
    ("git", "2.39.2", "2.45.1", "CVE-2024-32002", 9.0),
    ("vim", "9.0.1", "9.0.2", "CVE-2023-4738", 7.8),
    ("bind9", "9.18.18", "9.18.19", "CVE-2023-3341", 7.5),
    ("libtiff", "4.3.0", "4.5.1", "CVE-2023-3618", 6.5),
    ("python3.11", "3.11.4", "3.11.8", "CVE-2023-40217", 5.3),
    ("libxml2", "2.9.13", "2.11.7", "CVE-2024-25062", 5.9),
)
_CRITICAL_ADVISORIES = (
    ("log4j", "2.14.1", "2.17.1", "CVE-2021-44228", 10.0),
    ("xz-utils", "5.6.0", "5.6.2", "CVE-2024-3094", 10.0),
    ("confluence", "8.5.1", "8.5.4", "CVE-2023-22518", 9.1),
)


@dataclass(frozen=True, slots=True)
class _User:
    username: str
    privileged: bool
    country: str
    ip: IPv4Address
    auth_method: str
    user_agent: str


def _public_ip(rng: random.Random, country: str) -> IPv4Address:
    prefix = rng.choice(_PREFIXES[country])
    return IPv4Address(f"{prefix}.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}")


def _internal_ip(rng: random.Random, subnet: int) -> IPv4Address:
    return IPv4Address(f"10.{subnet}.{rng.randrange(0, 8)}.{rng.randrange(2, 255)}")


def _directory() -> tuple[_User, ...]:
    """The organisation's accounts: the same in every cycle, whatever the seed."""
    rng = random.Random(derive_seed("directory"))
    names = [f"{first}.{last}" for first in _FIRST for last in _LAST]
    users = [(name, False) for name in rng.sample(names, 40)] + [(name, True) for name in _PRIVILEGED]
    directory = []
    for username, privileged in users:
        country = rng.choice(_HOME_COUNTRIES)
        remote = rng.random() < 0.3
        directory.append(
            _User(
                username=username,
                privileged=privileged,
                country=country if remote else "US",
                ip=_public_ip(rng, country) if remote else _internal_ip(rng, 20),
                auth_method="ssh_key" if privileged and rng.random() < 0.5 else rng.choice(_AUTH_METHODS[:3]),
                user_agent=_USER_AGENTS[3] if privileged else rng.choice(_USER_AGENTS),
            )
        )
    return tuple(directory)


DIRECTORY = _directory()


# --- one cycle ---------------------------------------------------------------------------------------------


class _Window:
    """Timestamps within the cycle's window; attacks are bursts around a random moment."""

    def __init__(self, rng: random.Random, end: datetime, length: timedelta) -> None:
        self._rng, self._start, self._seconds = rng, end - length, length.total_seconds()

    def anywhere(self) -> datetime:
        return self._start + timedelta(seconds=self._rng.uniform(0, self._seconds))

    def burst(self, count: int, spacing_seconds: float) -> list[datetime]:
        span = min(count * spacing_seconds, self._seconds)
        first = self._rng.uniform(0, self._seconds - span)
        times = sorted(first + self._rng.uniform(0, span) for _ in range(count))
        return [self._start + timedelta(seconds=t) for t in times]


def _share(total: int, fraction: float, minimum: int) -> int:
    """How many of `total` events a scenario takes: none when there is too little room for it."""
    size = int(total * fraction)
    return size if size >= minimum and total - size >= minimum else 0


def _logins(rng: random.Random, window: _Window, total: int, tag: str) -> Iterator[GeneratedEvent]:
    def event(at: datetime, login: Login, scenario: str = BENIGN, campaign: str | None = None) -> GeneratedEvent:
        return GeneratedEvent(EventKind.LOGIN, at, login, scenario, campaign)

    brute = _share(total, 0.16, 6)
    if brute:
        country = rng.choice(_HOSTILE_COUNTRIES)
        ip, agent = _public_ip(rng, country), rng.choice(_ATTACK_AGENTS)
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
        country = rng.choice(_HOSTILE_COUNTRIES)
        ip, agent = _public_ip(rng, country), rng.choice(_ATTACK_AGENTS)
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
        country = rng.choice(_HOME_COUNTRIES) if travelling else user.country
        ip = _public_ip(rng, country) if travelling else user.ip
        success = rng.random() > 0.07  # a mistyped password now and then
        yield event(
            window.anywhere(),
            Login(user.username, user.privileged, ip, country, success, user.auth_method, user.user_agent),
        )


def _firewall(rng: random.Random, window: _Window, total: int, tag: str) -> Iterator[GeneratedEvent]:
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
            _public_ip(rng, rng.choice(_HOSTILE_COUNTRIES)),
            _internal_ip(rng, 30),
            f"{PORT_SCAN}-{tag}",
        )
        ports = list(dict.fromkeys([*_EXPOSED_PORTS, *range(1, 65536)]))[:scan]  # the usual suspects first
        for at, port in zip(window.burst(scan, 0.2), ports, strict=True):
            action, rule = ("allow", "allow-https") if port == 443 else ("deny", "default-deny-inbound")
            yield flow(at, src, dst, port, "inbound", action, rule, 60, scenario=PORT_SCAN, campaign=campaign)
    exfil = _share(total, 0.025, 5)
    if exfil:
        src, dst = _internal_ip(rng, 20), _public_ip(rng, rng.choice(_HOSTILE_COUNTRIES))
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
            port, protocol = rng.choice(_SERVICES)
            internal = port in (22, 5432, 53, 123)
            dst = _internal_ip(rng, 30) if internal else _public_ip(rng, rng.choice(_HOME_COUNTRIES))
            yield flow(
                at,
                _internal_ip(rng, 20),
                dst,
                port,
                "outbound",
                "allow",
                f"allow-{port}-{protocol}",
                rng.randrange(200, 5_000_000),
                protocol,
            )
        else:  # internet background noise against the edge
            port = rng.choice((*_EXPOSED_PORTS, 443, 80))
            action, rule = ("allow", "allow-web-inbound") if port in (443, 80) else ("deny", "default-deny-inbound")
            src = _public_ip(rng, rng.choice(tuple(_PREFIXES)))
            yield flow(at, src, _internal_ip(rng, 30), port, "inbound", action, rule, rng.randrange(40, 20_000))


def _patches(rng: random.Random, window: _Window, total: int, tag: str) -> Iterator[GeneratedEvent]:
    unpatched = min(_share(total, 0.12, 3), len(_SERVERS))  # one finding per host
    if unpatched:
        package, installed, fixed, cve, cvss = rng.choice(_CRITICAL_ADVISORIES)
        hosts = rng.sample(_SERVERS, unpatched)
        for host, at in zip(hosts, window.burst(unpatched, 30.0), strict=True):
            yield GeneratedEvent(
                EventKind.PATCH,
                at,
                Patch(host, package, installed, fixed, cve, cvss, "missing"),
                UNPATCHED_CRITICAL,
                f"{UNPATCHED_CRITICAL}-{tag}",
            )
    for _ in range(total - unpatched):
        package, installed, fixed, cve, cvss = rng.choice(_ADVISORIES)
        state = rng.choices(("installed", "missing", "failed"), weights=(75, 18, 7))[0]
        yield GeneratedEvent(
            EventKind.PATCH,
            window.anywhere(),
            Patch(rng.choice(_SERVERS), package, installed, fixed, cve, cvss, state),
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
        yield from make(rng, _Window(rng, window_end, window), counts.of(kind), tag)
