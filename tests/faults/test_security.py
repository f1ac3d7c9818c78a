"""Secrets never show: not in logs, errors, check-db or reprs; TLS verification is on unless turned off loudly."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import select
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from cyberevents.db import session_factory
from cyberevents.eventloop import run
from cyberevents.models import Event
from tests.support import clean_env, cli

pytestmark = pytest.mark.slow  # processes, servers or long waits: out of the fast loop

PASSWORD, TOKEN = "hunter2-pw-Zq8", "tok-s3cret-Xy7"


def test_secrets_never_reach_the_output(database_url: URL) -> None:
    with_password = database_url.set(password=PASSWORD).render_as_string(hide_password=False)  # trust auth
    env = {"DATABASE_URL": with_password, "AGENT_TOKEN": TOKEN, "LOG_LEVEL": "DEBUG"}
    runs = [
        cli("run-once", "--login", "2", "--firewall", "2", "--patch", "2", env=env),
        cli("check-db", env=env),
        cli("run-once", env=env | {"DATABASE_URL": f"postgres://u:{PASSWORD}@127.0.0.1:1/x"}),
        cli("run-once", env=env | {"DATABASE_URL": f"mysql://u:{PASSWORD}@h/x"}),
        cli("run-once", env=env | {"DISPATCH_WORKERS": "lots"}),
    ]
    assert runs[0].returncode == 0, runs[0].stderr
    assert "DEBUG" in runs[0].stderr  # the most talkative level was really on
    for result in runs:
        assert PASSWORD not in result.stdout + result.stderr
        assert TOKEN not in result.stdout + result.stderr
    assert "***" in runs[1].stdout  # the URL is shown, masked
    assert [result.returncode for result in runs[2:]] == [2, 2, 2]


def test_turning_tls_verification_off_is_logged(database_url: URL) -> None:
    env = {
        "DATABASE_URL": database_url.render_as_string(hide_password=False),
        "AGENT_URL": "https://127.0.0.1:9/analyse",
        "AGENT_TLS_VERIFY": "false",
        "AGENT_MAX_RETRIES": "0",
    }
    result = cli("run-once", "--login", "1", "--firewall", "0", "--patch", "0", env=env)
    assert result.returncode == 1
    assert (
        "AGENT_TLS_VERIFY=false: the agent's certificate is NOT verified (https://127.0.0.1:9/analyse)" in result.stderr
    )


def test_a_token_the_agent_echoes_reaches_no_log_line_and_no_row(database_url: URL) -> None:
    """The agent puts the Authorization header in its error body: logged and stored as the event's reason."""
    with subprocess.Popen(
        [sys.executable, "-m", "tests.agents"], stdout=subprocess.PIPE, text=True, env=clean_env()
    ) as agent:
        assert agent.stdout is not None
        env = {
            "DATABASE_URL": database_url.render_as_string(hide_password=False),
            "AGENT_URL": agent.stdout.readline().strip(),
            "AGENT_TOKEN": TOKEN,
            "LOG_LEVEL": "DEBUG",
            "AGENT_MAX_RETRIES": "1",
            "AGENT_RETRY_BACKOFF_SECONDS": "0.01",
        }
        for log_format in ("text", "json"):
            result = cli(
                "run-once", "--login", "3", "--firewall", "0", "--patch", "0", env=env | {"LOG_FORMAT": log_format}
            )
            assert result.returncode == 1, result.stderr
            assert "you sent Bearer ***" in result.stderr  # the reason is there, the token is not
            assert TOKEN not in result.stdout + result.stderr
        agent.terminate()
    errors = run(last_errors(database_url))
    assert len(errors) == 6
    assert all(error is not None and "you sent Bearer ***" in error for error in errors)


async def last_errors(database_url: URL) -> list[str | None]:
    engine = create_async_engine(database_url)
    try:
        async with session_factory(engine)() as session:
            return list((await session.scalars(select(Event.last_error))).all())
    finally:
        await engine.dispose()
