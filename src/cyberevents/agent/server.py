"""The reference agent as an aiohttp application, with latency and fault knobs for load and fault tests."""

from __future__ import annotations

import asyncio
import logging
import random
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web
from pydantic import ValidationError

from .. import __version__
from ..httpserver import serve as serve_app
from ..protocol import IDEMPOTENCY_HEADER, VERSION_HEADER, AgentRequest
from .rules import score

log = logging.getLogger(__name__)
VERSION = {VERSION_HEADER: f"cyberevents-reference {__version__}"}  # sent with every verdict

REMEMBERED_KEYS = 1_000_000
# A dispatch thousands wide opens thousands of connections at once: past aiohttp's backlog of 128 the kernel drops
# their SYNs, and each client waits out TCP's retransmission timeout (docs/performance.md, "Wide fan-out"). Linux
# caps the backlog at net.core.somaxconn.
LISTEN_BACKLOG = 65_535


@dataclass
class AgentKnobs:
    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    error_rate: float = 0.0
    token: str | None = None
    seed: int | None = None


@dataclass
class AgentStats:
    """What the agent observed; GET /stats returns it, so load tests can see real concurrency."""

    requests: int = 0
    analysed: int = 0
    errors_injected: int = 0
    in_flight: int = 0
    peak_in_flight: int = 0
    redeliveries: int = 0
    keys: OrderedDict[str, None] = field(default_factory=OrderedDict)  # the latest idempotency keys seen

    def as_json(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "analysed": self.analysed,
            "errors_injected": self.errors_injected,
            "in_flight": self.in_flight,
            "peak_in_flight": self.peak_in_flight,
            "redeliveries": self.redeliveries,
        }


STATS = web.AppKey("stats", AgentStats)


def create_app(knobs: AgentKnobs) -> web.Application:
    stats, rng = AgentStats(), random.Random(knobs.seed)

    async def analyse(request: web.Request) -> web.Response:
        stats.requests += 1
        stats.in_flight += 1
        stats.peak_in_flight = max(stats.peak_in_flight, stats.in_flight)
        try:
            if knobs.token is not None and request.headers.get("Authorization") != f"Bearer {knobs.token}":
                return web.json_response({"error": "missing or wrong bearer token"}, status=401)
            key = request.headers.get(IDEMPOTENCY_HEADER, "")
            if key in stats.keys:
                stats.redeliveries += 1
            stats.keys[key] = None
            if len(stats.keys) > REMEMBERED_KEYS:
                stats.keys.popitem(last=False)
            delay = knobs.latency_ms + rng.uniform(-knobs.jitter_ms, knobs.jitter_ms)
            if delay > 0:
                await asyncio.sleep(delay / 1000)
            if rng.random() < knobs.error_rate:
                stats.errors_injected += 1
                return web.json_response({"error": "injected failure (--error-rate)"}, status=503)
            try:
                severity, points, summary = score(*AgentRequest.model_validate_json(await request.read()).native())
            except ValidationError as exc:
                return web.json_response({"error": str(exc.errors()[0]["msg"])}, status=400)
            except (
                KeyError,
                TypeError,
                ValueError,
                ArithmeticError,
            ) as exc:  # fields missing, or of no use to the rules
                return web.json_response({"error": f"not an event as cyberevents writes it: {exc!r}"}, status=400)
            stats.analysed += 1
            return web.json_response(
                {"severity": severity.value, "score": points, "summary": summary, "agent": "cyberevents-reference"},
                headers=VERSION,
            )
        finally:
            stats.in_flight -= 1

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats.as_json())

    app = web.Application(client_max_size=1 << 20)
    app[STATS] = stats
    app.router.add_post("/analyse", analyse)
    app.router.add_post("/", analyse)
    app.router.add_get("/stats", get_stats)
    return app


@asynccontextmanager
async def serve(knobs: AgentKnobs, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Run the agent on this loop; yields its analyse URL (port 0 picks a free one)."""
    async with serve_app(create_app(knobs), host, port, backlog=LISTEN_BACKLOG) as base_url:
        yield f"{base_url}/analyse"
