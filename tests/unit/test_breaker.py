from __future__ import annotations

import asyncio

from cyberevents.breaker import CircuitBreaker


def tripped(cooldown: float = 60.0) -> CircuitBreaker:
    breaker = CircuitBreaker(cooldown)
    for _ in range(10):
        breaker.record(True, "agent unreachable")
    return breaker


async def test_stays_closed_while_most_calls_succeed_or_fail_for_good() -> None:
    breaker = CircuitBreaker(60)
    for _ in range(20):
        breaker.record(False, "agent answered HTTP 400")  # permanent failures say nothing of the agent's health
    for _ in range(9):
        breaker.record(True, "agent unreachable")
    assert breaker.state == "closed"
    assert await breaker.admit()


async def test_opens_when_most_recent_calls_failed_and_refuses_until_cooled_down() -> None:
    breaker = tripped()
    assert breaker.state == "open"
    assert breaker.reason == "10 of the last 10 deliveries failed: agent unreachable"
    assert not await breaker.admit()
    assert 59 < breaker.reopens_in() <= 60


async def test_after_the_cool_down_one_probe_goes_and_the_others_wait_for_it() -> None:
    breaker = tripped(cooldown=0.05)
    await asyncio.sleep(0.06)
    assert breaker.state == "half-open"
    assert await breaker.admit()  # the probe
    waiting = asyncio.create_task(breaker.admit())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    breaker.record(False)  # the probe got an answer
    assert await waiting
    assert breaker.state == "closed"


async def test_a_failed_probe_opens_the_circuit_again() -> None:
    breaker = tripped(cooldown=0.05)
    await asyncio.sleep(0.06)
    assert await breaker.admit()
    breaker.record(True, "still down")
    assert breaker.state == "open"
    assert not await breaker.admit()
