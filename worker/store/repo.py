"""Queries and writes on the store, shared by the pipeline and the CLI.

Writes that must be idempotent use ``insert_ignore`` (INSERT ... ON CONFLICT DO NOTHING RETURNING
id on both PostgreSQL and SQLite): a replayed stream entry changes nothing, and the caller learns
whether its row is new from the returned id.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, func, select, text
from sqlalchemy.orm import Session

from worker.domain import PatientContext, Urgency
from worker.store.models import (
    AuditEntry,
    CheckinRow,
    DuplicateCheckin,
    EvaluationRow,
    Patient,
    RejectedInput,
    TransitionRow,
)


def insert_ignore(session: Session, table: Table, values: dict[str, Any], conflict: Sequence[str]) -> int | None:
    """Insert one row unless it conflicts on ``conflict``; the new row's id, or None when it existed."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only the two supported backends
        raise RuntimeError(f"unsupported database backend {dialect!r}")
    stmt = insert(table).values(**values).on_conflict_do_nothing(index_elements=list(conflict))
    return session.execute(stmt.returning(table.c.id)).scalar_one_or_none()


def lock_patients(session: Session, patient_ids: Iterable[str]) -> None:
    """Serialise concurrent batches touching the same patient (PostgreSQL advisory transaction
    locks, taken in sorted order so two batches cannot deadlock). SQLite's BEGIN IMMEDIATE already
    serialises every writer."""
    if session.get_bind().dialect.name != "postgresql":
        return
    for pid in sorted(set(patient_ids)):
        session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:p, 0))"), {"p": pid})


def audit(session: Session, *, at: dt.datetime, actor: str, action: str, subject: str | None, **detail: Any) -> None:
    session.add(AuditEntry(at=at, actor=actor, action=action, subject=subject, detail=detail))


def entry_is_stored(session: Session, stream_id: str) -> bool:
    """Whether a stream entry's effects are committed already (as a check-in, a duplicate or a rejection)."""
    for model in (CheckinRow, DuplicateCheckin, RejectedInput):
        if session.scalar(select(model.id).where(model.stream_id == stream_id).limit(1)) is not None:
            return True
    return False


# -- patients ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Enrollment:
    patient_id: str
    age_years: float | None = None
    therapy: str | None = None
    therapy_start: dt.date | None = None
    unit: str | None = None
    checkin_interval_h: float | None = None
    labels: dict[str, str] | None = None


def enroll(session: Session, e: Enrollment, *, now: dt.datetime, actor: str) -> bool:
    """Create or update a patient's enrollment; True when the patient is new. Audited."""
    row = session.scalars(select(Patient).where(Patient.patient_id == e.patient_id)).one_or_none()
    values = dict(
        age_years=e.age_years,
        therapy=e.therapy,
        therapy_start=e.therapy_start,
        unit=e.unit,
        checkin_interval_h=e.checkin_interval_h,
        labels=dict(e.labels or {}),
    )
    created = row is None
    if row is None:
        row = Patient(patient_id=e.patient_id, enrolled_at=now, updated_at=now, **values)
        session.add(row)
    else:
        for key, value in values.items():
            setattr(row, key, value)
        row.updated_at = now
    audit(session, at=now, actor=actor, action="patient.enrolled" if created else "patient.updated",
          subject=e.patient_id, fields=sorted(k for k, v in values.items() if v not in (None, {})))
    return created


def list_patients(session: Session) -> list[Patient]:
    return list(session.scalars(select(Patient).order_by(Patient.patient_id)))


def contexts(session: Session, patient_ids: Iterable[str]) -> dict[str, PatientContext]:
    ids = sorted(set(patient_ids))
    rows = session.scalars(select(Patient).where(Patient.patient_id.in_(ids))) if ids else []
    return {
        p.patient_id: PatientContext(age_years=p.age_years, therapy=p.therapy, therapy_start=p.therapy_start)
        for p in rows
    }


# -- patient state -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PatientState:
    """The parts of a patient's latest evaluation that ``compare`` looks at."""

    evaluation_id: int
    effective_at: dt.datetime
    crs_grade: int
    icans_grade: int | None
    icans_floor: int
    red_flags: tuple[str, ...]
    urgency: Urgency

    @classmethod
    def of(cls, row: EvaluationRow) -> "PatientState":
        return cls(row.id, row.effective_at, row.crs_grade, row.icans_grade, row.icans_floor,
                   tuple(row.red_flags), Urgency(row.urgency))


def latest_states(session: Session, patient_ids: Iterable[str]) -> dict[str, PatientState]:
    """Each patient's latest evaluation: greatest effective_at, ties broken by arrival (id)."""
    out: dict[str, PatientState] = {}
    for pid in sorted(set(patient_ids)):
        row = session.scalars(
            select(EvaluationRow)
            .where(EvaluationRow.patient_id == pid)
            .order_by(EvaluationRow.effective_at.desc(), EvaluationRow.id.desc())
            .limit(1)
        ).one_or_none()
        if row is not None:
            out[pid] = PatientState.of(row)
    return out


# -- reporting ---------------------------------------------------------------------------------


def counts(session: Session) -> dict[str, int]:
    def n(model: Any) -> int:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)

    checkins, rejected, duplicates = n(CheckinRow), n(RejectedInput), n(DuplicateCheckin)
    return {
        "received": checkins + rejected + duplicates,
        "checkins": checkins,
        "evaluated": n(EvaluationRow),
        "rejected": rejected,
        "duplicates": duplicates,
        "transitions": n(TransitionRow),
        "out_of_order": int(
            session.scalar(select(func.count()).select_from(EvaluationRow).where(EvaluationRow.out_of_order)) or 0
        ),
    }


def latest_evaluations(session: Session, limit: int = 50) -> list[EvaluationRow]:
    """Every patient's latest evaluation (their current state), most urgent first."""
    pids = list(session.scalars(select(EvaluationRow.patient_id).distinct().order_by(EvaluationRow.patient_id)))
    rows = []
    for pid in pids:
        row = session.scalars(
            select(EvaluationRow)
            .where(EvaluationRow.patient_id == pid)
            .order_by(EvaluationRow.effective_at.desc(), EvaluationRow.id.desc())
            .limit(1)
        ).one()
        rows.append(row)
    rows.sort(key=lambda r: (-Urgency(r.urgency).rank, -r.crs_grade, r.patient_id))
    return rows[:limit]


def evaluations(session: Session) -> list[EvaluationRow]:
    return list(session.scalars(select(EvaluationRow).order_by(EvaluationRow.id)))


def rejected_inputs(session: Session) -> list[RejectedInput]:
    return list(session.scalars(select(RejectedInput).order_by(RejectedInput.id)))


def transitions(session: Session) -> list[TransitionRow]:
    return list(session.scalars(select(TransitionRow).order_by(TransitionRow.id)))
