"""How a batch's check-ins, evaluations and transitions reach the database (the pipeline's fast path).

Two writers with one interface and the same rows (tests/integration/test_batch_writer.py holds
them to it; only check-in ids can differ after a replay, because INSERT ... ON CONFLICT draws a
sequence value even for a row it skips):

- ``InsertWriter``, both databases: multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING``.
- ``CopyWriter``, PostgreSQL: binary ``COPY``. Parsing a JSON batch parameter
  (``json_to_recordset``) was about half of PostgreSQL's time for a batch, and binary COPY hands
  each value over ready-made, so a batch costs PostgreSQL about half as much (bench/README.md).
  COPY has no ``ON CONFLICT`` and no ``RETURNING``, so the writer first asks which ``checkin_id``
  are stored already (they are skipped, as ``ON CONFLICT DO NOTHING`` would), then takes the new
  rows' ids from the tables' sequences in one query and writes them explicitly. Should another
  transaction store one of the same ``checkin_id`` meanwhile, the unique constraint refuses the COPY
  (``IntegrityError``) and the pipeline runs the batch again on its per-entry path, which
  waits for and skips that row.

Rows are dicts keyed by column name (the same dicts for both writers); a JSON column's value is
plain data (written as JSON text), a timestamp is an aware datetime (a naive one is refused, as
``UTCDateTime`` refuses it). Errors from the driver during a COPY are raised as SQLAlchemy's
``DBAPIError`` subclasses, as every other statement's are, so the callers' handling
(``DataError`` -> per-entry path, deadlock -> retry, connection lost -> batch not acknowledged)
stays the same.
"""

from __future__ import annotations

import datetime as dt
import operator
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import orjson
from sqlalchemy import JSON, BigInteger, Boolean, Float, Integer, String, Table, Text, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from worker.store import repo
from worker.store.helper_thread import HelperThread
from worker.store.models import CheckinRow, EvaluationRow, TransitionRow, UTCDateTime

_CHECKINS, _EVALUATIONS, _TRANSITIONS = CheckinRow.__table__, EvaluationRow.__table__, TransitionRow.__table__
# The sequences behind checkins.id and evaluations.id (PostgreSQL's names for a serial column,
# created by migration 0001; tests/integration/test_batch_writer.py checks them against
# pg_get_serial_sequence). Named, not looked up per row: the lookup cost more than the ids.
SEQUENCES = {"checkins": "checkins_id_seq", "evaluations": "evaluations_id_seq"}
_RESERVE_IDS = text(f"SELECT nextval('{SEQUENCES['checkins']}'::regclass), nextval('{SEQUENCES['evaluations']}'::regclass) "
                    "FROM generate_series(1, :n)")


