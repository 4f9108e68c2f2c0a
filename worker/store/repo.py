"""Queries and writes on the store, shared by the pipeline and the CLI.

Writes that must be idempotent use ``insert_ignore`` (INSERT ... ON CONFLICT DO NOTHING RETURNING
id on both PostgreSQL and SQLite): a replayed stream entry changes nothing, and the caller learns
whether its row is new from the returned id.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import JSON, Table, func, select, text
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
    locks, taken in sorted order so two batches cannot deadlock; all of them in one statement).
    SQLite's BEGIN IMMEDIATE already serialises every writer."""
    if session.get_bind().dialect.name != "postgresql":
        return
    pids = sorted(set(patient_ids))
    if not pids:
        return
    session.execute(_LOCK_PATIENTS, {"ps": id_list(pids)}).all()


# Locks taken in the list's (sorted) order: WITH ORDINALITY numbers the elements in list order and
# the rows are locked in ``ORDER BY t.i`` order (the function scan already yields them so, and the
# planner needs no sort; were it to sort, the volatile lock function in the target list would still
# be evaluated after the sort, PostgreSQL >= 9.6). One row back (the count), not one per patient.
_LOCK_PATIENTS = text("SELECT count(*) FROM (SELECT pg_advisory_xact_lock(hashtextextended(t.p, 0)) "
                      "FROM json_array_elements_text(CAST(:ps AS json)) WITH ORDINALITY AS t(p, i) ORDER BY t.i) AS l")


def id_list(ids: Iterable[str]) -> str:
    """A list of ids as ONE query parameter: JSON text, read by json_array_elements_text
    (PostgreSQL) or json_each (SQLite). Several times cheaper than a text[] parameter, which the
    driver builds element by element in Python (0.49 ms vs 1.24 ms for 500 ids, bench/README.md)."""
    return json_text(list(ids))


def insert_many_ignore(session: Session, table: Table, rows: list[dict[str, Any]], conflict: Sequence[str],
                       returning: Sequence[str]) -> list[Any]:
    """Insert ``rows`` (multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING ``returning``); the
    returned rows are the new ones only, in no particular order (match them on a unique column)."""
    if not rows:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return _pg_insert_unnest(session, table, rows, returning, conflict)
    stmt = _dialect_insert(session, table).on_conflict_do_nothing(index_elements=list(conflict))
    return list(session.execute(stmt.returning(*(table.c[c] for c in returning)), rows).all())


def insert_many(session: Session, table: Table, rows: list[dict[str, Any]],
                returning: Sequence[str] = ()) -> list[Any]:
    """Insert ``rows`` (multi-row INSERT, RETURNING ``returning`` when given, in no particular order)."""
    if not rows:
        return []
    if session.get_bind().dialect.name == "postgresql":
        return _pg_insert_unnest(session, table, rows, returning)
    if not returning:
        session.execute(table.insert(), rows)
        return []
    return list(session.execute(table.insert().returning(*(table.c[c] for c in returning)), rows).all())


def _pg_insert_unnest(session: Session, table: Table, rows: list[dict[str, Any]], returning: Sequence[str],
                      conflict: Sequence[str] | None = None) -> list[Any]:
    """PostgreSQL: ``INSERT INTO t (...) SELECT ... FROM json_to_recordset(:rows)``: every row in ONE
    JSON parameter, so the statement stays small whatever the number of rows (a VALUES list of
    thousands of placeholders costs more to build and parse than to execute), and a JSON column's
    value is passed as the JSON it is. Values go through the columns' own bind processing first
    (UTCDateTime's checks included)."""
    dialect = session.get_bind().dialect
    names = list(rows[0])
    types, processors = [], []
    for name in names:
        col = table.c[name]
        if isinstance(col.type, JSON):
            types.append("json")
            processors.append(None)
        else:
            types.append(col.type.compile(dialect=dialect))
            processors.append(col.type._cached_bind_processor(dialect))
    processed = [(name, process) for name, process in zip(names, processors) if process is not None]
    data = rows
    if processed:  # only UTCDateTime columns have bind processing; orjson writes the datetimes
        data = []
        for row in rows:
            out = dict(row)
            for name, process in processed:
                out[name] = process(row[name])
            data.append(out)
    sql = (f"INSERT INTO {table.name} ({', '.join(names)}) SELECT {', '.join(f'r.{n}' for n in names)} "
           f"FROM json_to_recordset(CAST(:rows AS json)) AS r({', '.join(f'{n} {t}' for n, t in zip(names, types))})")
    if conflict:
        sql += f" ON CONFLICT ({', '.join(conflict)}) DO NOTHING"
    params = {"rows": json_text(data)}
    if not returning:
        session.execute(text(sql), params)
        return []
    sql += f" RETURNING {', '.join(returning)}"
    return list(session.execute(text(sql).columns(*(table.c[c] for c in returning)), params).all())


