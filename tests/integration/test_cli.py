from __future__ import annotations

import asyncio
import json
import re
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import pytest
from sqlalchemy.engine import URL

from cyberevents.agent.server import LISTEN_BACKLOG
from cyberevents.eventloop import run
from cyberevents.migrations import head_revision
from tests.support import clean_env, cli, run_tool

pytestmark = pytest.mark.slow  # processes, servers or long waits: out of the fast loop

HEAD = head_revision()

SUBCOMMANDS = ("migrate", "check-db", "generate", "score", "export", "report")


def url_env(url: URL) -> dict[str, str]:
    return {"DATABASE_URL": url.render_as_string(hide_password=False)}


def test_help_and_version() -> None:
    result = cli("--help", env={})
    assert result.returncode == 0
    for name in SUBCOMMANDS:
        assert name in result.stdout
    version = cli("--version", env={})
    assert version.returncode == 0 and version.stdout.startswith("cyberevents ")


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help(name: str) -> None:
    result = cli(name, "--help", env={})
    assert result.returncode == 0
    assert result.stdout.startswith("usage: cyberevents " + name)
    description = result.stdout.split("\n\n")[1]  # what the command does, before its options
    assert description[0].isupper() and not description.startswith(("options", "positional"))


# Runs the command line, then names the heavy libraries it loaded.
LOADED = """
import sys
from cyberevents.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(sorted(name for name in ("sqlalchemy", "aiohttp", "pydantic", "asyncpg") if name in sys.modules))
"""


def test_help_and_version_load_nothing_a_command_needs() -> None:
    """They are answered before anything heavy is imported: the database layer, the HTTP client, the settings."""
    for flags in (["--help"], ["--version"], ["export", "--help"]):
        loaded = run_tool(sys.executable, "-c", LOADED, *flags, env={})
        assert loaded.returncode == 0, loaded.stderr
        assert loaded.stdout.strip().splitlines()[-1] == "[]", flags


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        ({"DISPATCH_WORKERS": "many"}, "DISPATCH_WORKERS='many'"),
        ({"DATABASE_URL": "mysql://root:hunter2@db/app"}, "DATABASE_URL: scheme 'mysql' is not PostgreSQL"),
        (
            {"DATABASE_URL": "postgres://u:hunter2@127.0.0.1:1/app"},
            "database at postgresql+asyncpg://u:***@127.0.0.1:1/app",
        ),
        ({"DATABASE_URL": "postgres://u:hun@ter2@db/app"}, "percent-encode an '@' in the user or password as %40"),
        ({"AGENT_TIMEOUT_SECONDS": "nan"}, "AGENT_TIMEOUT_SECONDS='nan'"),
        ({"SHUTDOWN_GRACE_SECONDS": "inf"}, "SHUTDOWN_GRACE_SECONDS='inf'"),
        ({"LEASE_SECONDS": "1e300"}, "LEASE_SECONDS='1e300'"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(env: dict[str, str], complaint: str) -> None:
    result = cli("check-db", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("cyberevents: error: ") and complaint in lines[0]
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr


def test_check_db_on_an_empty_database_says_to_migrate(empty_database_url: URL) -> None:
    result = cli("check-db", env=url_env(empty_database_url))
    assert result.returncode == 1
    assert f"schema: empty, head is {HEAD}" in result.stdout
    assert "cyberevents migrate" in result.stdout


def test_migrate_then_check_db(empty_database_url: URL) -> None:
    env = url_env(empty_database_url)
    migrated = cli("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.strip() == f"schema upgraded from empty to {HEAD}"
    assert cli("migrate", env=env).stdout.strip() == f"schema already at head ({HEAD})"
    check = cli("check-db", env=env)
    assert check.returncode == 0, check.stderr
    assert f"schema: {HEAD} — at head" in check.stdout
    assert "events: 0 (empty)" in check.stdout
    assert "run ledger: no cycles yet" in check.stdout


def test_embedded_postgres_when_database_url_is_unset(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "data")}
    migrated = cli("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert "using embedded PostgreSQL in " + str(tmp_path / "data" / "pgdata") in migrated.stderr
    assert migrated.stdout.strip() == f"schema upgraded from empty to {HEAD}"
    check = cli("check-db", env=env)
    assert check.returncode == 0, check.stderr
    assert "database: embedded PostgreSQL" in check.stdout
    assert f"schema: {HEAD} — at head" in check.stdout and "events: 0 (empty)" in check.stdout


def test_generate_reproduces_a_cycle_from_its_seed() -> None:
    args = ("generate", "--seed", "99", "--window-end", "2026-11-23T12:00:00+00:00", "--truth")
    first, second = cli(*args, env={}), cli(*args, env={})
    assert first.returncode == 0 and first.stdout == second.stdout
    records = [json.loads(line) for line in first.stdout.splitlines()]
    assert len(records) == 63 + 319 + 52
    assert {r["ground_truth"]["scenario"] for r in records} >= {"brute_force", "port_scan", "unpatched_critical"}
    assert {r["ground_truth"]["difficulty"] for r in records} == {"evident", "subtle"}
    without_truth = cli("generate", "--seed", "99", "--login", "1", "--firewall", "0", "--patch", "0", env={})
    assert "ground_truth" not in without_truth.stdout and len(without_truth.stdout.splitlines()) == 1


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("run-once", "--login", "99999999999"), "argument --login: must be between 0 and 1,000,000, got 99999999999"),
        (("agent", "--latency-ms", "nan"), "argument --latency-ms: must be between 0.0 and 3,600,000.0, got nan"),
        (("agent", "--port", "99999"), "argument --port: must be between 0 and 65,535, got 99999"),
        (("generate", "--seed", "1", "--window-end", "0001-01-01T00:10"), "must be between the years 1900 and 9000"),
        (("generate", "--seed", "1", "--window-minutes", "1e9"), "argument --window-minutes: invalid number value"),
        (("requeue", "--id", "99999999999999999999"), "argument --id: must be between 1 and 9,223,372,036,854,775,807"),
        (("score", "--since", "yesterday"), "argument --since: not an ISO time such as 2026-11-30T12:00:00+00:00"),
        (("score", "--last", "0"), "argument --last: must be between 1 and 100,000, got 0"),
        (("score", "--compare", "1", "x-3"), "argument --compare: not a cycle id or a span of them such as 3-7: 'x-3'"),
        (("run-once", "--seed", "-1"), "argument --seed: must be between 0 and 9,223,372,036,854,775,807, got -1"),
    ],
)
def test_flags_have_caps_and_say_so_in_one_line(args: tuple[str, ...], complaint: str) -> None:
    result = cli(*args, env={})
    assert result.returncode == 2
    assert complaint in result.stderr
    assert "Traceback" not in result.stderr


