"""Configuration from the environment and `.env`, validated once at start-up and passed down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs
from pydantic import (
    AnyHttpUrl,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from .generator import DEFAULT_SUBTLE_SHARE
from .protocol import Shape
from .schedule import expand, next_slot
from .vocabulary import MAX_EVENTS_PER_KIND, Severity

# libpq query options people paste, and the asyncpg connect() argument each becomes.
_LIBPQ_OPTIONS = {"sslmode": "ssl", "connect_timeout": "timeout", "host": "host", "port": "port"}
_SSL_MODES = {"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}


HOUR, DAY = 3600, 86_400


class ConfigError(Exception):
    """A setting is missing or invalid; the message is one line meant for the user."""


def to_asyncpg_url(raw: str) -> URL:
    """Turn the PostgreSQL URL forms people paste into SQLAlchemy's asyncpg form."""
    if raw.partition("?")[0].count("@") > 1:  # the tail of the password would be read as the host: show none of it
        raise ValueError("more than one '@' before the host: percent-encode an '@' in the user or password as %40")
    try:
        url = make_url(raw.strip())
    except ArgumentError:
        raise ValueError("not a URL; expected postgresql://user:password@host:5432/dbname") from None
    if url.get_backend_name() not in ("postgres", "postgresql"):  # any driver suffix: asyncpg replaces it
        raise ValueError(f"scheme {url.drivername!r} is not PostgreSQL; use postgresql://")
    query: dict[str, str] = {}
    for key, value in url.query.items():
        if not isinstance(value, str):
            raise ValueError(f"option {key!r} is given more than once")
        if key not in _LIBPQ_OPTIONS:
            allowed = ", ".join(sorted(_LIBPQ_OPTIONS))
            raise ValueError(f"option {key!r} is not supported (allowed: {allowed})")
        if key == "sslmode" and value not in _SSL_MODES:
            raise ValueError(f"sslmode {value!r} is not one of {', '.join(sorted(_SSL_MODES))}")
        if key == "connect_timeout" and not value.isdigit():
            raise ValueError(f"connect_timeout {value!r} is not a whole number of seconds")
        query[_LIBPQ_OPTIONS[key]] = value
    if not url.database:
        raise ValueError("no database name; expected postgresql://user:password@host:5432/dbname")
    return url.set(drivername="postgresql+asyncpg", query=query)


