"""Fake agents for tests: real aiohttp servers on loopback that record what reaches them."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from cyberevents.agent.rules import score
from cyberevents.httpserver import serve
from cyberevents.models import Severity
from cyberevents.protocol import AgentRequest

Responder = Callable[[dict[str, Any]], web.Response]


def good_verdict(request: dict[str, Any]) -> web.Response:
    return web.json_response({"severity": "medium", "score": 42, "summary": "looks odd", "model": "test"})


def bundled_rules(request: dict[str, Any]) -> web.Response:
    """The verdict the bundled agent gives, to either payload: a realistic mix of severities and scores."""
    severity, points, summary = score(*AgentRequest.model_validate(request).native())
    return web.json_response({"severity": severity.value, "score": points, "summary": summary})


# Markup an attacker would put in a summary, to show that it stays text wherever a summary is shown.
HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'


def hostile_rules(request: dict[str, Any]) -> web.Response:
    """The bundled agent's verdicts, with HOSTILE in every flagged one's summary."""
    severity, points, summary = score(*AgentRequest.model_validate(request).native())
    if severity in (Severity.HIGH, Severity.CRITICAL):
        summary = f"{HOSTILE} {summary}"
    return web.json_response({"severity": severity.value, "score": points, "summary": summary})


@dataclass
class RecordingAgent:
    """Counts concurrency as the server sees it and keeps every request's headers and body."""

    url: str = ""
    latency: float = 0.0
    respond: Responder = good_verdict
    requests: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    in_flight: int = 0
    peak_in_flight: int = 0
    answers: int | None = None  # if set, the requests after this many hang until the agent stops
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            body = json.loads(await request.read())
            self.requests.append((dict(request.headers), body))
            if self.answers is not None and len(self.requests) > self.answers:
                await self.stopping.wait()
            await asyncio.sleep(self.latency)
            return self.respond(body)
        finally:
            self.in_flight -= 1


@asynccontextmanager
async def recording_agent(
    latency: float = 0.0, respond: Responder = good_verdict, port: int = 0, answers: int | None = None
) -> AsyncIterator[RecordingAgent]:
    agent = RecordingAgent(latency=latency, respond=respond, answers=answers)
    app = web.Application()
    app.router.add_post("/analyse", agent.handle)
    async with serve(app, "127.0.0.1", port) as url:
        agent.url = f"{url}/analyse"
        try:
            yield agent
        finally:
            agent.stopping.set()  # the server waits for its handlers to end


@dataclass
class RawAgent:
    """A TCP server that answers each request with whatever bytes it is given: any status line, header or framing.

    `answer` builds the response from the request's Authorization header, so an agent can echo it back.
    """

    answer: Callable[[str], bytes] = lambda authorization: b"HTTP/1.1 204 No Content\r\n\r\n"
    url: str = ""
    requests: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            headers = dict(line.split(": ", 1) for line in head.decode("latin-1").split("\r\n")[1:] if ": " in line)
            await reader.readexactly(int(headers.get("Content-Length", "0")))
            self.requests += 1
            writer.write(self.answer(headers.get("Authorization", "")))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def raw_agent() -> AsyncIterator[RawAgent]:
    agent = RawAgent()
    server = await asyncio.start_server(agent.handle, "127.0.0.1", 0)
    agent.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/analyse"
    try:
        yield agent
    finally:
        server.close()
        await server.wait_closed()


async def _echo_authorization(request: web.Request) -> web.Response:
    return web.Response(status=503, text=f"you sent {request.headers.get('Authorization', '')}")


async def _serve_echoing_agent() -> None:
    """An agent that answers 503 with the Authorization header it received, until SIGTERM."""
    app = web.Application()
    app.router.add_post("/analyse", _echo_authorization)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"http://127.0.0.1:{runner.addresses[0][1]}/analyse", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()


if __name__ == "__main__":  # `python -m tests.agents`: the echoing agent, in a process of its own
    asyncio.run(_serve_echoing_agent())
