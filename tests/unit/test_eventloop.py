from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import dns.asyncresolver
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from cyberevents.eventloop import ThreadFreeEventLoop, hosts_file_addresses


def test_hosts_file_lookup(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n# 10.0.0.9 db\n10.1.2.3  db.internal db  # the database\n::1 localhost\n")
    assert hosts_file_addresses("db", hosts) == ["10.1.2.3"]
    assert hosts_file_addresses("DB.internal.", hosts) == ["10.1.2.3"]
    assert hosts_file_addresses("localhost", hosts) == ["127.0.0.1", "::1"]
    assert hosts_file_addresses("nowhere", hosts) == []
    assert hosts_file_addresses("db", tmp_path / "missing") == []


async def test_the_test_loop_is_the_service_loop() -> None:
    assert isinstance(asyncio.get_running_loop(), ThreadFreeEventLoop)


async def test_localhost_resolves_without_starting_a_thread() -> None:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo("localhost", 5432, type=socket.SOCK_STREAM)
    assert {info[4][0] for info in infos} & {"127.0.0.1", "::1"}
    assert all(info[4][1] == 5432 for info in infos)
    assert threading.active_count() == 1


async def test_ip_literals_and_family_filters() -> None:
    loop = asyncio.get_running_loop()
    assert [info[4] for info in await loop.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)] == [("127.0.0.1", 80)]
    v4 = await loop.getaddrinfo("localhost", 80, family=socket.AF_INET, type=socket.SOCK_STREAM)
    assert {info[0] for info in v4} == {socket.AF_INET}


class _FakeDns(asyncio.DatagramProtocol):
    """A real DNS server on loopback that knows one name."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        if question.name == dns.name.from_text("agent.test.") and question.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "A", "127.0.0.1"))
        elif question.name != dns.name.from_text("agent.test."):
            response.set_rcode(dns.rcode.NXDOMAIN)
        self.transport.sendto(response.to_wire(), addr)


@pytest.fixture
async def loopback_dns() -> AsyncIterator[ThreadFreeEventLoop]:
    """The running loop, pointed at a DNS server on loopback instead of /etc/resolv.conf's."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, ThreadFreeEventLoop)
    transport, _ = await loop.create_datagram_endpoint(_FakeDns, local_addr=("127.0.0.1", 0))
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = transport.get_extra_info("sockname")[1]
    loop.dns = resolver
    yield loop
    transport.close()


async def test_names_outside_the_hosts_file_are_asked_of_dns_without_threads(
    loopback_dns: ThreadFreeEventLoop,
) -> None:
    infos = await loopback_dns.getaddrinfo("agent.test", 8080, type=socket.SOCK_STREAM)
    assert [info[4] for info in infos] == [("127.0.0.1", 8080)]
    assert threading.active_count() == 1


async def test_unknown_names_fail_like_getaddrinfo(loopback_dns: ThreadFreeEventLoop) -> None:
    with pytest.raises(socket.gaierror):
        await loopback_dns.getaddrinfo("no-such-host.test", 80)


async def test_executors_are_refused_instead_of_starting_threads() -> None:
    with pytest.raises(RuntimeError, match="without threads"):
        await asyncio.get_running_loop().run_in_executor(None, print)
    assert threading.active_count() == 1


async def test_a_real_connection_by_host_name() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.readline())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        reader, writer = await asyncio.open_connection("localhost", port)
        writer.write(b"ping\n")
        assert await reader.readline() == b"ping\n"
        writer.close()
        await writer.wait_closed()
    assert threading.active_count() == 1
