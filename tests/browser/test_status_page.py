"""The status page in headless Chromium, against a daemon with real data: what it shows equals /status and
`cyberevents score`, it updates when a cycle ends, a hostile summary stays text, it passes axe-core, it fits
1280×800 and 400 px, and it reads without scripts. And the HTML report, opened from its file."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from cyberevents import report
from cyberevents.cycle import CycleRequest, run_cycle
from cyberevents.generator import Counts
from cyberevents.models import CycleScore
from cyberevents.resources import open_service
from cyberevents.scoring import percent
from cyberevents.service import Daemon
from tests.agents import HOSTILE, hostile_rules, recording_agent
from tests.conftest import MakeSettings
from tests.integration.test_daemon import daemon_settings, get, running
from tests.support import cli, wait_until

pytestmark = pytest.mark.slow

COUNTS = Counts(63, 319, 52)


def artifacts(tmp_path: Path) -> Path:
    """Where the screenshots go: TEST_ARTIFACTS (CI keeps it), or the test's own directory."""
    directory = Path(os.environ.get("TEST_ARTIFACTS", tmp_path))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.mark.timeout(300)
async def test_the_status_page_in_a_real_browser(
    make_settings: MakeSettings, engine: AsyncEngine, tmp_path: Path, chromium: str
) -> None:
    async with recording_agent(respond=hostile_rules) as agent:
        settings = daemon_settings(
            make_settings, agent.url, schedule="0 0 1 1 *", run_on_start=True, dispatch_workers=10,
            login_events=COUNTS.login, firewall_events=COUNTS.firewall, patch_events=COUNTS.patch,
        )  # fmt: skip
        daemon = Daemon(settings, asyncio.Event())
        async with running(daemon):

            async def scored(cycle_id: int) -> bool:
                async with engine.connect() as connection:
                    return bool((await connection.execute(select(CycleScore.cycle_id))).scalars().all().count(cycle_id))

            await wait_until(lambda: scored(1), within=60)
            _, status = await get(f"{daemon.health_url}/status")
            card = (await report.kept_scorecards(engine, [1], 1))[1][1]  # what `cyberevents score --cycle 1` shows
            out = artifacts(tmp_path)
            ready_file = tmp_path / "first-read-done"
            spec = {
                "url": f"{daemon.health_url}/",
                "chromium": chromium,
                "screenshot": str(out / "status-page-1280x800.png"),
                "narrow_screenshot": str(out / "status-page-400.png"),
                "ready_file": str(ready_file),
                "wait_for": ["agent_title", "cycle #2"],
                "wait_seconds": 90,
            }
            # The browser in a process of its own: its threads are never this process's, which tests count.
            browser = subprocess.Popen(  # noqa: ASYNC220 (waited for below, the loop free meanwhile)
                [sys.executable, "-m", "tests.browser.drive", json.dumps(spec)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                await wait_until(lambda: ready_file.exists() or browser.poll() is not None, within=120)
                async with open_service(settings) as resources:  # a cycle ends while the page is open
                    assert await run_cycle(resources, CycleRequest(COUNTS)) is not None
                await wait_until(lambda: browser.poll() is not None, within=120)
            finally:
                if browser.poll() is None:
                    browser.kill()
                output, errors = browser.communicate()
    assert browser.returncode == 0, errors[-3000:]
    found = json.loads(output)
    first = found["first"]

    assert found["problems"] == []  # no console error, failed request, HTTP error or dialog
    assert (first["readiness"], first["state"]) == ("ready", "idle")
    assert first["backlog"] == {
        "pending": f"{status['pending_backlog']:,}",
        "failed": "0",
        "dead_lettered": f"{status['dead_lettered']:,}",
    }
    kinds = status["last_cycle"]["kinds"]
    assert first["last_cycle"] == {
        "id": status["last_cycle"]["cycle_id"],
        "kinds": {kind: f"{counts['analysed']}/{counts['total']}" for kind, counts in kinds.items()},
    }
    assert "cycle #1" in first["agent_title"]
    assert first["figures"]["recall"] == percent(card.recall)
    assert first["figures"]["false-positive rate"] == percent(card.false_positive_rate)
    assert first["figures"]["precision"] == percent(card.precision)
    for row in card.scenarios:
        if row.attack:
            assert first["figures"][f"{row.scenario} ({row.kind.value}, {row.difficulty.value})"] == percent(
                row.flag_rate
            )

    assert first["summaries"] and all(summary.startswith(HOSTILE) for summary in first["summaries"])
    assert first["pwned"] is None  # the markup stayed text: no script ran
    assert found["axe"] == []
    assert all(bottom <= 800 for bottom in found["bottoms"].values()), found["bottoms"]  # at a glance, no scroll

    after = found["after"]
    assert "cycle #2" in after["agent_title"] and after["on_time"].startswith("the last 2:")
    assert after["timeline_marks"] == 2
    assert found["narrow"]["scroll_width"] <= 400  # usable at 400 px: nothing wider than the window
    without_scripts = found["without_scripts"].lower()  # as shown: the headings are set in capitals
    assert "backlog" in without_scripts and "recall" in without_scripts and "last cycle here: #1" in without_scripts
    assert (artifacts(tmp_path) / "status-page-1280x800.png").stat().st_size > 10_000


@pytest.mark.timeout(300)
async def test_the_html_report_opens_offline_in_a_real_browser(
    make_settings: MakeSettings, database_url: URL, tmp_path: Path, chromium: str
) -> None:
    async with (
        recording_agent(respond=hostile_rules) as agent,
        open_service(make_settings(agent_url=agent.url)) as resources,
    ):
        for _ in range(2):
            assert await run_cycle(resources, CycleRequest(COUNTS)) is not None
    env = {"DATABASE_URL": database_url.render_as_string(hide_password=False)}
    out = artifacts(tmp_path)
    done = cli("report", "--html", str(out / "report.html"), "--last", "2", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == f"wrote {out / 'report.html'}: 2 cycles, #1 to #2"
    compared = cli("report", "--html", str(out / "compared.html"), "--compare", "1", "2", env=env)
    assert compared.returncode == 0, compared.stderr
    for name in ("report", "compared"):
        spec = {
            "url": (out / f"{name}.html").as_uri(),
            "chromium": chromium,
            "screenshot": str(out / f"{name}-1280x800.png"),
            "narrow_screenshot": str(out / f"{name}-400.png"),
        }
        browser = subprocess.Popen(  # noqa: ASYNC220 (waited for below, the loop free meanwhile)
            [sys.executable, "-m", "tests.browser.drive", json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        await wait_until(lambda: browser.poll() is not None, within=120)  # noqa: B023 (awaited in this iteration)
        output, errors = browser.communicate()
        assert browser.returncode == 0, errors[-3000:]
        found = json.loads(output)
        assert found["problems"] == []  # nothing fetched: it opens offline, from the file alone
        assert found["axe"] == []
        assert found["narrow"]["scroll_width"] <= 400
        expected = "cycle #1 against cycle #2" if name == "compared" else "brute_force (login, evident)"
        assert expected in found["without_scripts"].lower()
