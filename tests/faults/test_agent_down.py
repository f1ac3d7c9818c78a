"""The agent down for long: the circuit opens, events wait as pending, dispatch resumes when it is back."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from cyberevents.cycle import CycleRequest, run_cycle
from cyberevents.generator import Counts
from cyberevents.health import circuit_status
from cyberevents.resources import open_service
from tests.agents import recording_agent
from tests.conftest import MakeSettings
from tests.faults.books import assert_balanced, books
from tests.support import wait_until


async def test_circuit_opens_while_the_agent_is_down_and_closes_when_it_is_back(
    make_settings: MakeSettings, engine: AsyncEngine
) -> None:
    async with recording_agent() as probe:  # learn a free port, then leave it closed: the agent is down
        port = int(probe.url.split(":")[2].split("/")[0])
    settings = make_settings(
        agent_url=f"http://127.0.0.1:{port}/analyse", dispatch_workers=2, agent_max_retries=0,
        agent_circuit_cooldown_seconds=1,
    )  # fmt: skip
    async with open_service(settings) as resources:
        down = await run_cycle(resources, CycleRequest(Counts(40, 0, 0)))
        assert down is not None
        breaker = resources.dispatcher.breaker
        assert breaker.state == "open"
        status = circuit_status(breaker)
        assert status["state"] == "open"
        assert "deliveries failed: agent unreachable" in status["reason"]
        during = await books(engine)
        assert during.failed <= 12  # the circuit stopped the hammering after about ten calls
        assert during.pending >= 28
        assert_balanced(during, "agent down: circuit open")

        still_down = await run_cycle(resources, CycleRequest(Counts(0, 0, 0)))
        assert still_down is not None
        assert still_down.redelivered.total == 0  # still cooling down: nothing sent

        async with recording_agent(port=port) as agent:  # the agent is back
            await wait_until(lambda: breaker.state == "half-open")  # the cool-down is over
            back = await run_cycle(resources, CycleRequest(Counts(0, 0, 0)))
        assert back is not None
        assert breaker.state == "closed"
        assert back.redelivered.total == back.redelivered.analysed == 40
        assert len(agent.requests) == 40
    assert_balanced(await books(engine), "agent back after the cool-down")
    assert (await books(engine)).analysed == 40
