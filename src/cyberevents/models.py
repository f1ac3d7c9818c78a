"""The schema: one `events` queue table, a detail table per kind, verdicts, ground truth and the cycle ledger."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    Enum,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import INET, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# The vocabulary the tables store, re-exported: most modules take it from here.
from .vocabulary import CycleOutcome as CycleOutcome
from .vocabulary import CycleTrigger as CycleTrigger
from .vocabulary import Difficulty as Difficulty
from .vocabulary import EventKind as EventKind
from .vocabulary import EventStatus as EventStatus
from .vocabulary import Severity as Severity

IPAddress = IPv4Address | IPv6Address
EVENTS_FILLFACTOR = 80


def _text_enum(enum_type: type[enum.StrEnum], name: str) -> Enum:
    """Store an enum as VARCHAR with a CHECK constraint: adding a value later is a cheap migration."""
    return Enum(
        enum_type,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda members: [member.value for member in members],
    )


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "ck": "ck_%(table_name)s_%(constraint_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Cycle(Base):
    """The run ledger: every cycle, and every schedule slot's fate, with when, why and from which seed."""

    __tablename__ = "cycles"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    # The schedule slot a row answers for; unique, so no slot is ever run (or recorded) twice.
    slot_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), unique=True)
    trigger: Mapped[CycleTrigger] = mapped_column(
        _text_enum(CycleTrigger, "cycle_trigger"), server_default=CycleTrigger.ONCE.value
    )
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_seconds: Mapped[float | None]
    seed: Mapped[int | None] = mapped_column(BigInteger)
    outcome: Mapped[CycleOutcome] = mapped_column(_text_enum(CycleOutcome, "cycle_outcome"))
    reason: Mapped[str | None] = mapped_column(Text)


class CycleStat(Base):
    """Per-kind counts of one cycle, kept even after retention prunes the events themselves."""

    __tablename__ = "cycle_stats"

    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"), primary_key=True)
    kind: Mapped[EventKind] = mapped_column(_text_enum(EventKind, "event_kind"), primary_key=True)
    generated: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    analysed: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    failed: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    dispatch_seconds: Mapped[float | None]


class CycleScore(Base):
    """The counts behind a cycle's scorecard (scoring.to_stored), kept after retention prunes the events, and
    brought up to date when a later cycle or another replica delivers some of them."""

    __tablename__ = "cycle_scores"

    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"), primary_key=True)
    threshold: Mapped[Severity] = mapped_column(_text_enum(Severity, "score_threshold"))
    agent_label: Mapped[str] = mapped_column(Text)
    counts: Mapped[dict[str, Any]] = mapped_column(JSONB)
    scored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Event(Base):
    """What every event shares, and its delivery state: the dispatcher's queue."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_kind_occurred_at", "kind", "occurred_at"),
        Index("ix_events_cycle_id_status", "cycle_id", "status"),
        # What both claims walk, in claim order: a cycle's own pending events, earlier cycles' leftovers.
        Index(
            "ix_events_claimable", "cycle_id", "id", "status", postgresql_where=text("status IN ('pending', 'failed')")
        ),
        CheckConstraint("delivery_count >= 0", name="delivery_count_non_negative"),
        CheckConstraint("lost_deliveries >= 0", name="lost_deliveries_non_negative"),
        # Room on each page for the row's next version: a claim changes only unindexed lease columns, and with
        # space beside the row PostgreSQL updates it in place (HOT) instead of adding an entry to every index.
        {"postgresql_with": {"fillfactor": EVENTS_FILLFACTOR}},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    uid: Mapped[uuid.UUID] = mapped_column(UUID, unique=True)
    kind: Mapped[EventKind] = mapped_column(_text_enum(EventKind, "event_kind"))
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id"))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    status: Mapped[EventStatus] = mapped_column(
        _text_enum(EventStatus, "event_status"), server_default=EventStatus.PENDING.value
    )
    delivery_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))  # deliveries with an outcome
    # Claims taken over from an owner that never recorded an outcome (it died, or its lease expired).
    lost_deliveries: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))  # HTTP requests, retries included
    last_error: Mapped[str | None] = mapped_column(Text)
    # A claim: which dispatcher holds the event, until when, and the session advisory lock that proves it alive.
    # A claim whose lease expired, or whose owner's lock is gone, may be taken over.
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    lease_lock: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


def _event_id() -> Mapped[int]:
    return mapped_column(ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)


class LoginEvent(Base):
    __tablename__ = "login_events"

    event_id: Mapped[int] = _event_id()
    username: Mapped[str] = mapped_column(String(64), index=True)
    privileged: Mapped[bool]
    src_ip: Mapped[IPAddress] = mapped_column(INET, index=True)
    country: Mapped[str] = mapped_column(String(2))
    success: Mapped[bool]
    auth_method: Mapped[str] = mapped_column(String(32))
    user_agent: Mapped[str] = mapped_column(Text)


class FirewallEvent(Base):
    __tablename__ = "firewall_events"

    event_id: Mapped[int] = _event_id()
    src_ip: Mapped[IPAddress] = mapped_column(INET, index=True)
    src_port: Mapped[int]
    dst_ip: Mapped[IPAddress] = mapped_column(INET, index=True)
    dst_port: Mapped[int] = mapped_column(index=True)
    protocol: Mapped[str] = mapped_column(String(8))
    direction: Mapped[str] = mapped_column(String(8))
    action: Mapped[str] = mapped_column(String(8), index=True)
    rule_name: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)


class PatchEvent(Base):
    __tablename__ = "patch_events"

    event_id: Mapped[int] = _event_id()
    host: Mapped[str] = mapped_column(String(64), index=True)
    package: Mapped[str] = mapped_column(String(64))
    installed_version: Mapped[str] = mapped_column(String(32))
    fixed_version: Mapped[str] = mapped_column(String(32))
    cve_id: Mapped[str] = mapped_column(String(20), index=True)
    cvss: Mapped[float] = mapped_column(Numeric(3, 1, asdecimal=False))
    state: Mapped[str] = mapped_column(String(16), index=True)


class GroundTruth(Base):
    """Which scenario produced an event; never sent to the agent, kept to score its verdicts."""

    __tablename__ = "ground_truth"

    event_id: Mapped[int] = _event_id()
    scenario: Mapped[str] = mapped_column(String(32), index=True)
    campaign: Mapped[str | None] = mapped_column(String(64))
    difficulty: Mapped[Difficulty] = mapped_column(
        _text_enum(Difficulty, "difficulty"), server_default=Difficulty.EVIDENT.value
    )


class EventAnalysis(Base):
    """The agent's verdict: at most one per event, enforced by the database."""

    __tablename__ = "event_analyses"
    __table_args__ = (CheckConstraint("score BETWEEN 0 AND 100", name="score_range"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"), unique=True)
    severity: Mapped[Severity] = mapped_column(_text_enum(Severity, "severity"), index=True)
    score: Mapped[int] = mapped_column(SmallInteger)
    summary: Mapped[str] = mapped_column(Text)
    raw: Mapped[dict[str, Any]] = mapped_column(JSONB)
    analysed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


DETAIL_TABLES: dict[EventKind, Table] = {
    EventKind.LOGIN: Base.metadata.tables[LoginEvent.__tablename__],
    EventKind.FIREWALL: Base.metadata.tables[FirewallEvent.__tablename__],
    EventKind.PATCH: Base.metadata.tables[PatchEvent.__tablename__],
}
