"""The status page as the server sends it: escaped, under a strict CSP whose nonce is the page's own, with nothing
fetched from elsewhere, and its refreshable part on its own; `report --html`'s errors."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import aiohttp
from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from cyberevents.models import CycleScore
from cyberevents.service import Daemon
from tests.agents import HOSTILE, hostile_rules, recording_agent
from tests.conftest import MakeSettings
from tests.integration.test_daemon import daemon_settings, running
from tests.support import cli, wait_until


async def fetch(url: str) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        return response.status, dict(response.headers), await response.text()


async def test_the_page_is_escaped_under_a_strict_policy_and_fetches_nothing(
    make_settings: MakeSettings, engine: AsyncEngine
) -> None:
    async with recording_agent(respond=hostile_rules) as agent:
        settings = daemon_settings(
            make_settings, agent.url, schedule="0 0 1 1 *", run_on_start=True, login_events=63, agent_token="tok-page"
        )
        daemon = Daemon(settings, asyncio.Event())
        async with running(daemon):

            async def scored() -> bool:
                async with engine.connect() as connection:
                    return bool((await connection.execute(select(CycleScore.cycle_id))).first())

            await wait_until(scored, within=60)
            status, headers, html = await fetch(f"{daemon.health_url}/")
            part_status, _, part = await fetch(f"{daemon.health_url}/?part=main")
            _, again, _ = await fetch(f"{daemon.health_url}/")

    assert status == 200 and headers["Content-Type"].startswith("text/html")
    policy = headers["Content-Security-Policy"]
    assert policy.startswith("default-src 'none'; ")
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy and "http" not in policy
    nonce = re.search(r"script-src 'nonce-([\w-]+)'", policy)
    assert nonce is not None
    assert again["Content-Security-Policy"] != policy  # a nonce per response
    scripts = re.findall(r"<(script|style)([^>]*)>", html)
    assert scripts and all(f'nonce="{nonce[1]}"' in attributes for _, attributes in scripts)
    assert re.findall(r'(?:src|href)="(?!data:)', html) == []  # nothing fetched from elsewhere
    assert headers["Cache-Control"] == "no-store" and headers["X-Content-Type-Options"] == "nosniff"

    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in html  # the agent's markup, as text
    assert HOSTILE not in html and "tok-page" not in html
    assert part_status == 200 and part.lstrip().startswith('<div class="grid">') and "<html" not in part
    assert 'id="backlog"' in part and "&lt;img src=x" in part


def test_a_report_that_cannot_be_written_says_why_in_one_line(database_url: URL, tmp_path: Path) -> None:
    env = {"DATABASE_URL": database_url.render_as_string(hide_password=False)}
    nothing = cli("report", "--html", str(tmp_path / "r.html"), env=env)
    assert (nothing.returncode, nothing.stderr.strip()) == (1, "no scored cycle yet")
    assert cli("run-once", "--login", "5", "--firewall", "0", "--patch", "0", env=env).returncode == 0
    missing = cli("report", "--html", str(tmp_path / "r.html"), "--compare", "1", "7", env=env)
    assert (missing.returncode, missing.stderr.strip()) == (1, "cyberevents: no scorecard for cycle #7")
    low = env | {"DETECTION_THRESHOLD": "low"}
    assert cli("run-once", "--login", "5", "--firewall", "0", "--patch", "0", env=low).returncode == 0
    mixed = cli("report", "--html", str(tmp_path / "r.html"), "--last", "2", env=env)
    assert mixed.returncode == 1
    assert mixed.stderr.strip().startswith("cyberevents: scorecards at different DETECTION_THRESHOLDs")
    unwritable = cli("report", "--html", "/nonexistent/r.html", "--cycle", "1", env=env)
    assert unwritable.returncode == 2
    assert (
        unwritable.stderr.strip() == "cyberevents: error: cannot write /nonexistent/r.html: No such file or directory"
    )
    assert not list(tmp_path.iterdir())


async def test_the_page_shows_a_running_cycle_and_waits_for_a_database_it_has_not_read(
    make_settings: MakeSettings,
) -> None:
    async with recording_agent(answers=3) as agent:  # three verdicts, then the agent hangs: the cycle runs on
        settings = daemon_settings(make_settings, agent.url, schedule="0 0 1 1 *", run_on_start=True)
        daemon = Daemon(settings, asyncio.Event())
        async with running(daemon):
            await wait_until(lambda: daemon.state.running is not None and daemon.state.running.tally.done == 3)
            _, _, html = await fetch(f"{daemon.health_url}/")
            agent.stopping.set()
    assert 'id="state">running<' in html
    running_table = html.split('<table id="running">')[1].split("</table>")[0]
    assert '<th scope="row">login</th><td class="n">3/10</td>' in running_table

    unreachable = make_settings(database_url="postgresql://nobody@127.0.0.1:1/none", health_port=0)
    daemon = Daemon(unreachable, asyncio.Event())
    async with running(daemon):
        await wait_until(lambda: daemon.health_url is not None)
        status, _, html = await fetch(f"{daemon.health_url}/")
    assert status == 200
    assert "not ready" in html and "Not read yet" in html and 'id="backlog"' not in html
