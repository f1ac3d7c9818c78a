from __future__ import annotations

from pathlib import Path

import pytest

from cyberevents.models import Severity
from cyberevents.settings import ConfigError, Settings, load_settings, to_asyncpg_url


@pytest.mark.parametrize(
    ("pasted", "expected"),
    [
        ("postgres://u:pw@db:5432/app", "postgresql+asyncpg://u:pw@db:5432/app"),
        ("postgresql://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("postgresql+psycopg2://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("postgresql+asyncpg://u@db/app", "postgresql+asyncpg://u@db/app"),
        ("postgres://u@db/app?sslmode=require", "postgresql+asyncpg://u@db/app?ssl=require"),
        ("postgres://u@db/app?connect_timeout=5", "postgresql+asyncpg://u@db/app?timeout=5"),
        ("postgresql:///app?host=/var/run/postgresql", "postgresql+asyncpg:///app?host=%2Fvar%2Frun%2Fpostgresql"),
        ("  postgres://u@db/app  ", "postgresql+asyncpg://u@db/app"),
    ],
)
def test_database_urls_people_paste_become_asyncpg_urls(pasted: str, expected: str) -> None:
    assert to_asyncpg_url(pasted).render_as_string(hide_password=False) == expected


@pytest.mark.parametrize(
    ("pasted", "complaint"),
    [
        ("mysql://u@db/app", "scheme 'mysql' is not PostgreSQL"),
        ("not a url", "not a URL"),
        ("postgres://u@db", "no database name"),
        ("postgres://u@db/app?sslmode=sometimes", "sslmode 'sometimes' is not one of"),
        ("postgres://u@db/app?application_name=x", "option 'application_name' is not supported"),
        ("postgres://u@db/app?connect_timeout=soon", "connect_timeout 'soon' is not a whole number"),
    ],
)
def test_bad_database_urls_are_refused_with_the_reason(pasted: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        to_asyncpg_url(pasted)


def test_defaults_match_the_old_system(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "DISPATCH_WORKERS", "LOGIN_EVENTS", "FIREWALL_EVENTS", "PATCH_EVENTS"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)
    assert (settings.login_events, settings.firewall_events, settings.patch_events) == (63, 319, 52)
    assert settings.dispatch_workers == 10
    assert settings.database_url is None
    assert settings.auto_migrate is True


def test_settings_come_from_unprefixed_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISPATCH_WORKERS", "25")
    monkeypatch.setenv("DATABASE_URL", "postgres://u:pw@db/app")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("DETECTION_THRESHOLD", " Critical ")  # as pasted
    monkeypatch.setenv("AGENT_PAYLOAD", "OCSF ")
    settings = load_settings(_env_file=None)
    assert settings.agent_payload == "ocsf"
    assert settings.dispatch_workers == 25
    assert settings.log_level == "DEBUG"
    assert settings.detection_threshold is Severity.CRITICAL
    assert settings.sqlalchemy_url is not None
    assert settings.sqlalchemy_url.drivername == "postgresql+asyncpg"


def test_settings_are_read_from_a_dotenv_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PATCH_EVENTS", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("PATCH_EVENTS=7\n")
    assert load_settings(_env_file=env_file).patch_events == 7


@pytest.mark.parametrize(
    ("name", "value", "complaint"),
    [
        ("DISPATCH_WORKERS", "abc", "DISPATCH_WORKERS='abc': Input should be a valid integer"),
        ("DISPATCH_WORKERS", "0", "DISPATCH_WORKERS='0': Input should be greater than or equal to 1"),
        ("LOGIN_EVENTS", "-1", "LOGIN_EVENTS='-1': Input should be greater than or equal to 0"),
        ("AGENT_URL", "ftp://agent", "AGENT_URL='ftp://agent': URL scheme should be 'http' or 'https'"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL='LOUD': Input should be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'"),
        ("AUTO_MIGRATE", "perhaps", "AUTO_MIGRATE='perhaps': Input should be a valid boolean"),
        (
            "AGENT_LABEL",
            "v1\nforged line",
            "AGENT_LABEL='v1\\nforged line': must be one line of printable",
        ),
        ("AGENT_LABEL", "v1\u2028forged", "AGENT_LABEL='v1\\u2028forged': must be one line of printable"),
        (
            "DETECTION_THRESHOLD",
            "severe",
            "DETECTION_THRESHOLD='severe': Input should be 'low', 'medium', 'high' or 'critical'",
        ),
        ("DATABASE_URL", "mysql://root:hunter2@db/app", "DATABASE_URL: scheme 'mysql' is not PostgreSQL"),
        ("AGENT_PAYLOAD", "json", "AGENT_PAYLOAD='json': Input should be 'native' or 'ocsf'"),
    ],
)
def test_a_bad_value_gets_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, complaint: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(_env_file=None)
    message = str(caught.value)
    assert complaint in message
    assert "\n" not in message
    assert "hunter2" not in message


def test_the_lease_must_outlast_an_agent_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_TIMEOUT_SECONDS", "60")
    monkeypatch.setenv("LEASE_SECONDS", "30")
    with pytest.raises(ConfigError, match=r"LEASE_SECONDS \(30\) must exceed AGENT_TIMEOUT_SECONDS \(60\)"):
        load_settings(_env_file=None)


def test_secrets_never_show_in_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://u:hunter2@db/app")
    monkeypatch.setenv("AGENT_TOKEN", "tok-s3cret")
    settings = load_settings(_env_file=None)
    assert "hunter2" not in repr(settings) and "tok-s3cret" not in repr(settings)
    assert "hunter2" not in str(settings) and "tok-s3cret" not in str(settings)


def test_secrets_come_from_files_as_mounted_and_an_empty_value_means_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "database_url").write_text("postgres://u:dbpa55@db:5432/app\n")  # as `echo … > file` leaves it
    (tmp_path / "agent_token").write_text("tok-from-file\n")
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path / "database_url"))
    monkeypatch.setenv("AGENT_TOKEN_FILE", str(tmp_path / "agent_token"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("AGENT_TOKEN", "")  # empty: unset, not an empty token
    monkeypatch.setenv("GENERATOR_SEED", "")
    settings = load_settings(_env_file=None)
    assert settings.sqlalchemy_url is not None and settings.sqlalchemy_url.password == "dbpa55"
    assert settings.agent_token is not None and settings.agent_token.get_secret_value() == "tok-from-file"
    assert settings.secret_values() == ["tok-from-file", "dbpa55"]  # redacted from every log line, as ever
    assert settings.generator_seed is None

    monkeypatch.setenv("AGENT_TOKEN", "tok-env")
    with pytest.raises(ConfigError, match=r"^invalid configuration: AGENT_TOKEN and AGENT_TOKEN_FILE are both set"):
        load_settings(_env_file=None)
    monkeypatch.delenv("AGENT_TOKEN")
    monkeypatch.setenv("AGENT_TOKEN_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError) as refused:
        load_settings(_env_file=None)
    assert str(refused.value) == (
        f"invalid configuration: AGENT_TOKEN_FILE={tmp_path / 'missing'}: cannot read it (No such file or directory)"
    )


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        (b"", "the file is empty"),  # not taken for unset: that would start the embedded server
        (b"\n", "the file is empty"),
        (b"x" * (64 * 1024 + 1), "larger than 64 KiB, not a secret"),
        (b"\xff\xfe", "cannot read it (not UTF-8 text)"),
    ],
)
def test_a_secret_file_that_holds_no_secret_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, complaint: str
) -> None:
    (tmp_path / "database_url").write_bytes(content)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL_FILE", str(tmp_path / "database_url"))
    with pytest.raises(ConfigError) as refused:
        load_settings(_env_file=None)
    assert str(refused.value) == f"invalid configuration: DATABASE_URL_FILE={tmp_path / 'database_url'}: {complaint}"


def test_a_secret_file_that_never_ends_is_refused_after_64_kib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_TOKEN_FILE", "/dev/zero")
    with pytest.raises(ConfigError, match=r"AGENT_TOKEN_FILE=/dev/zero: larger than 64 KiB, not a secret$"):
        load_settings(_env_file=None)
