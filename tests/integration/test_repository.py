from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from datetime import UTC, datetime
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest
from sqlalchemy import TextClause, event, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from cyberevents import ledger, queue, repository
from cyberevents.db import database_unavailable, open_write_engine, session_factory
from cyberevents.generator import SCENARIOS, Counts, Login, generate
from cyberevents.liveness import hold_liveness
from cyberevents.models import (
    CycleStat,
    CycleTrigger,
    Event,
    EventAnalysis,
    EventKind,
    EventStatus,
    FirewallEvent,
    GroundTruth,
    LoginEvent,
    PatchEvent,
)
from cyberevents.protocol import AgentRequest
from tests.support import wait_until

START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
# A claimant whose liveness lock nobody holds: its claims last only as long as their leases would.
ME = queue.Claimant("me", 1, 300, 5)


async def store_cycle(engine: AsyncEngine, counts: Counts, seed: int = 5) -> int:
    async with session_factory(engine)() as session, session.begin():
        cycle_id = await ledger.next_cycle_id(session)
        await ledger.insert_cycle(session, cycle_id, START, seed, CycleTrigger.ONCE)
        generated = await repository.insert_events(session, cycle_id, generate(seed, counts, START))
        await ledger.insert_cycle_stats(session, cycle_id, generated)
    return cycle_id


async def test_a_cycle_is_stored_with_details_and_ground_truth(engine: AsyncEngine) -> None:
    cycle_id = await store_cycle(engine, Counts(63, 319, 52))
    async with session_factory(engine)() as session:
        kinds = dict((await session.execute(select(Event.kind, func.count()).group_by(Event.kind))).all())
        assert kinds == {EventKind.LOGIN: 63, EventKind.FIREWALL: 319, EventKind.PATCH: 52}
        assert await session.scalar(select(func.count()).select_from(LoginEvent)) == 63
        assert await session.scalar(select(func.count()).select_from(FirewallEvent)) == 319
        assert await session.scalar(select(func.count()).select_from(PatchEvent)) == 52
        assert set(await session.scalars(select(GroundTruth.scenario).distinct())) >= set(SCENARIOS)
        events = (await session.scalars(select(Event))).all()
        assert {e.status for e in events} == {EventStatus.PENDING}
        assert {e.delivery_count for e in events} == {0} and {e.cycle_id for e in events} == {cycle_id}
        assert len({e.uid for e in events}) == 434
        stats = {s.kind: s.generated for s in await session.scalars(select(CycleStat))}
        assert stats == {EventKind.LOGIN: 63, EventKind.FIREWALL: 319, EventKind.PATCH: 52}


async def test_stored_details_equal_the_generated_ones(engine: AsyncEngine) -> None:
    await store_cycle(engine, Counts(30, 0, 0), seed=9)
    expected = Counter(e.detail for e in generate(9, Counts(30, 0, 0), START))
    async with session_factory(engine)() as session:
        rows = (await session.scalars(select(LoginEvent))).all()
    stored = Counter(
        Login(r.username, r.privileged, r.src_ip, r.country, r.success, r.auth_method, r.user_agent) for r in rows
    )
    assert stored == expected


async def test_a_claimed_event_comes_as_its_request_body_with_its_own_fields_and_nothing_else(
    engine: AsyncEngine,
) -> None:
    cycle_id = await store_cycle(engine, Counts(3, 3, 3), seed=4)
    generated = list(generate(4, Counts(3, 3, 3), START))
    async with session_factory(engine)() as session, session.begin():
        claimed = await queue.claim(session, cycle_id, ME, limit=20)
        uids = {row.id: row.uid for row in await session.execute(select(Event.id, Event.uid))}
    assert len(claimed) == len(generated) == 9
    for delivery, generated_event in zip(claimed, generated, strict=True):  # ids follow the generated order
        body = json.loads(delivery.body)
        assert AgentRequest.model_validate(body).event_type == generated_event.kind.value == delivery.kind.value
        assert body["event_id"] == delivery.event_id and delivery.uid == uids[delivery.event_id]
        fields = body["event"]
        occurred_at = fields.pop("occurred_at")
        assert occurred_at.endswith("+00:00") and datetime.fromisoformat(occurred_at) == generated_event.occurred_at
        # JSON types as documented: addresses as text, numbers as numbers (cvss not the text of a Decimal)
        assert fields == {
            name: str(value) if isinstance(value, IPv4Address | IPv6Address) else value
            for name, value in asdict(generated_event.detail).items()
        }


