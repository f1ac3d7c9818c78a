"""Agent faults: transient failures retried (Retry-After honoured), permanent ones recorded at once."""

from __future__ import annotations

import gzip
import json
import time
from collections import Counter
from typing import Any

from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from cyberevents.cycle import CycleRequest, run_cycle
from cyberevents.db import session_factory
from cyberevents.generator import Counts
from cyberevents.models import Event, EventStatus
from cyberevents.resources import open_service
from tests.agents import good_verdict, recording_agent
from tests.conftest import MakeSettings
from tests.faults.books import assert_balanced, books


class Flaky:
    """Answers each event `failures` times with `status`, then with a verdict."""

    def __init__(self, failures: int, status: int, headers: dict[str, str] | None = None) -> None:
        self.failures, self.status, self.headers = failures, status, headers or {}
        self.seen: Counter[int] = Counter()

    def __call__(self, request: dict[str, Any]) -> web.Response:
        self.seen[request["event_id"]] += 1
        if self.seen[request["event_id"]] <= self.failures:
            return web.json_response({"error": "busy"}, status=self.status, headers=self.headers)
        return good_verdict(request)


async def events(engine: AsyncEngine) -> list[Event]:
    async with session_factory(engine)() as session:
        return list((await session.scalars(select(Event).order_by(Event.id))).all())


async def test_transient_failures_are_retried_with_the_same_idempotency_key(
    make_settings: MakeSettings, engine: AsyncEngine
) -> None:
    flaky = Flaky(failures=2, status=503)
    async with (
        recording_agent(respond=flaky) as agent,
        open_service(make_settings(agent_url=agent.url, agent_max_retries=3)) as resources,
    ):
        await run_cycle(resources, CycleRequest(Counts(4, 3, 3)))
    assert {event.status for event in await events(engine)} == {EventStatus.ANALYSED}
    assert {event.attempts for event in await events(engine)} == {3}
    keys = Counter(headers["Idempotency-Key"] for headers, _ in agent.requests)
    assert set(keys.values()) == {3}
    assert_balanced(await books(engine), "agent 503 twice per event, then answers")


async def test_429_waits_for_retry_after(make_settings: MakeSettings, engine: AsyncEngine) -> None:
    flaky = Flaky(failures=1, status=429, headers={"Retry-After": "1"})
    async with (
        recording_agent(respond=flaky) as agent,
        open_service(make_settings(agent_url=agent.url, dispatch_workers=1)) as resources,
    ):
        started = time.monotonic()
        await run_cycle(resources, CycleRequest(Counts(1, 0, 0)))
        took = time.monotonic() - started
    assert took >= 1.0
    assert [event.status for event in await events(engine)] == [EventStatus.ANALYSED]
    assert len(agent.requests) == 2


async def test_retries_stop_at_agent_max_retries(make_settings: MakeSettings, engine: AsyncEngine) -> None:
    flaky = Flaky(failures=100, status=502)
    async with recording_agent(respond=flaky) as agent:
        settings = make_settings(agent_url=agent.url, agent_max_retries=2)
        async with open_service(settings) as resources:
            await run_cycle(resources, CycleRequest(Counts(2, 2, 2)))
    stored = await events(engine)
    assert {event.status for event in stored} == {EventStatus.FAILED}
    assert {event.attempts for event in stored} == {3}
    assert {event.last_error for event in stored} == {'agent answered HTTP 502: {"error": "busy"}'}
    assert len(agent.requests) == 6 * 3
    assert_balanced(await books(engine), "agent 502 on every attempt")


def bad_request(request: dict[str, Any]) -> web.Response:
    return web.json_response({"error": "unknown field"}, status=400)


def huge(request: dict[str, Any]) -> web.Response:
    return web.json_response({"severity": "low", "score": 1, "summary": "x" * (2 << 20)})


def huge_inflated(request: dict[str, Any]) -> web.Response:
    body = json.dumps({"severity": "low", "score": 1, "summary": "x" * (2 << 20)}).encode()
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    return web.Response(body=gzip.compress(body), headers=headers)  # 6 KiB sent, 2 MiB once inflated


def huge_chunked(request: dict[str, Any]) -> web.Response:
    response = huge(request)
    response.enable_chunked_encoding()  # no Content-Length to refuse it by
    return response


def html(request: dict[str, Any]) -> web.Response:
    return web.Response(text="<html><body>Welcome to nginx!</body></html>", content_type="text/html")


def negative(request: dict[str, Any]) -> web.Response:
    return web.json_response({"severity": "low", "score": -5, "summary": "?"})


def nul_character(request: dict[str, Any]) -> web.Response:
    # Valid JSON, but PostgreSQL stores no NUL in text or jsonb: it must fail as the agent's fault, not crash.
    return web.json_response({"severity": "low", "score": 5, "summary": "a\u0000b"})


async def test_permanent_failures_are_not_retried(make_settings: MakeSettings, engine: AsyncEngine) -> None:
    cases = {
        "HTTP 400": (bad_request, "agent answered HTTP 400"),
        "a body over 1 MiB": (huge, "agent response larger than 1048576 bytes"),
        "a gzip body inflating past 1 MiB": (huge_inflated, "agent response larger than 1048576 bytes"),
        "a chunked body over 1 MiB": (huge_chunked, "agent response larger than 1048576 bytes"),
        "HTML": (html, "response is not JSON"),
        "a negative score": (negative, "score: Input should be greater than or equal to 0"),
        "a NUL character": (nul_character, "NUL character"),
    }
    for name, (respond, error) in cases.items():
        async with recording_agent(respond=respond) as agent:
            settings = make_settings(agent_url=agent.url, agent_max_retries=5)
            async with open_service(settings) as resources:
                await run_cycle(resources, CycleRequest(Counts(1, 1, 1)))
        latest = (await events(engine))[-3:]
        sent = Counter(body["event_id"] for _, body in agent.requests if body["event_id"] in {e.id for e in latest})
        assert sent == {event.id: 1 for event in latest}, name  # one request per event: no retry
        assert {event.status for event in latest} == {EventStatus.FAILED}, name
        assert all(event.last_error and error in event.last_error for event in latest), name
        assert {event.attempts for event in latest} == {1}, name
    assert_balanced(
        await books(engine), "agent answers 400 / 2 MiB (plain, gzip, chunked) / HTML / negative score / NUL"
    )