def json_bytes(data: Any) -> bytes:
    """JSON of plain data (str, numbers, bools, None, datetimes and dates as ISO 8601, lists, dicts
    with str keys), UTF-8. orjson, several times faster than json.dumps; json.dumps for anything
    orjson refuses (e.g. an integer beyond 64 bits). The one difference left: a NaN or infinite
    float becomes null (json.dumps writes a token PostgreSQL refuses). The rows written through here
    (pipeline batches, alert batches) hold none: their numbers come from validated check-ins,
    whose numbers are finite, and from counters. The COPY path hands these bytes to the driver as
    they are. Also written as orjson writes them: tuples (arrays), dataclasses (the object of their
    fields: the pipeline stores an Evaluation so) and ``orjson.Fragment`` (JSON text written as it
    is: a check-in's own text). Every engine writes JSON columns through ``json_text``
    (``db.make_engine``)."""
    try:
        return orjson.dumps(data)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(data, default=_isoformat).encode()


def json_text(data: Any) -> str:
    """``json_bytes`` as text (a statement parameter)."""
    return json_bytes(data).decode()


def _isoformat(value: Any) -> str:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()  # as orjson writes them
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _dialect_insert(session: Session, table: Table) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only the two supported backends
        raise RuntimeError(f"unsupported database backend {dialect!r}")
    return insert(table)


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


# One parameter (id_list), not one placeholder per patient; built once (see _LATEST). On PostgreSQL
# the rows come back as ONE JSON text read by orjson: a row per patient through the driver and
# SQLAlchemy cost several times more in Python (bench/README.md, "Result sets as one JSON value").
_CONTEXTS = {
    "postgresql": text("SELECT CAST(json_agg(json_build_array(patient_id, age_years, therapy, therapy_start)) AS text) "
                       "FROM patients WHERE patient_id IN (SELECT json_array_elements_text(CAST(:ids AS json)))"),
    "sqlite": text("SELECT patient_id, age_years, therapy, therapy_start FROM patients WHERE patient_id IN "
                   "(SELECT value FROM json_each(:ids))").columns(Patient.patient_id, Patient.age_years, Patient.therapy,
                                                                  Patient.therapy_start),
}


def contexts(session: Session, patient_ids: Iterable[str]) -> dict[str, PatientContext]:
    ids = sorted(set(patient_ids))
    if not ids:
        return {}
    dialect = session.get_bind().dialect.name
    result = session.execute(_CONTEXTS[dialect], {"ids": id_list(ids)})
    if dialect == "postgresql":
        rows = orjson.loads(result.scalar_one() or "[]")
        return {pid: PatientContext(age_years=age, therapy=therapy,
                                    therapy_start=None if start is None else _date(start))
                for pid, age, therapy, start in rows}
    return {
        pid: PatientContext(age_years=age, therapy=therapy, therapy_start=start)
        for pid, age, therapy, start in result
    }


@functools.lru_cache(maxsize=4096)
def _date(text_: str) -> dt.date:
    return dt.date.fromisoformat(text_)


# -- patient state -----------------------------------------------------------------------------


@dataclass(slots=True)  # not frozen: one per patient per batch (see pipeline: internal records)
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


_STATE_COLUMNS = ("id", "patient_id", "effective_at", "crs_grade", "icans_grade", "icans_floor", "red_flags", "urgency")
# One index probe per patient (ix_evaluations_patient_latest), never the whole history. On
# PostgreSQL the rows come back as ONE JSON text (see _CONTEXTS); a timestamp in it is ISO 8601
# with its offset and every microsecond, read back exactly.
_LATEST_PG = ("SELECT CAST(json_agg(json_build_array({ecols})) AS text) FROM json_array_elements_text(CAST(:pids AS json)) "
              "AS p(pid) CROSS JOIN LATERAL "
              "(SELECT {cols} FROM evaluations WHERE patient_id = p.pid ORDER BY effective_at DESC, id DESC LIMIT 1) AS e")
