"""The event loop cyberevents runs on: name resolution without threads, executors refused.

asyncio resolves host names with `getaddrinfo` in a thread pool, and every client built on it (asyncpg,
aiohttp's default resolver) inherits that thread. This loop answers `getaddrinfo` itself: IP literals and
`/etc/hosts` directly, anything else with dnspython's asyncio resolver over the loop's own sockets (which
honours `/etc/resolv.conf`, search domains included). Any other use of an executor raises instead of quietly
starting a thread.
"""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import socket
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast

import dns.asyncresolver
import dns.exception
import dns.resolver

T = TypeVar("T")
AddrInfo = tuple[socket.AddressFamily, socket.SocketKind, int, str, tuple[str, int] | tuple[str, int, int, int]]

HOSTS_FILE = Path("/etc/hosts")
_LOCALHOST = ("127.0.0.1", "::1")


def hosts_file_addresses(host: str, hosts_file: Path = HOSTS_FILE) -> list[str]:
    """Addresses `/etc/hosts` gives for a name, in file order (the system's resolver reads it first too)."""
    try:
        lines = hosts_file.read_text().splitlines()
    except OSError:
        return []
    wanted = host.lower().rstrip(".")
    found = []
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and wanted in (name.lower() for name in fields[1:]):
            found.append(fields[0])
    return found


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


class ThreadFreeEventLoop(asyncio.SelectorEventLoop):
    """A selector loop whose `getaddrinfo` never touches a thread pool."""

    dns: dns.asyncresolver.Resolver | None = None  # built from /etc/resolv.conf on first use

    async def getaddrinfo(  # type: ignore[override]
        self,
        host: bytes | str | None,
        port: bytes | str | int | None,
        *,
        family: int = 0,
        type: int = 0,
        proto: int = 0,
        flags: int = 0,
    ) -> list[AddrInfo]:
        name = host.decode("idna") if isinstance(host, bytes) else host
        if name is None or _is_ip_literal(name):
            addresses: list[str | None] = [name]
        else:
            addresses = list(hosts_file_addresses(name) or await self._query_dns(name, family))
        infos: list[AddrInfo] = []
        for address in addresses:
            # AI_NUMERICHOST: libc only formats the literal and looks up a service name; no DNS, no blocking.
            numeric = flags | (socket.AI_NUMERICHOST if address is not None else 0)
            try:
                infos.extend(cast(list[AddrInfo], socket.getaddrinfo(address, port, family, type, proto, numeric)))
            except socket.gaierror:
                continue  # an address of the other family than the one asked for
        if not infos:
            raise socket.gaierror(socket.EAI_NONAME, f"cannot resolve {name!r}")
        return infos

    async def _query_dns(self, name: str, family: int) -> list[str]:
        if name.lower().rstrip(".") == "localhost":
            return list(_LOCALHOST)
        if self.dns is None:
            self.dns = dns.asyncresolver.Resolver()
        record_types = {int(socket.AF_INET): ["A"], int(socket.AF_INET6): ["AAAA"]}.get(family, ["A", "AAAA"])
        addresses: list[str] = []
        for record_type in record_types:
            try:
                answer = await self.dns.resolve(name, record_type, search=True)
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
                continue
            except dns.exception.Timeout as exc:
                raise socket.gaierror(socket.EAI_AGAIN, f"DNS timeout resolving {name!r}") from exc
            addresses.extend(record.to_text() for record in answer)
        return addresses

    def run_in_executor(  # type: ignore[override]
        self, executor: Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        """Refuses: asyncio's default executor is a thread pool. Overridden so that a library's hidden executor call
        fails loudly here instead of quietly starting an OS thread; nothing in cyberevents calls it."""
        raise RuntimeError(f"cyberevents runs without threads: refusing to run {func!r} in an executor")


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on a ThreadFreeEventLoop: the one place cyberevents enters the event loop.

    Ctrl-C can come at any moment: while the loop is built it waits (a loop interrupted half-built fails again when
    collected, with a traceback); then it is the loop's to handle until the service installs its graceful stop, and
    it raises KeyboardInterrupt out of the loop: asyncio's own handling only cancels the main task, which a library
    in the middle of connecting may swallow. A coroutine stopped before it started is closed, not warned about.
    """
    try:
        with _ctrl_c_deferred():
            loop = ThreadFreeEventLoop()
            loop.add_signal_handler(signal.SIGINT, _interrupt)
        with asyncio.Runner(loop_factory=lambda: loop) as runner:
            return runner.run(main)
    finally:
        main.close()


def _interrupt() -> NoReturn:
    raise KeyboardInterrupt


@contextmanager
def _ctrl_c_deferred() -> Iterator[None]:
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