async def events_a_claim_reads(engine: AsyncEngine, claim: TextClause, *values: str | int) -> dict[str, float]:
    """Rows of events the claim returned or filtered out, on a connection of the write pool: EXPLAIN ANALYZE of
    the statement with its values bound as the service sends them, then prepared in SQL so that plan_cache_mode
    can force a custom and a generic plan. Each does claim."""
    sql = str(claim.compile(dialect=engine.dialect))
    literals = ", ".join(f"'{value}'" if isinstance(value, str) else str(value) for value in values)
    reads = {}
    async with open_write_engine(engine, pool_size=1) as writes, writes.connect() as connection:
        driver = (await connection.get_raw_connection()).driver_connection
        assert driver is not None
        await driver.execute(f"PREPARE claim AS {sql}")
        for mode in ("as sent", "force_custom_plan", "force_generic_plan"):
            if mode == "as sent":
                explain = driver.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *values)
            else:
                await driver.execute(f"SET plan_cache_mode = {mode}")
                explain = driver.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE claim({literals})")
            [explained] = await explain  # the engine's connections decode json
            assert "JIT" not in explained, f"{mode}: the claim was compiled, some 200 ms of PostgreSQL's CPU"
            reads[mode] = _event_rows_read(explained["Plan"])
        await driver.execute("DEALLOCATE claim; RESET plan_cache_mode")
    return reads


def _event_rows_read(node: dict[str, Any]) -> float:
    read = 0.0
    if node.get("Relation Name") == "events" and node["Node Type"].endswith("Scan"):
        read += (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * node["Actual Loops"]
    return read + sum(_event_rows_read(child) for child in node.get("Plans", []))


# A claim of 50 reads 50 events to find them, and 50 to update them.
READS_OF_A_CLAIM_OF_50 = {"as sent": 100, "force_custom_plan": 100, "force_generic_plan": 100}


async def test_a_claim_reads_the_events_it_takes_not_the_whole_cycle(engine: AsyncEngine) -> None:
    """Whatever the statistics say: none yet (a fresh database, or autovacuum off), or taken when the whole cycle was
    pending and stale once most of it is delivered. A plan that sorts the cycle's pending events, or walks the
    primary key past the delivered ones, makes each claim cost the size of the cycle."""
    cycle_id = await store_cycle(engine, Counts(0, 2_000, 0))
    # In the statement's order: owner, liveness lock, lease seconds (0: each claim takes the same first 50 again),
    # cycle, MAX_ATTEMPTS (100: the same 50 are claimed six times), limit.
    take_50 = ("me", 1, 0, cycle_id, 100, 50)
    assert await events_a_claim_reads(engine, queue._CLAIM_OWN, *take_50) == READS_OF_A_CLAIM_OF_50
    async with engine.begin() as connection:
        await connection.execute(text("ANALYZE events"))
        await connection.execute(
            text("UPDATE events SET status = 'analysed' WHERE id < (SELECT min(id) + 1800 FROM events)")
        )
    assert await events_a_claim_reads(engine, queue._CLAIM_OWN, *take_50) == READS_OF_A_CLAIM_OF_50


async def test_a_backlog_claim_reads_the_leftovers_it_takes_not_every_earlier_event(engine: AsyncEngine) -> None:
    """Earlier cycles' leftovers lie among their delivered events, which a claim must not walk."""
    earlier = await store_cycle(engine, Counts(0, 2_000, 0))
    current = await store_cycle(engine, Counts(0, 10, 0))
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE cycles SET outcome = 'succeeded' WHERE id = :id"), {"id": earlier})
        await connection.execute(
            text("UPDATE events SET status = CASE WHEN id % 2 = 0 THEN 'failed' ELSE 'analysed' END, "
                 "delivery_count = 1 WHERE cycle_id = :id"),
            {"id": earlier},
        )  # fmt: skip
    # 1,000 failed events wait. In the statement's order: owner, liveness lock, lease seconds (0: the same first 50
    # each time), cycle, MAX_ATTEMPTS (100: the same 50 are claimed six times), limit.
    take_50 = ("me", 1, 0, current, 100, 50)
    assert await events_a_claim_reads(engine, queue._CLAIM_BACKLOG, *take_50) == READS_OF_A_CLAIM_OF_50
    async with engine.begin() as connection:
        await connection.execute(text("ANALYZE events"))
    assert await events_a_claim_reads(engine, queue._CLAIM_BACKLOG, *take_50) == READS_OF_A_CLAIM_OF_50


async def test_events_are_inserted_in_bulk_not_row_by_row(engine: AsyncEngine) -> None:
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        statements.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    await store_cycle(engine, Counts(630, 3190, 520))
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT")]
    assert len(inserts) < 4340 / 100, f"{len(inserts)} INSERT statements for 4340 events"


async def test_reports_read_back_counts_and_cycles(engine: AsyncEngine) -> None:
    cycle_id = await store_cycle(engine, Counts(3, 4, 5))
    async with session_factory(engine)() as session:
        assert await repository.events_by_kind_and_status(session) == {
            ("login", "pending"): 3,
            ("firewall", "pending"): 4,
            ("patch", "pending"): 5,
        }
        assert await repository.analyses_by_severity(session) == {}
        [summary] = await ledger.recent_cycles(session)
    assert summary.id == cycle_id and summary.seed == 5
    assert [(k.kind, k.generated) for k in summary.kinds] == [
        (EventKind.LOGIN, 3),
        (EventKind.FIREWALL, 4),
        (EventKind.PATCH, 5),
    ]


async def test_a_write_on_a_connection_the_server_closed_fails_once_then_gets_a_fresh_one(engine: AsyncEngine) -> None:
    """The outcome writes bypass SQLAlchemy's statement layer, so its disconnect handling never sees their errors:
    a dead pooled connection must still be dropped, or every retry would meet it again."""
    cycle_id = await store_cycle(engine, Counts(2, 0, 0))
    async with session_factory(engine)() as session, session.begin():
        first, second = await queue.claim(session, cycle_id, ME, limit=2)
    async with open_write_engine(engine, pool_size=1) as write_engine:
        writes = session_factory(write_engine)
        assert await queue.record_analysis(writes, first.event_id, "low", 1, "fine", "{}")
        async with engine.connect() as connection:
            cut = await connection.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'cyberevents' AND datname = current_database()"
                )
            )
        assert cut == 1
        with pytest.raises(Exception) as lost:  # noqa: PT011 - whichever error the driver meets first
            await queue.record_analysis(writes, second.event_id, "low", 1, "fine", "{}")
        assert database_unavailable(lost.value)
        assert await queue.record_analysis(writes, second.event_id, "low", 1, "fine", "{}")


