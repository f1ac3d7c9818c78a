"""Secrets never show: not in logs, errors, check-db or reprs; TLS verification is on unless turned off loudly."""

from __future__ import annotations

from sqlalchemy.engine import URL

from tests.support import cli

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