class Settings(BaseSettings):
    """Every setting cyberevents reads; names are unprefixed, as users of the old system know them."""

    # No NaN or infinity: every duration here ends up as a wait, and one such wait stops the loop's timers. An empty
    # value (`AGENT_TOKEN=` in .env or the environment) means unset, never an empty string.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", frozen=True, allow_inf_nan=False, env_ignore_empty=True
    )

    database_url: SecretStr | None = Field(
        default=None, description="PostgreSQL URL; unset starts an embedded server in DATA_DIR"
    )
    database_url_file: Path | None = Field(
        default=None, description="A file holding DATABASE_URL, as Kubernetes and Compose mount secrets"
    )
    agent_url: AnyHttpUrl | None = Field(
        default=None, description="Analysis agent endpoint; unset serves the bundled reference agent"
    )
    agent_token: SecretStr | None = Field(default=None, description="Bearer token sent to the agent")
    agent_token_file: Path | None = Field(default=None, description="A file holding AGENT_TOKEN")
    agent_timeout_seconds: float = Field(default=30.0, gt=0, le=HOUR, description="Timeout of one agent request")
    agent_max_retries: int = Field(
        default=3, ge=0, le=100, description="Retries of a transient agent failure within one delivery"
    )
    agent_retry_backoff_seconds: float = Field(
        default=0.5, gt=0, le=60, description="First retry backoff; doubles each retry, with jitter, up to 30 s"
    )
    agent_circuit_cooldown_seconds: float = Field(
        default=30.0, gt=0, le=HOUR, description="How long dispatch pauses when most agent calls fail"
    )
    agent_tls_verify: bool = Field(default=True, description="Verify HTTPS agents' certificates")
    max_attempts: int = Field(
        default=5, ge=1, le=1000, description="Deliveries an event gets before it is dead-lettered"
    )
    detection_threshold: Severity = Field(
        default=Severity.HIGH, description="A verdict at or above this severity flags its event, in the scorecard"
    )
    agent_payload: Shape = Field(
        default="native", description="The request's `event`: cyberevents' own fields, or the OCSF 1.5.0 event"
    )
    agent_label: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="Names the agent in scorecards; unset: its URL's host",
    )
    retention_days: float = Field(
        default=30.0,
        ge=0,
        le=36_500,
        description="Prune analysed events and ledger rows older than this; 0 keeps everything",
    )
    dispatch_workers: int = Field(default=10, ge=1, le=10_000, description="Agent requests in flight")
    lease_seconds: float = Field(
        default=300.0,
        gt=0,
        le=DAY,
        description="How long a claimed event stays reserved for the process that claimed it",
    )
    login_events: int = Field(default=63, ge=0, le=MAX_EVENTS_PER_KIND, description="Login events per cycle")
    firewall_events: int = Field(default=319, ge=0, le=MAX_EVENTS_PER_KIND, description="Firewall events per cycle")
    patch_events: int = Field(default=52, ge=0, le=MAX_EVENTS_PER_KIND, description="Patch events per cycle")
    generator_seed: int | None = Field(
        default=None, ge=0, description="Base seed; unset draws a fresh one per cycle (always logged)"
    )
    subtle_share: float = Field(
        default=DEFAULT_SUBTLE_SHARE,
        ge=0,
        le=1,
        description="Share of each attack scenario's events in its subtle form",
    )
    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("cyberevents")),
        description="Where the embedded PostgreSQL keeps its data",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level")
    log_format: Literal["text", "json"] = Field(default="text", description="`json` for log shippers")
    schedule: str = Field(
        default="*/30 * * * *", description="Cron expression of the cycles (a 6th field, first, adds seconds)"
    )
    schedule_tz: str = Field(default="UTC", description="IANA time zone the schedule is read in")
    run_on_start: bool = Field(default=True, description="Run a cycle at start unless one ran since the latest slot")
    misfire_grace_seconds: float = Field(
        default=300.0,
        ge=0,
        le=DAY,
        description="How late a catch-up cycle may start before its slot is skipped instead",
    )
    cycle_timeout_seconds: float | None = Field(
        default=None,
        gt=0,
        le=7 * DAY,
        description="Cut a cycle off after this long; unset: 90% of the schedule's interval",
    )
    shutdown_grace_seconds: float = Field(
        default=30.0, ge=0, le=HOUR, description="On SIGTERM, how long in-flight dispatches get to finish"
    )
    health_host: str = Field(default="127.0.0.1", description="Address of the health server")
    health_port: int = Field(default=8080, ge=0, le=65535, description="Port of the health server (0: any free)")
    auto_migrate: bool = Field(default=True, description="Bring the schema to head before running cycles")

    @model_validator(mode="before")
    @classmethod
    def _secrets_from_files(cls, values: object) -> object:
        """DATABASE_URL_FILE and AGENT_TOKEN_FILE: the secret is the file's text, without its final line break."""
        if not isinstance(values, dict):
            return values
        for name in _SECRET_FIELDS:
            if not (path := values.get(f"{name}_file")):
                continue
            if values.get(name):
                raise ValueError(f"{name.upper()} and {name.upper()}_FILE are both set: keep one")
            values[name] = _secret_from(f"{name.upper()}_FILE", Path(path))
        return values

    @field_validator("database_url", mode="before")
    @classmethod
    def _normalise_database_url(cls, value: object) -> object:
        raw = value.get_secret_value() if isinstance(value, SecretStr) else value
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        if not isinstance(raw, str):
            raise ValueError("must be a string")
        return to_asyncpg_url(raw).render_as_string(hide_password=False)

    @field_validator("schedule")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        """Debian's syntax and nicknames; cronsim's extensions and schedules that never run are refused."""
        try:
            expand(value)
        except ValueError as exc:
            raise ValueError(f"{exc}; e.g. '*/30 * * * *', '@daily' or, with seconds first, '*/10 * * * * *'") from None
        return value

    @field_validator("schedule_tz")
    @classmethod
    def _valid_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not an IANA time zone; e.g. UTC, Europe/Paris, America/New_York") from None
        return value

    @field_validator("agent_label")
    @classmethod
    def _one_printable_line(cls, value: str | None) -> str | None:
        if value is not None and not value.isprintable():
            raise ValueError("must be one line of printable text: it is printed and logged")
        return value

    @property
    def agent_name(self) -> str:
        """Who the scorecards judge: AGENT_LABEL, or the agent URL's host."""
        if self.agent_label is not None:
            return self.agent_label
        return self.agent_url.host or str(self.agent_url) if self.agent_url else "bundled reference agent"

    @field_validator("log_level", "log_format", "detection_threshold", "agent_payload", mode="before")
    @classmethod
    def _normalise_case(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        return value.strip().upper() if info.field_name == "log_level" else value.strip().lower()

    @model_validator(mode="after")
    def _lease_outlasts_a_request(self) -> Settings:
        if self.lease_seconds <= self.agent_timeout_seconds:
            raise ValueError(
                f"LEASE_SECONDS ({self.lease_seconds:g}) must exceed AGENT_TIMEOUT_SECONDS "
                f"({self.agent_timeout_seconds:g}), or another dispatcher could take over an event mid-request"
            )
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.schedule_tz)

    def cycle_timeout(self) -> timedelta:
        """CYCLE_TIMEOUT_SECONDS, or 90% of the gap between the schedule's next two slots (bounded arithmetic)."""
        if self.cycle_timeout_seconds is not None:
            return timedelta(seconds=self.cycle_timeout_seconds)
        first = next_slot(self.schedule, self.zone, datetime.now(UTC))
        return (next_slot(self.schedule, self.zone, first) - first) * 0.9

    def secret_values(self) -> list[str]:
        """The secrets no log line or stored text may show: the agent token and the database password."""
        password = self.sqlalchemy_url.password if self.sqlalchemy_url is not None else None
        token = self.agent_token.get_secret_value() if self.agent_token is not None else None
        return [secret for secret in (token, password) if secret]

    @property
    def sqlalchemy_url(self) -> URL | None:
        """The configured database as a SQLAlchemy URL, or None for the embedded server."""
        return None if self.database_url is None else make_url(self.database_url.get_secret_value())