async def test_a_claim_counts_nothing_a_recorded_outcome_counts_one_delivery(engine: AsyncEngine) -> None:
    """A claim never sent (claimed ahead, then the cycle stopped) must not use up one of MAX_ATTEMPTS."""
    cycle_id = await store_cycle(engine, Counts(4, 0, 0))
    sessions = session_factory(engine)
    async with hold_liveness(engine) as me, hold_liveness(engine) as other:
        mine = queue.Claimant("me", me.lock, 300, 5)
        async with sessions() as session, session.begin():
            claimed = await queue.claim(session, cycle_id, mine, limit=4)
        failed = await queue.record_failure(sessions, claimed[0].event_id, mine, "agent answered HTTP 400")
        assert failed is EventStatus.FAILED  # sent: counts
        async with sessions() as session, session.begin():
            assert await queue.claim(session, cycle_id, queue.Claimant("other", other.lock, 300, 5), 4) == []
        async with sessions() as session, session.begin():
            assert await queue.release_leases(session, "me") == 3
    async with sessions() as session:
        rows = (
            await session.execute(select(Event.id, Event.delivery_count, Event.lost_deliveries, Event.lease_owner))
        ).all()
    counts = {row.id: (row.delivery_count, row.lost_deliveries) for row in rows}
    assert counts[claimed[0].event_id] == (1, 0)
    assert [counts[delivery.event_id] for delivery in claimed[1:]] == [(0, 0)] * 3
    assert {row.lease_owner for row in rows} == {None}


async def test_a_dead_owners_claims_are_taken_over_at_once_and_counted_as_lost(engine: AsyncEngine) -> None:
    """Its liveness lock went with its connection: no waiting for LEASE_SECONDS; a live owner's claims stay its own."""
    cycle_id = await store_cycle(engine, Counts(4, 0, 0))
    sessions = session_factory(engine)
    async with hold_liveness(engine) as survivor:
        async with hold_liveness(engine) as doomed, sessions() as session, session.begin():
            await queue.claim(session, cycle_id, queue.Claimant("doomed", doomed.lock, 300, 2), limit=2)
        heir = queue.Claimant("heir", survivor.lock, 300, 2)
        async with sessions() as session, session.begin():
            taken = await queue.claim(session, cycle_id, heir, limit=4)
        assert len(taken) == 4
        async with sessions() as session, session.begin():
            assert await queue.claim(session, cycle_id, queue.Claimant("third", 7, 300, 2), limit=4) == []
    async with sessions() as session:
        lost = dict((await session.execute(select(Event.id, Event.lost_deliveries).order_by(Event.id))).all())
    assert list(lost.values()) == [1, 1, 0, 0]


