"""OCSF out of the real database and onto the wire: `export` and AGENT_PAYLOAD=ocsf, checked against OCSF 1.5.0's own
schema, offline."""

from __future__ import annotations

import gzip
import itertools
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from cyberevents import export, ocsf
from cyberevents.cycle import CycleRequest, run_cycle
from cyberevents.db import open_write_engine, session_factory
from cyberevents.generator import BENIGN, SCENARIOS, Counts
from cyberevents.models import Event, EventAnalysis, EventKind, EventStatus
from cyberevents.progress import Progress
from cyberevents.repository import ExportScope
from cyberevents.resources import open_service
from tests.agents import bundled_rules, recording_agent
from tests.conftest import MakeSettings
from tests.integration.test_scoring import rules_but_every_seventh_fails
from tests.ocsf_schema import ocsf_errors
from tests.support import cli
from tests.unit.test_progress import Terminal

pytestmark = pytest.mark.slow


async def exported(engine: AsyncEngine, path: Path, **options: Any) -> list[dict[str, Any]]:
    """Every record `export` writes to `path` with `options`, read back."""
    async with open_write_engine(engine, pool_size=1) as walks:
        await export.export(session_factory(engine), session_factory(walks), ExportScope(), path, **options)
    written = path.read_bytes()  # noqa: ASYNC240 (a test's file, once the export is done)
    text = gzip.decompress(written) if path.suffix == ".gz" else written
    return [json.loads(line) for line in text.splitlines()]


async def test_ten_thousand_exported_events_of_every_kind_and_scenario_are_valid_ocsf(
    make_settings: MakeSettings, engine: AsyncEngine, tmp_path: Path
) -> None:
    async with (
        recording_agent(respond=rules_but_every_seventh_fails) as agent,
        open_service(make_settings(agent_url=agent.url, agent_max_retries=0, dispatch_workers=50)) as resources,
    ):
        result = await run_cycle(resources, CycleRequest(Counts(2_000, 6_000, 2_000)))
    assert result is not None and result.generated == 10_000
    async with session_factory(engine)() as session:
        uids = {str(uid) for uid in (await session.scalars(select(Event.uid))).all()}
        verdicts = len((await session.scalars(select(EventAnalysis.id))).all())
    assert 0 < verdicts < 10_000  # every seventh event failed: it is exported without a verdict

    records = await exported(engine, tmp_path / "cycle.jsonl.gz", verdicts=True, truth=True)
    assert [error for record in records for error in ocsf_errors(record)] == []
    events = [record for record in records if record["class_uid"] != ocsf.DETECTION_FINDING.uid]
    findings = [record for record in records if record["class_uid"] == ocsf.DETECTION_FINDING.uid]
    assert {event["metadata"]["uid"] for event in events} == uids and len(events) == 10_000
    assert len(findings) == verdicts
    for before, after in itertools.pairwise(records):  # a finding follows the event it judges
        if after["class_uid"] == ocsf.DETECTION_FINDING.uid:
            assert after["finding_info"]["related_events"][0]["uid"] == before["metadata"]["uid"]
    seen = Counter(
        (
            event["class_name"],
            event["unmapped"]["ground_truth"]["scenario"],
            event["unmapped"]["ground_truth"]["difficulty"],
        )
        for event in events
    )
    attacks = {(scenario, difficulty) for _, scenario, difficulty in seen if scenario != BENIGN}
    assert attacks == {(scenario, difficulty) for scenario in SCENARIOS for difficulty in ("evident", "subtle")}
    assert {name for name, scenario, _ in seen if scenario == BENIGN} == {c.caption for c in ocsf.CLASSES.values()}

    plain = await exported(engine, tmp_path / "plain.jsonl")
    assert [error for record in plain for error in ocsf_errors(record)] == []
    assert len(plain) == 10_000 and all("unmapped" not in record for record in plain)
    assert [record["metadata"]["uid"] for record in plain] == [event["metadata"]["uid"] for event in events]


async def test_a_native_export_carries_what_the_agent_was_sent_and_asks_for_the_rest(
    make_settings: MakeSettings, engine: AsyncEngine, tmp_path: Path
) -> None:
    async with (
        recording_agent(respond=rules_but_every_seventh_fails) as agent,
        open_service(make_settings(agent_url=agent.url, agent_max_retries=0)) as resources,
    ):
        result = await run_cycle(resources, CycleRequest(Counts(63, 319, 52)))
    assert result is not None
    sent = {body["event_id"]: body for _, body in agent.requests}
    terminal = Terminal()
    records = await exported(
        engine, tmp_path / "native.jsonl", shape="native", verdicts=True, truth=True, progress=Progress(terminal)
    )
    assert terminal.getvalue().endswith("\r\x1b[2Kexported 434/434 events")  # the live line on a terminal
    assert len(records) == len(sent) == 434
    for record in records:
        assert {key: record[key] for key in ("event_type", "event_id", "event")} == sent[record["event_id"]]
        assert record["cycle_id"] == result.cycle_id
        assert ("verdict" in record) is (record["status"] == EventStatus.ANALYSED)
        assert record["ground_truth"]["difficulty"] in ("evident", "subtle")
    bare = await exported(engine, tmp_path / "bare.jsonl", shape="native")
    assert all(set(record) == {"event_type", "event_id", "uid", "cycle_id", "status", "event"} for record in bare)


