"""Tables of the durable store (SQLAlchemy 2 declarative).

Conventions, so later tables (alerts, notifications, delivery attempts) fit in: integer surrogate
keys, ``DateTime(timezone=True)`` for every timestamp (always written as aware UTC), JSON via
SQLAlchemy's portable ``JSON`` type, natural keys under UNIQUE constraints (``checkin_id``,
``patient_id``), and explicit constraint names (``NAMING``) so Alembic migrations are the same on
PostgreSQL and SQLite.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT on PostgreSQL, INTEGER (the rowid alias, so it autoincrements) on SQLite.
Id = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator):
    """An aware UTC datetime on both backends (SQLite keeps no offset: stored as UTC, read back aware)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: every timestamp in the store is timezone-aware")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


TZ = UTCDateTime()


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Patient(Base):
    """Enrollment: what the unit knows about a patient. ``patient_id`` is a pseudonym."""

    __tablename__ = "patients"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    patient_id: Mapped[str] = mapped_column(String(64), unique=True)
    age_years: Mapped[float | None] = mapped_column(Float)
    therapy: Mapped[str | None] = mapped_column(String(128))
    therapy_start: Mapped[dt.date | None] = mapped_column(Date)
    unit: Mapped[str | None] = mapped_column(String(64))
    checkin_interval_h: Mapped[float | None] = mapped_column(Float)  # expected time between check-ins
    labels: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enrolled_at: Mapped[dt.datetime] = mapped_column(TZ)
    updated_at: Mapped[dt.datetime] = mapped_column(TZ)


class CheckinRow(Base):
    """A valid check-in, once per ``checkin_id`` (the producer's idempotency key)."""

    __tablename__ = "checkins"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    checkin_id: Mapped[str] = mapped_column(String(128), unique=True)
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    recorded_at: Mapped[dt.datetime] = mapped_column(TZ)
    received_at: Mapped[dt.datetime] = mapped_column(TZ)
    stream_id: Mapped[str] = mapped_column(String(64), index=True)
    # the validated check-in, as the producer wrote its JSON text where that is safe (pipeline._document); may hold a note: PHI
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)


class EvaluationRow(Base):
    """The evaluation of one check-in (evaluate.md). ``out_of_order``: recorded before the
    patient's latest evaluation when it arrived, so it never became the patient's latest state
    and no transition was derived from it."""

    __tablename__ = "evaluations"
    __table_args__ = (Index("ix_evaluations_patient_latest", "patient_id", "effective_at", "id"),)  # repo.latest_states
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    checkin_row_id: Mapped[int] = mapped_column(ForeignKey("checkins.id"), unique=True)  # one evaluation per check-in
    checkin_id: Mapped[str] = mapped_column(String(128))  # the check-in's (unique there); not indexed: looked up by nothing
    patient_id: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[dt.datetime] = mapped_column(TZ)
    # The time that orders a patient's evaluations: recorded_at, but never later than the batch
    # that received it, so a check-in from a clock set in the future cannot hide the ones after it.
    effective_at: Mapped[dt.datetime] = mapped_column(TZ)
    evaluated_at: Mapped[dt.datetime] = mapped_column(TZ)
    crs_grade: Mapped[int] = mapped_column(Integer)
    crs_grade_is_minimum: Mapped[bool] = mapped_column(Boolean)
    icans_grade: Mapped[int | None] = mapped_column(Integer)
    icans_floor: Mapped[int] = mapped_column(Integer)
    red_flags: Mapped[list[str]] = mapped_column(JSON)
    news2: Mapped[int | None] = mapped_column(Integer)
    urgency: Mapped[str] = mapped_column(String(16))
    out_of_order: Mapped[bool] = mapped_column(Boolean, default=False)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)  # Evaluation.as_dict() (written by orjson from the Evaluation)


class TransitionRow(Base):
    """A change in a patient's latest state (worker.evaluation.compare), e.g. a worse CRS grade."""

    __tablename__ = "transitions"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    evaluation_id: Mapped[int] = mapped_column(ForeignKey("evaluations.id"), unique=True)
    previous_evaluation_id: Mapped[int | None] = mapped_column(ForeignKey("evaluations.id"))
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    checkin_id: Mapped[str] = mapped_column(String(128))
    kinds: Mapped[list[str]] = mapped_column(JSON)
    urgency: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(TZ)


class RejectedInput(Base):
    """An intake entry that could not be accepted, with the raw bytes and every error.

    Unique on (stream_id, payload_sha256): a redelivered entry is stored once."""

    __tablename__ = "rejected_inputs"
    __table_args__ = (UniqueConstraint("stream_id", "payload_sha256", name="uq_rejected_inputs_entry"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    stream_id: Mapped[str] = mapped_column(String(64))
    payload_sha256: Mapped[str] = mapped_column(String(64))
    checkin_id: Mapped[str | None] = mapped_column(String(128), index=True)
    reason: Mapped[str] = mapped_column(String(32))  # invalid | not_utf8 | not_json | ...
    errors: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    raw_payload: Mapped[bytes] = mapped_column(LargeBinary)
    delivery_count: Mapped[int] = mapped_column(Integer)
    received_at: Mapped[dt.datetime] = mapped_column(TZ)


class DuplicateCheckin(Base):
    """A second submission of a known ``checkin_id`` (a different stream entry): counted, not evaluated."""

    __tablename__ = "duplicate_checkins"
    __table_args__ = (UniqueConstraint("stream_id", "checkin_id", name="uq_duplicate_checkins_entry"),)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    stream_id: Mapped[str] = mapped_column(String(64))
    checkin_id: Mapped[str] = mapped_column(String(128), index=True)
    same_payload: Mapped[bool] = mapped_column(Boolean)
    received_at: Mapped[dt.datetime] = mapped_column(TZ)


class AuditEntry(Base):
    """Append-only record of who changed what (enrollments, rejections, out-of-order arrivals)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(TZ, index=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(128))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