_SECRET_FIELDS = ("database_url", "agent_token")
# A secret is a line, not a document: a larger file (or /dev/zero) is a mistake, refused before it is read whole.
MAX_SECRET_BYTES = 64 * 1024


def _secret_from(setting: str, path: Path) -> str:
    """The secret a *_FILE setting names: the file's text without its final line break; an empty one is refused,
    not taken for unset (an empty DATABASE_URL would start the embedded server instead of failing)."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_SECRET_BYTES + 1)
        text = data.decode("utf-8").removesuffix("\n").removesuffix("\r")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"{setting}={path}: cannot read it ({reason or exc})") from None
    if len(data) > MAX_SECRET_BYTES:
        raise ValueError(f"{setting}={path}: larger than {MAX_SECRET_BYTES // 1024} KiB, not a secret")
    if not text.strip():
        raise ValueError(f"{setting}={path}: the file is empty")
    return text


def load_settings(**overrides: object) -> Settings:
    """Build Settings, turning validation errors into one line naming each variable and what is allowed."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except UnicodeDecodeError as exc:
        raise ConfigError(f".env: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f".env: cannot read it ({exc.strerror or exc})") from None
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            if not error["loc"]:  # a rule across several settings: its message names them
                problems.append(error["msg"].removeprefix("Value error, "))
                continue
            name = str(error["loc"][0])
            shown = "" if name in _SECRET_FIELDS else f"={error['input']!r}"
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{name.upper()}{shown}: {message}")
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None
