"""A write finished through a cancellation: bounded, never left running, the cancellation never lost."""

from __future__ import annotations

import asyncio

import pytest

from cyberevents import aio


async def write(started: asyncio.Event, release: asyncio.Event, ended: list[str]) -> str:
    started.set()
    try:
        await release.wait()
    except asyncio.CancelledError:
        ended.append("cut")
        raise
    ended.append("done")
    return "written"


async def test_a_write_in_hand_finishes_after_the_caller_is_cancelled() -> None:
    started, release, ended = asyncio.Event(), asyncio.Event(), list[str]()
    caller = asyncio.create_task(aio.finish_even_if_cancelled(write(started, release, ended)))
    await started.wait()
    caller.cancel()
    await asyncio.sleep(0)
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert ended == ["done"]


async def test_a_write_that_hangs_is_cut_at_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aio, "FINISH_AFTER_CANCEL_SECONDS", 0.05)
    started, release, ended = asyncio.Event(), asyncio.Event(), list[str]()
    caller = asyncio.create_task(aio.finish_even_if_cancelled(write(started, release, ended)))
    await started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert ended == ["cut"]


async def test_a_second_cancellation_cuts_the_write_at_once_and_is_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aio, "FINISH_AFTER_CANCEL_SECONDS", 3600)
    started, release, ended = asyncio.Event(), asyncio.Event(), list[str]()
    caller = asyncio.create_task(aio.finish_even_if_cancelled(write(started, release, ended)))
    await started.wait()
    caller.cancel()
    await asyncio.sleep(0)
    caller.cancel()  # a second signal
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert ended == ["cut"]  # the write has ended before the caller did


async def test_on_the_way_out_of_a_cancellation_the_bound_applies_and_a_result_comes_back() -> None:
    results: list[str] = []

    async def unwinding() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            results.append(await aio.finish_even_if_cancelled(asyncio.sleep(0, "closed")))

    task = asyncio.create_task(unwinding())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert results == ["closed"]
