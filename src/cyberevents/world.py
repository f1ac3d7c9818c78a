"""The organisation the synthetic events happen in: its accounts, networks, servers and advisories, the same in
every cycle; and the window a cycle's events fall in."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from ipaddress import IPv4Address


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts, stable across Python versions and runs (unlike `hash`)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


FIRST_NAMES = (
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
LAST_NAMES = ("martin", "nguyen", "garcia", "smith", "kowalski", "haddad", "okafor", "jensen", "tanaka", "rossi")
PRIVILEGED_ACCOUNTS = ("admin", "root-ops", "svc-backup", "dba.jones", "domain.admin", "k8s-admin")
HOME_COUNTRIES = ("US", "US", "US", "GB", "DE", "FR", "NL", "IN")
# Public /16 prefixes by country, used for remote workers and for attackers (synthetic data).
PREFIXES = {
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
HOSTILE_COUNTRIES = ("CN", "RU", "BR", "KP", "IR", "NG", "VN")
AUTH_METHODS = ("password", "sso", "mfa_push", "ssh_key")
USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "OpenSSH_9.6p1 Ubuntu-3ubuntu13",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928)",
)
ATTACK_AGENTS = ("python-requests/2.32.3", "Hydra v9.5", "curl/8.5.0", "Go-http-client/1.1")
SERVERS = tuple(
    f"{role}-{n:02d}" for role in ("web", "api", "db", "mail", "vpn", "build", "k8s-node") for n in (1, 2, 3)
)
SERVICES = ((443, "tcp"), (80, "tcp"), (53, "udp"), (22, "tcp"), (5432, "tcp"), (123, "udp"), (25, "tcp"))
EXPOSED_PORTS = (22, 23, 445, 1433, 3306, 3389, 5900, 8080)
# (package, installed, fixed, CVE, CVSS): real advisories, so an analyst recognises them.
ADVISORIES = (
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
# Exploited in the wild (on CISA's KEV list), with a CVSS that looks routine beside the critical ones, and never
# among the routine findings: an agent that knows which CVEs attackers use can tell them apart.
EXPLOITED_ADVISORIES = (
    ("apache2", "2.4.49", "2.4.51", "CVE-2021-41773", 7.5),
    ("linux-image-generic", "5.16.10", "5.16.11", "CVE-2022-0847", 7.8),
    ("linux-image-generic", "4.8.2", "4.8.3", "CVE-2016-5195", 7.0),
)
CRITICAL_ADVISORIES = (
    ("log4j", "2.14.1", "2.17.1", "CVE-2021-44228", 10.0),
    ("xz-utils", "5.6.0", "5.6.2", "CVE-2024-3094", 10.0),
    ("confluence", "8.5.1", "8.5.4", "CVE-2023-22518", 9.1),
)


@dataclass(frozen=True, slots=True)
class User:
    username: str
    privileged: bool
    country: str
    ip: IPv4Address
    auth_method: str
    user_agent: str


def public_ip(rng: random.Random, country: str) -> IPv4Address:
    prefix = rng.choice(PREFIXES[country])
    return IPv4Address(f"{prefix}.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}")


def internal_ip(rng: random.Random, subnet: int) -> IPv4Address:
    return IPv4Address(f"10.{subnet}.{rng.randrange(0, 8)}.{rng.randrange(2, 255)}")


def _directory() -> tuple[User, ...]:
    """The organisation's accounts: the same in every cycle, whatever the seed."""
    rng = random.Random(derive_seed("directory"))
    names = [f"{first}.{last}" for first in FIRST_NAMES for last in LAST_NAMES]
    users = [(name, False) for name in rng.sample(names, 40)] + [(name, True) for name in PRIVILEGED_ACCOUNTS]
    directory = []
    for username, privileged in users:
        country = rng.choice(HOME_COUNTRIES)
        remote = rng.random() < 0.3
        directory.append(
            User(
                username=username,
                privileged=privileged,
                country=country if remote else "US",
                ip=public_ip(rng, country) if remote else internal_ip(rng, 20),
                auth_method="ssh_key" if privileged and rng.random() < 0.5 else rng.choice(AUTH_METHODS[:3]),
                user_agent=USER_AGENTS[3] if privileged else rng.choice(USER_AGENTS),
            )
        )
    return tuple(directory)


DIRECTORY = _directory()


class Window:
    """Timestamps within a cycle's window; attacks are bursts around a random moment."""

    def __init__(self, rng: random.Random, end: datetime, length: timedelta) -> None:
        self._rng, self._start, self._seconds = rng, end - length, length.total_seconds()

    def anywhere(self) -> datetime:
        return self._start + timedelta(seconds=self._rng.uniform(0, self._seconds))

    def burst(self, count: int, spacing_seconds: float) -> list[datetime]:
        span = min(count * spacing_seconds, self._seconds)
        first = self._rng.uniform(0, self._seconds - span)
        times = sorted(first + self._rng.uniform(0, span) for _ in range(count))
        return [self._start + timedelta(seconds=t) for t in times]