class InsertWriter:
    """Multi-row INSERT statements (SQLite, and PostgreSQL when COPY is not used)."""

    def __init__(self, session: Session, overlapped: bool = False) -> None:
        self.session = session

    def checkins(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        """Store the check-ins whose ``checkin_id`` is new; ``checkin_id -> id`` of those only."""
        return {cid: rid for rid, cid in repo.insert_many_ignore(self.session, _CHECKINS, rows, ("checkin_id",),
                                                                ("id", "checkin_id"))}

    def evaluations(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        """Store evaluations (each of a check-in new in this batch); ``checkin_id -> id``."""
        return {cid: eid for eid, cid in repo.insert_many(self.session, _EVALUATIONS, rows, ("id", "checkin_id"))}

    def transitions(self, rows: list[dict[str, Any]]) -> None:
        repo.insert_many(self.session, _TRANSITIONS, rows)

    def flush(self, meanwhile: Callable[[], None] | None = None) -> None:
        """Nothing is pending: each statement ran when it was called (``meanwhile`` is not run)."""

    def close(self) -> None:
        """Nothing runs in the background."""


class CopyWriter:
    """Binary COPY on PostgreSQL; ids are taken from the sequences first (see the module doc).

    ``checkins`` reserves an evaluation id for every new check-in too (each new check-in of a
    batch gets exactly one evaluation), so the ids follow the same order as with ``InsertWriter``.
    The COPYs run in call order (check-ins before the evaluations that refer to them): by
    ``flush``, or, ``overlapped``, in a helper thread from ``checkins`` on, while the caller builds
    the other rows and then does other work (``flush``). ``close`` waits for the helper; the
    caller must call it whatever happens, before the session is used again."""

    def __init__(self, session: Session, overlapped: bool = False) -> None:
        self.session = session
        self._evaluation_ids: dict[str, int] = {}
        self._pending: list[tuple[Table, list[dict[str, Any]], list[int] | None]] = []  # (table, rows, their ids)
        self._overlapped = overlapped
        self._helper = HelperThread("crs-copy")
        self._running: list[Future[tuple[BaseException, str, Any] | None]] = []
        self._driver: tuple[Any, Any] = (None, None)  # (SQLAlchemy connection, driver connection) the helper uses

    def checkins(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        if not rows:
            return {}
        known = set(self.session.execute(
            text("SELECT checkin_id FROM checkins WHERE checkin_id IN (SELECT json_array_elements_text(CAST(:ids AS json)))"),
            {"ids": repo.id_list(r["checkin_id"] for r in rows)}).scalars())
        new = [r for r in rows if r["checkin_id"] not in known]
        if not new:
            return {}
        ids = self.session.execute(_RESERVE_IDS, {"n": len(new)}).all()
        checkin_ids = sorted(c for c, _ in ids)
        evaluation_ids = sorted(e for _, e in ids)
        out = {}
        for row, rid, eid in zip(new, checkin_ids, evaluation_ids):
            out[row["checkin_id"]] = rid
            self._evaluation_ids[row["checkin_id"]] = eid
        self._pending.append((_CHECKINS, new, checkin_ids))
        if self._overlapped:  # the check-ins need nothing more: the server can start on them now
            self._start()
        return out

    def evaluations(self, rows: list[dict[str, Any]]) -> dict[str, int]:
        ids = self._evaluation_ids
        missing = [r["checkin_id"] for r in rows if r["checkin_id"] not in ids]
        if missing:  # a caller bug, not bad input: evaluations are only written for this batch's new check-ins
            raise RuntimeError(f"no evaluation id reserved for {len(missing)} evaluation(s) of this batch")
        self._pending.append((_EVALUATIONS, rows, [ids[row["checkin_id"]] for row in rows]))
        return {row["checkin_id"]: ids[row["checkin_id"]] for row in rows}

    def transitions(self, rows: list[dict[str, Any]]) -> None:
        self._pending.append((_TRANSITIONS, rows, None))

    def _start(self) -> None:
        """Hand the queued COPYs to the helper thread (it runs them in order, touching only the
        driver connection; nothing else uses the session until ``flush`` or ``close`` waited)."""
        plans = [_plan(table, rows, ids) for table, rows, ids in self._pending if rows]
        self._pending = []
        if not plans:
            return
        if self._driver[0] is None:
            connection = self.session.connection()
            self._driver = (connection, connection.connection.dbapi_connection)
        self._running.append(self._helper.submit(_run, self._driver[1], plans))

    def flush(self, meanwhile: Callable[[], None] | None = None) -> None:
        """Run the queued COPYs. Overlapped (``overlapped`` and ``meanwhile``): they run in the
        helper thread (the check-ins' COPY since ``checkins``) while this thread calls
        ``meanwhile()``, so the server works on the rows while Python does something else
        (``pipeline.drain`` reads and evaluates the next batch). ``meanwhile`` must not raise and
        must not touch this session. Errors are raised here, after both have ended."""
        if self._overlapped and meanwhile is not None:
            self._start()
            try:
                meanwhile()
            finally:
                failures = self.close()
            if failures:
                _raise(*self._driver, *failures[0])
            return
        plans = [_plan(table, rows, ids) for table, rows, ids in self._pending if rows]
        self._pending = []
        _copy_now(self.session, plans)

    def close(self) -> list[tuple[BaseException, str, Any]]:
        """Wait for the helper thread (also when the batch failed meanwhile); its failures.
        A wait cut short is resumed by the next ``close`` (``_store_all`` always calls one more)."""
        self._helper.wait()
        running, self._running = self._running, []
        return [failed for failed in (job.result() for job in running) if failed is not None]


def writer_for(session: Session, overlapped: bool = False) -> InsertWriter | CopyWriter:
    writer = CopyWriter if session.get_bind().dialect.name == "postgresql" else InsertWriter
    return writer(session, overlapped=overlapped)


# -- binary COPY -------------------------------------------------------------------------------------

# SQLAlchemy column type -> the PostgreSQL type a value is sent as. First
# match wins (BigInteger before Integer: it is a subclass). A JSON column's value is plain data,
# serialised by ``_plan`` (orjson over the whole column; ``repo.json_bytes`` where orjson refuses a
# value) and sent as those bytes: json's binary format is its text, and the server checks it with
# json's own input rules. (Through psycopg's json dumper, each value cost two Python calls.) A
# timestamp is checked to be aware before anything is sent (``_plan``). A varchar(n) limit is
# still enforced by the server.
_COPY_TYPES = ((JSON, "json"), (UTCDateTime, "timestamptz"), (Boolean, "bool"), (BigInteger, "int8"), (Integer, "int4"),
               (Float, "float8"), (String, "text"), (Text, "text"))


def _copy_type(column: Any) -> str:
    for kind, pg_type in _COPY_TYPES:
        if isinstance(column.type, kind):
            return pg_type
    raise TypeError(f"column {column.table.name}.{column.name}: no binary COPY mapping for {column.type!r}")


def copy_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """``COPY table (columns of the first row) FROM STDIN (FORMAT BINARY)`` inside the session's
    transaction, now. Every row must have the same keys."""
    if rows:
        _copy_now(session, [_plan(table, rows)])


def _copy_now(session: Session, plans: list[_Plan]) -> None:
    """Run ``plans`` on the session's connection in this thread; errors raised as SQLAlchemy's."""
    if not plans:
        return
    connection = session.connection()
    driver = connection.connection.dbapi_connection
    failed = _run(driver, plans)
    if failed is not None:
        _raise(connection, driver, *failed)


_Plan = tuple[str, list[str], list[Sequence[Any]]]  # statement, types, rows of values


def _plan(table: Table, rows: Sequence[dict[str, Any]], ids: Sequence[int] | None = None) -> _Plan:
    """The statement, the types and the values, built before anything is sent: timestamps checked,
    JSON values serialised (``_json_texts``). ``ids``: the rows' ``id`` column, one per row, sent
    first (so the rows need not be copied to add it). Raises ValueError for a naive timestamp and
    TypeError for a value JSON cannot hold.

    Column by column, in C where it can be: ``map`` with ``itemgetter`` takes a column out of the
    rows, ``orjson.dumps`` serialises a JSON column, ``zip`` makes the rows of values."""
    names = list(rows[0])
    if ids is not None and (len(ids) != len(rows) or "id" in names):  # a caller bug
        raise RuntimeError(f"{table.name}: {len(ids)} ids for {len(rows)} rows, or rows that carry their own id")
    types = [_copy_type(table.c[name]) for name in names]
    columns = [list(map(operator.itemgetter(name), rows)) for name in names]
    for i, pg_type in enumerate(types):
        if pg_type == "timestamptz":
            for moment in columns[i]:
                if moment is not None and (not isinstance(moment, dt.datetime) or moment.tzinfo is None):
                    raise ValueError(f"{table.name}.{names[i]}: naive or non-datetime value; every timestamp in the store is timezone-aware")
        elif pg_type == "json":
            columns[i] = _json_texts(columns[i])
            types[i] = "bytea"  # the JSON text's bytes as they are: the binary format of json is its text
    if ids is not None:
        names.insert(0, "id")
        types.insert(0, _copy_type(table.c.id))
        columns.insert(0, ids)
    return f"COPY {table.name} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)", types, list(zip(*columns))


def _json_texts(values: list[Any]) -> list[bytes | None]:
    """Each value as JSON text (UTF-8), None as SQL NULL: ``orjson.dumps`` over the whole column,
    and ``repo.json_bytes`` value by value where orjson refuses one (e.g. an integer beyond 64
    bits), which raises TypeError for a value JSON cannot hold."""
    if None not in values:
        try:
            return list(map(orjson.dumps, values))
        except (TypeError, orjson.JSONEncodeError):
            pass
    return [None if value is None else repo.json_bytes(value) for value in values]


def _run(driver: Any, plans: list[_Plan]) -> tuple[BaseException, str, Any] | None:
    """Run the COPYs on the driver connection, in order; the first failure (exception, statement,
    cursor) instead of raising, so a helper thread can hand it back."""
    for statement, types, values in plans:
        cursor = driver.cursor()
        try:
            with cursor.copy(statement) as copy:
                copy.set_types(types)
                for value in values:
                    copy.write_row(value)
        except Exception as exc:  # noqa: BLE001 - raised by _raise in the session's thread
            return exc, statement, cursor
        finally:
            cursor.close()
    return None


def _raise(connection: Any, driver: Any, exc: BaseException, statement: str, cursor: Any) -> None:
    """A driver error as SQLAlchemy's DBAPIError subclass, as for any statement (a lost
    connection is invalidated); anything else (e.g. a UnicodeEncodeError) as it is."""
    dialect = connection.dialect
    if not isinstance(exc, dialect.loaded_dbapi.Error):
        raise exc
    disconnect = dialect.is_disconnect(exc, driver, cursor)
    if disconnect:
        connection.invalidate(exc)
    raise DBAPIError.instance(statement, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True,
                              connection_invalidated=disconnect, dialect=dialect) from exc