def validating_rules(request: dict[str, Any]) -> web.Response:
    """The bundled agent's verdict on an OCSF request, or a 400 naming how it breaks OCSF 1.5.0."""
    if request.get("event_type") not in ocsf.KINDS or ocsf_errors(request["event"]):
        return web.json_response({"error": f"not OCSF: {request.get('event_type')}"}, status=400)
    return bundled_rules(request)


async def test_the_ocsf_payload_is_valid_for_every_event_and_gets_the_same_verdicts(
    make_settings: MakeSettings, engine: AsyncEngine
) -> None:
    async with recording_agent(respond=validating_rules) as agent:
        settings = make_settings(agent_url=agent.url, agent_payload="ocsf", agent_max_retries=0)
        async with open_service(settings) as resources:
            result = await run_cycle(resources, CycleRequest(Counts(63, 319, 52)))
    assert result is not None and result.analysed == result.generated == 434
    assert Counter(body["event_type"] for _, body in agent.requests) == {
        "authentication": 63,
        "network_activity": 319,
        "vulnerability_finding": 52,
    }
    assert all(ocsf_errors(body["event"]) == [] for _, body in agent.requests)

    async def verdicts_of(cycle_id: int) -> list[tuple[str, int, str]]:
        """The cycle's verdicts in the order its events were generated."""
        async with session_factory(engine)() as session:
            rows = await session.execute(
                select(EventAnalysis.severity, EventAnalysis.score, EventAnalysis.summary)
                .join(Event)
                .where(Event.cycle_id == cycle_id)
                .order_by(Event.id)
            )
            return [(severity.value, score, summary) for severity, score, summary in rows]

    async with (  # the same events, natively
        recording_agent(respond=bundled_rules) as native_agent,
        open_service(make_settings(agent_url=native_agent.url)) as resources,
    ):
        again = await run_cycle(resources, CycleRequest(Counts(63, 319, 52), seed=result.seed))
    assert again is not None
    assert {body["event_type"] for _, body in native_agent.requests} == {kind.value for kind in EventKind}
    ocsf_verdicts = await verdicts_of(result.cycle_id)
    assert len(ocsf_verdicts) == 434
    assert await verdicts_of(again.cycle_id) == ocsf_verdicts  # event by event: both payloads read alike


def test_run_once_with_the_ocsf_payload_and_the_bundled_agent_then_export(database_url: URL, tmp_path: Path) -> None:
    env = {"DATABASE_URL": database_url.render_as_string(hide_password=False), "AGENT_PAYLOAD": "ocsf"}
    run = cli("run-once", "--json", env=env)
    assert run.returncode == 0, run.stderr
    kinds = json.loads(run.stdout)["kinds"]
    assert {kind: (counts["analysed"], counts["total"]) for kind, counts in kinds.items()} == {
        "login": (63, 63),
        "firewall": (319, 319),
        "patch": (52, 52),
    }
    output = tmp_path / "cycle.jsonl.gz"
    done = cli("export", "--cycle", "1", "--with-verdicts", "--output", str(output), env=env)
    assert done.returncode == 0, done.stderr
    summary = rf"exported 434 events and 434 verdicts \(OCSF 1\.5\.0\) to {re.escape(str(output))} in [\d.]+s"
    assert re.fullmatch(summary, done.stderr.strip()), done.stderr
    assert not output.with_name(output.name + ".partial").exists()
    with gzip.open(output, "rt") as lines:
        assert sum(1 for _ in lines) == 868
    piped = cli("export", "--cycle", "1-1", "--format", "native", "--output", "-", env=env)
    assert piped.returncode == 0 and len(piped.stdout.splitlines()) == 434
    assert "ground_truth" not in piped.stdout and "verdict" not in piped.stdout


@pytest.mark.parametrize(
    ("args", "code", "complaint"),
    [
        (("--cycle", "5"), 1, "cyberevents: no events in cycle #5"),
        (("--since", "2999-01-01T00:00"), 1, "cyberevents: no events in any cycle started in that time"),
        (
            ("--since", "2026-12-01T10:00+01:00", "--until", "2026-12-01T08:00Z"),
            2,
            "cyberevents: error: --since (2026-12-01T10:00:00+01:00) must come before --until",
        ),
        (
            ("--output", "/nonexistent/x.jsonl"),
            2,
            "cyberevents: error: cannot write /nonexistent/x.jsonl: No such file or directory",
        ),
        (("--format", "xml"), 2, "argument --format: invalid choice: 'xml'"),
    ],
)
def test_an_export_that_cannot_be_made_says_why_in_one_line(
    database_url: URL, args: tuple[str, ...], code: int, complaint: str
) -> None:
    env = {"DATABASE_URL": database_url.render_as_string(hide_password=False)}
    if code != 2 or "--output" in args:
        assert cli("run-once", "--login", "3", "--firewall", "0", "--patch", "0", env=env).returncode == 0
    result = cli("export", *args, env=env)
    assert result.returncode == code
    assert complaint in result.stderr
    assert "Traceback" not in result.stderr