_LATEST_SQLITE = ("SELECT {ecols} FROM json_each(:pids) AS p JOIN evaluations AS e ON e.id = "
                  "(SELECT x.id FROM evaluations AS x WHERE x.patient_id = p.value ORDER BY x.effective_at DESC, x.id DESC LIMIT 1)")
# Built once per process: building a statement object for every batch cost about 1.5 ms a batch.
_ECOLS, _COLS = ", ".join(f"e.{n}" for n in _STATE_COLUMNS), ", ".join(_STATE_COLUMNS)
_LATEST = {
    "postgresql": text(_LATEST_PG.format(ecols=_ECOLS, cols=_COLS)),
    "sqlite": text(_LATEST_SQLITE.format(ecols=_ECOLS, cols=_COLS)).columns(
        *(EvaluationRow.__table__.c[n] for n in _STATE_COLUMNS)),
}


def latest_states(session: Session, patient_ids: Iterable[str]) -> dict[str, PatientState]:
    """Each patient's latest evaluation: greatest effective_at, ties broken by arrival (id). One
    query for all the patients, reading only the columns ``compare`` needs (not ``result``)."""
    pids = sorted(set(patient_ids))
    if not pids:
        return {}
    dialect = session.get_bind().dialect.name
    stmt = _LATEST.get(dialect)
    if stmt is None:  # pragma: no cover - only the two supported backends
        return _latest_states_each(session, pids)
    result = session.execute(stmt, {"pids": id_list(pids)})
    if dialect == "postgresql":
        rows = orjson.loads(result.scalar_one() or "[]")
        return {pid: PatientState(eid, _utc(effective_at), crs, icans, floor, tuple(flags), _URGENCY[urgency])
                for eid, pid, effective_at, crs, icans, floor, flags, urgency in rows}
    return {pid: PatientState(eid, effective_at, crs, icans, floor, tuple(flags), _URGENCY[urgency])
            for eid, pid, effective_at, crs, icans, floor, flags, urgency in result.all()}


def _utc(text_: str) -> dt.datetime:
    """A timestamp as PostgreSQL writes it in JSON (ISO 8601, the session's offset) -> aware UTC."""
    moment = dt.datetime.fromisoformat(text_)
    if moment.tzinfo is None:  # timestamptz always carries its offset; anything else is a bug
        raise ValueError(f"timestamp without an offset from the database: {text_!r}")
    return moment.astimezone(dt.UTC)


_URGENCY = {u.value: u for u in Urgency}  # a dict look-up; Urgency(value) costs several times more


def _latest_states_each(session: Session, pids: list[str]) -> dict[str, PatientState]:  # pragma: no cover
    out: dict[str, PatientState] = {}
    for pid in pids:
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
    """Every patient's latest evaluation (their current state), most urgent first. One query
    whatever the number of patients: each patient's evaluations ranked by (effective_at, id)."""
    rank = func.row_number().over(partition_by=EvaluationRow.patient_id,
                                  order_by=(EvaluationRow.effective_at.desc(), EvaluationRow.id.desc())).label("rank")
    ranked = select(EvaluationRow.id, rank).subquery()
    rows = list(session.scalars(select(EvaluationRow).join(ranked, ranked.c.id == EvaluationRow.id).where(ranked.c.rank == 1)))
    rows.sort(key=lambda r: (-Urgency(r.urgency).rank, -r.crs_grade, r.patient_id))
    return rows[:limit]


def evaluations(session: Session) -> list[EvaluationRow]:
    return list(session.scalars(select(EvaluationRow).order_by(EvaluationRow.id)))


def rejected_inputs(session: Session) -> list[RejectedInput]:
    return list(session.scalars(select(RejectedInput).order_by(RejectedInput.id)))


def transitions(session: Session) -> list[TransitionRow]:
    return list(session.scalars(select(TransitionRow).order_by(TransitionRow.id)))