async def test_an_event_whose_deliveries_die_with_their_process_is_dead_lettered_saying_so(engine: AsyncEngine) -> None:
    cycle_id = await store_cycle(engine, Counts(1, 0, 0))
    sessions = session_factory(engine)
    for name in ("first", "second"):  # MAX_ATTEMPTS=2: two owners die holding it
        async with hold_liveness(engine) as doomed, sessions() as session, session.begin():
            claimant = queue.Claimant(name, doomed.lock, 300, 2)
            assert len(await queue.claim(session, cycle_id, claimant, limit=1)) == 1
    async with hold_liveness(engine) as alive, sessions() as session, session.begin():
        survivor = queue.Claimant("survivor", alive.lock, 300, 2)
        assert await queue.claim(session, cycle_id, survivor, limit=1) == []
        assert await queue.undeliverable(session, 2) == 0  # its cycle still runs: its owner may yet finish it
        await session.execute(text("UPDATE cycles SET outcome = 'interrupted'"))
        assert await queue.undeliverable(session, 2) == 1
        assert await queue.dead_letter_undeliverable(session, survivor) == 1
    async with sessions() as session:
        event = (await session.scalars(select(Event))).one()
    assert (event.status, event.lost_deliveries, event.delivery_count) == (EventStatus.DEAD_LETTERED, 2, 0)
    assert event.last_error == (
        "its deliveries were lost 2 times: the processes sending it stopped before recording an outcome"
    )


async def test_a_liveness_lock_lost_with_its_connection_is_taken_again_under_the_same_key(engine: AsyncEngine) -> None:
    held = text(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 AND classid = :space AND objid = :lock"
    )
    async with hold_liveness(engine) as liveness:
        key = {"space": queue.LIVENESS_LOCK_SPACE, "lock": liveness.lock}
        async with engine.connect() as connection:
            [pid] = (await connection.scalars(held, key)).all()
            await connection.scalar(text("SELECT pg_terminate_backend(:pid, 5000)"), {"pid": pid})
            assert (await connection.scalars(held, key)).all() == []  # the others now see this process as dead
        await wait_until(lambda: liveness._driver.is_closed())  # the client learns it from the closed socket
        assert await liveness.ensure()  # before the next claim
        async with engine.connect() as connection:
            assert len((await connection.scalars(held, key)).all()) == 1


async def test_a_stale_owner_changes_nothing_of_an_event_taken_over(engine: AsyncEngine) -> None:
    """It lost its liveness lock's connection, another process took the event over and is delivering it: the stale
    owner's failure is not recorded, and its verdict, should it come second, counts no delivery."""
    cycle_id = await store_cycle(engine, Counts(1, 0, 0))
    sessions = session_factory(engine)
    stale = queue.Claimant("stale", 1, 300, 5)  # a lock nobody holds: as if its connection had been cut
    async with sessions() as session, session.begin():
        [delivery] = await queue.claim(session, cycle_id, stale, limit=1)
    async with hold_liveness(engine) as alive:
        heir = queue.Claimant("heir", alive.lock, 300, 5)
        async with sessions() as session, session.begin():
            assert len(await queue.claim(session, cycle_id, heir, limit=1)) == 1
        assert await queue.record_failure(sessions, delivery.event_id, stale, "agent answered HTTP 400") is None
        async with sessions() as session:
            event = await session.get_one(Event, delivery.event_id)
            assert (event.status, event.lease_owner, event.delivery_count) == (EventStatus.PENDING, "heir", 0)
        assert await queue.record_analysis(sessions, delivery.event_id, "low", 1, "heir's", "{}")
        assert not await queue.record_analysis(sessions, delivery.event_id, "high", 90, "stale's", "{}")
    async with sessions() as session:
        event = await session.get_one(Event, delivery.event_id)
        [verdict] = (await session.scalars(select(EventAnalysis))).all()
    assert (event.status, event.delivery_count, verdict.summary) == (EventStatus.ANALYSED, 1, "heir's")
