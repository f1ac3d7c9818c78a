"""run-once as users run it: a subprocess, real PostgreSQL, a real agent process, host names."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from cyberevents import __version__
from tests.conftest import AgentProcess
from tests.support import by_host_name, cli, run_tool, threads_of

pytestmark = pytest.mark.slow  # processes, servers or long waits: out of the fast loop


def test_one_os_thread_through_a_whole_cycle_with_host_names(database_url: URL, agent_process: AgentProcess) -> None:
    env = agent_process.env(database_url, DISPATCH_WORKERS="5")
    process = subprocess.Popen(
        [sys.executable, "-m", "cyberevents", "run-once", "--json", "--login", "15", "--firewall", "15",
         "--patch", "15"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    samples = []
    while process.poll() is None:
        if (threads := threads_of(process.pid)) is not None:
            samples.append(threads)
        time.sleep(0.01)
    stdout, stderr = process.communicate()
    assert process.returncode == 0, stderr
    assert len(samples) > 50, "the cycle ended before the thread count could be watched"
    assert set(samples) == {1}
    assert json.loads(stdout)["kinds"]["login"]["analysed"] == 15


def test_run_once_json_is_the_only_stdout_and_exit_0(database_url: URL) -> None:
    result = cli("run-once", "--json", env={"DATABASE_URL": by_host_name(database_url), "GENERATOR_SEED": "7"})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {
        "cycle_id",
        "seed",
        "started_at",
        "outcome",
        "kinds",
        "redelivered",
        "dispatch_seconds",
        "total_seconds",
        "score",
        "score_seconds",
    }
    again = report["redelivered"]
    assert (again["total"], again["analysed"], again["failed"]) == (0, 0, 0) and 0 <= again["seconds"] < 60
    score = report["score"]
    assert score["threshold"] == "high" and 0 <= score["roc_auc"] <= 1
    assert sum(row["answered"] for row in score["scenarios"]) == 434
    assert report["outcome"] == "succeeded"
    assert {kind: counts["total"] for kind, counts in report["kinds"].items()} == {
        "login": 63,
        "firewall": 319,
        "patch": 52,
    }
    assert all(counts["analysed"] == counts["total"] and counts["failed"] == 0 for counts in report["kinds"].values())
    assert all(isinstance(counts["seconds"], float) for counts in report["kinds"].values())
    assert report["total_seconds"] >= report["dispatch_seconds"] > 0


def test_run_once_prints_per_kind_lines_and_keeps_the_old_log_lines(database_url: URL) -> None:
    result = cli(
        "run-once", "--login", "4", "--firewall", "5", "--patch", "6",
        env={"DATABASE_URL": by_host_name(database_url)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("login: 4/4 analysed in ")
    assert lines[1].startswith("firewall: 5/5 analysed in ")
    assert lines[2].startswith("patch: 6/6 analysed in ")
    assert lines[-1].startswith("cycle 1: 15/15 analysed, succeeded; dispatch ")
    assert lines[-2].startswith("score: agent at threshold high: recall ")  # the scorecard, a line per scenario
    assert any(line.startswith("score: benign (login): ") for line in lines)
    check = cli("check-db", env={"DATABASE_URL": by_host_name(database_url)})
    shown = check.stdout.split("scorecard of cycle #1:\n")[1].splitlines()
    assert shown == ["  " + line.removeprefix("score: ") for line in lines if line.startswith("score: ")]
    assert "=== Starting event generation cycle at " in result.stderr
    assert "Login events completed: 4/4 successful in " in result.stderr
    assert "Firewall events completed: 5/5 successful in " in result.stderr
    assert "Patch events completed: 6/6 successful in " in result.stderr
    assert "=== Event generation cycle completed successfully in " in result.stderr
    assert "Scorecard: agent at threshold high: recall " in result.stderr
    assert "AGENT_URL is unset: serving the reference agent in-process at http://127.0.0.1:" in result.stderr


def test_json_logs_for_log_shippers_carry_their_cycle_and_event_as_ecs_fields(database_url: URL) -> None:
    env = {
        "DATABASE_URL": by_host_name(database_url),
        "LOG_FORMAT": "json",
        "AGENT_URL": "http://127.0.0.1:9/analyse",  # nobody listens: every delivery is retried, then fails
        "AGENT_MAX_RETRIES": "1",
        "AGENT_RETRY_BACKOFF_SECONDS": "0.01",
    }
    result = cli("run-once", "--json", "--login", "2", "--firewall", "0", "--patch", "0", env=env)
    assert result.returncode == 1, result.stderr
    cycle = json.loads(result.stdout)
    entries = [json.loads(line) for line in result.stderr.splitlines()]
    assert {"@timestamp", "log.level", "log.logger", "message", "ecs.version"} <= set(entries[0])
    about_the_cycle = [entry for entry in entries if entry["log.logger"] == "cyberevents.cycle"]
    assert about_the_cycle and all(
        (entry["cyberevents.cycle.id"], entry["cyberevents.cycle.seed"]) == (cycle["cycle_id"], cycle["seed"])
        for entry in about_the_cycle
    )
    retries = [entry for entry in entries if entry["message"].startswith("Retry 1 in ")]
    assert len(retries) == 2  # one per event, each naming it
    assert {(entry["cyberevents.event.id"], entry["cyberevents.event.kind"]) for entry in retries} == {
        (1, "login"),
        (2, "login"),
    }
    assert all(entry["log.level"] == "warning" for entry in retries)


def test_run_once_exits_1_when_events_fail_and_records_them(database_url: URL) -> None:
    env = {
        "DATABASE_URL": by_host_name(database_url),
        "AGENT_URL": "http://127.0.0.1:9/analyse",
        "AGENT_RETRY_BACKOFF_SECONDS": "0.01",
    }
    result = cli("run-once", "--json", "--login", "2", "--firewall", "2", "--patch", "2", env=env)
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["outcome"] == "failed"
    assert sum(counts["failed"] for counts in report["kinds"].values()) == 6
    check = cli("check-db", env={"DATABASE_URL": env["DATABASE_URL"]})
    [login] = [line.split() for line in check.stdout.splitlines() if line.strip().startswith("login ")]
    assert login == ["login", "0", "0", "2", "0", "2"]  # pending, analysed, failed, dead-lettered, total


def test_run_once_exits_2_on_database_errors() -> None:
    result = cli("run-once", env={"DATABASE_URL": "postgres://nobody:pw@127.0.0.1:1/none"})
    assert result.returncode == 2
    assert result.stderr.strip().startswith("cyberevents: error: database at postgresql+asyncpg://nobody:***@")
    assert len(result.stderr.strip().splitlines()) == 1


def test_run_once_refuses_a_schema_behind_head_without_auto_migrate(empty_database_url: URL) -> None:
    env = {"DATABASE_URL": by_host_name(empty_database_url), "AUTO_MIGRATE": "false"}
    result = cli("run-once", env=env)
    assert result.returncode == 2
    assert "AUTO_MIGRATE=false and the schema is at empty" in result.stderr


def test_run_once_on_embedded_defaults_analyses_434_events(tmp_path: Path) -> None:
    """The README's first line: no PostgreSQL and no agent started by hand."""
    result = cli("run-once", "--json", env={"DATA_DIR": str(tmp_path / "data")}, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert sum(counts["analysed"] for counts in report["kinds"].values()) == 434
    assert "using embedded PostgreSQL" in result.stderr


def test_score_shows_what_run_once_scored(database_url: URL) -> None:
    env = {"DATABASE_URL": by_host_name(database_url), "GENERATOR_SEED": "7", "AGENT_LABEL": "rules"}
    once = cli("run-once", "--json", env=env)
    assert once.returncode == 0, once.stderr
    scored = json.loads(once.stdout)["score"]
    shown = cli("score", "--json", env=env)
    assert shown.returncode == 0, shown.stderr
    agent = f"rules (cyberevents-reference {__version__})"  # AGENT_LABEL, and the version the agent reported
    assert json.loads(shown.stdout) == {"cycles": [1], "agents": [agent], **scored}
    text = cli("score", "--cycle", "1", env=env).stdout.splitlines()
    assert text[0] == f"cycle #1, agent {agent}:"
    assert text[-1].startswith("  agent at threshold high: recall ")
    again = cli("run-once", "--seed", str(json.loads(once.stdout)["seed"]), env=env)  # the same events
    assert again.returncode == 0, again.stderr
    compared = cli("score", "--compare", "1", "2", env=env).stdout.splitlines()
    rows = [line for line in compared[1:] if "(" in line]
    assert len(rows) == len(scored["scenarios"]) and all(line.endswith("+0.0 pts") for line in rows)
    since = cli("score", "--since", "2000-01-01T00:00:00", "--json", env=env)
    assert json.loads(since.stdout)["cycles"] == [1, 2]
    mixed = cli("score", "--cycle", "1", "--until", "2100-01-01T00:00:00", env=env)
    assert mixed.returncode == 2
    assert (
        mixed.stderr.strip()
        == "cyberevents: error: --since and --until choose cycles by time: not with --cycle, --last or --compare"
    )
    backwards_in_time = cli(
        "score", "--since", "2026-12-01T00:00:00-14:00", "--until", "2026-12-02T00:00+14:00", env=env
    )
    assert backwards_in_time.returncode == 2
    assert "--since (2026-12-01T00:00:00-14:00) must come before --until" in backwards_in_time.stderr
    empty = cli("score", "--since", "2001-01-01T00:00:00", "--until", "2001-01-02T00:00:00", env=env)
    assert (
        empty.returncode == 1 and empty.stderr.strip() == "cyberevents: no scorecard for any cycle started in that time"
    )
    spans = cli("score", "--compare", "1-1", "2-2", env=env).stdout.splitlines()
    assert spans == compared  # a span of one cycle is that cycle
    backwards = cli("score", "--compare", "5-2", "1", env=env)
    assert backwards.returncode == 2 and "a span runs from the lower id to the higher, got 5-2" in backwards.stderr
    missing = cli("score", "--compare", "1", "99", env=env)
    assert missing.returncode == 1
    assert missing.stderr.strip() == "cyberevents: no scorecard for cycle #99"


@pytest.mark.parametrize(
    ("nofile", "said"),
    [
        ("300:4096", "Raised the open-file limit from 300 to 1256 for DISPATCH_WORKERS=500"),
        ("300:300", "DISPATCH_WORKERS=500 needs about 1256 open files, and this process may open 300 (hard limit)"),
    ],
)
def test_the_open_file_limit_is_raised_for_dispatch_workers_or_its_shortfall_said(
    database_url: URL, nofile: str, said: str
) -> None:
    """500 workers and the reference agent in-process: two sockets a request, and room for the rest."""
    env = {"DATABASE_URL": by_host_name(database_url), "DISPATCH_WORKERS": "500"}
    result = run_tool(
        "prlimit", f"--nofile={nofile}", sys.executable, "-m", "cyberevents",
        "run-once", "--login", "2", "--firewall", "0", "--patch", "0", env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert said in result.stderr