def test_a_dotenv_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"LOG_LEVEL=\xff\n")
    result = cli("generate", "--seed", "1", env={}, cwd=str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.strip() == "cyberevents: error: .env: not UTF-8 text (invalid start byte at byte 10)"


def test_a_closed_stdout_pipe_ends_quietly() -> None:
    command = f"{sys.executable} -m cyberevents generate --seed 1 --login 5000 | head -n 1"
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command], env=clean_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert json.loads(result.stdout)["event_type"] == "login"


def test_a_health_port_in_use_is_named(database_url: URL) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("run", env=url_env(database_url) | {"HEALTH_PORT": str(port)})
    assert result.returncode == 2
    assert f"HEALTH_HOST:HEALTH_PORT 127.0.0.1:{port}: cannot listen (" in result.stderr
    assert "database" not in result.stderr.lower()


def test_run_once_honours_cycle_timeout_seconds(database_url: URL) -> None:
    """A hung run must not block the next CronJob runs; what it left stays pending for them."""
    with subprocess.Popen(
        [sys.executable, "-m", "cyberevents", "agent", "--port", "0", "--latency-ms", "5000"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=clean_env(),
    ) as agent:  # fmt: skip
        assert agent.stdout is not None
        env = url_env(database_url) | {"AGENT_URL": agent.stdout.readline().strip(), "CYCLE_TIMEOUT_SECONDS": "1"}
        result = cli("run-once", "--json", "--login", "3", "--firewall", "0", "--patch", "0", env=env)
        agent.terminate()
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["outcome"] == "timed_out"


def test_the_reference_agent_holds_a_wide_fan_out() -> None:
    """Started under a soft open-file limit of 100, it raises it to the hard one and holds 300 requests at once; its
    listen backlog is what the kernel allows (net.core.somaxconn), not aiohttp's 128, so that thousands of clients
    connecting together are not dropped to retry after a timeout."""
    command = [sys.executable, "-m", "cyberevents", "agent", "--port", "0", "--latency-ms", "60000"]
    with subprocess.Popen(
        ["prlimit", "--nofile=100:4096", *command], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=clean_env(),
    ) as agent:  # fmt: skip
        try:
            assert agent.stdout is not None
            url = agent.stdout.readline().strip()
            assert url, "the agent did not start (prlimit needs a hard open-file limit of at least 4,096)"
            limits = Path(f"/proc/{agent.pid}/limits").read_text()
            assert re.search(r"Max open files\s+4096\s+4096", limits), limits
            listening = run_tool("ss", "-ltnH", f"sport = :{urlsplit(url).port}", env={}).stdout.split()
            somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
            assert int(listening[2]) == min(LISTEN_BACKLOG, somaxconn)  # a listening socket's Send-Q: its backlog
            run(_hold(url, 300))
        finally:
            agent.kill()  # not its shutdown, which would wait for the requests it holds


async def _hold(url: str, requests: int) -> None:
    """Send `requests` at once and wait until the agent holds every one; then drop them."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        held = [asyncio.create_task(http.post(url, data=b"{}")) for _ in range(requests)]
        stats = url.removesuffix("/analyse") + "/stats"
        async with asyncio.timeout(60):  # the agent holds each for 60 s: all of them are in by then, or never
            while (await (await http.get(stats)).json())["in_flight"] < requests:
                assert not any(request.done() for request in held), "a request ended: refused or cut"
                await asyncio.sleep(0.05)
        for request in held:
            request.cancel()
        await asyncio.gather(*held, return_exceptions=True)
