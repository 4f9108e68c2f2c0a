"""The worker's main job: intake stream -> validate -> evaluate -> store, the one place the stages
are chained.

Rules, in the order they protect a patient:

1. **Ack after commit.** A batch's effects (check-ins, evaluations, transitions, rejected inputs,
   duplicates, audit rows) are written in ONE database transaction; the stream entries are
   acknowledged (XACK + XDEL) only after it commits. A crash anywhere before the commit leaves
   them pending; they are re-delivered and the replay is idempotent (unique ``checkin_id``,
   ``INSERT ... ON CONFLICT DO NOTHING``). Delivery is at-least-once; effects are exactly-once.
   A batch PostgreSQL aborted as a deadlock victim (or a serialization failure) is run again at
   once, up to three times, rather than left pending until it can be reclaimed.
2. **Nothing silently dropped.** An entry that is not UTF-8, not JSON, or not a valid check-in is
   stored in ``rejected_inputs`` with its raw bytes and every error, then acknowledged and counted.
   So is an entry delivered more than ``max_deliveries`` times without being committed (a poison
   message is set aside instead of retried forever), and a pending entry that vanished from the
   stream.
3. **Reclaim.** Entries left pending by a dead worker for ``claim_min_idle_s`` are taken over
   (XAUTOCLAIM, at the start of each drain) and processed one per transaction, so a poison entry
   cannot drag healthy ones towards the delivery limit. When the database does not answer, the
   drain stops before reading anything, so an outage does not inflate delivery counts. Entries
   read ahead for the next batch (``drain``) and not processed because the current batch failed
   are released: still pending, marked idle so the next drain takes them over at once.
4. **Order.** Within a batch, each patient's check-ins are evaluated in time order and a later
   one is compared with the earlier. The time is ``recorded_at``, capped at the batch's ``now``
   (``effective_at``): a check-in from a clock set in the future is evaluated, audited as
   ``checkin.future_dated`` and cannot hide the check-ins after it. A check-in older than the
   patient's latest evaluation is stored and evaluated, flagged ``out_of_order``, audited, and never
   becomes the patient's latest state (no transition is derived from it).
5. **Duplicates.** A known ``checkin_id`` in a new stream entry with the same content is recorded
   in ``duplicate_checkins`` and counted; it is not evaluated again. With different content it is
   a producer fault, not a resend: it is rejected (``checkin_id_conflict``, raw payload kept, the
   urgency it would have had in the error), never passed off as a harmless duplicate. The same
   entry re-delivered after a crash between commit and ack is recognised (same stream id) and only
   acknowledged.

The functions take the Redis client, the session factory, the settings and the time explicitly,
so tests call them without Celery.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import orjson
import redis
from sqlalchemy import select
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, SQLAlchemyError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from worker import gc_tuning, metrics
from worker.checkin import UNKNOWN_FIELD, CheckIn, FieldError, IntakeError, not_utf8, parse_checkin
from worker.evaluation import Evaluation, Transition, compare, evaluate
from worker.intake import Consumer, Entry
from worker.logs import get_logger
from worker.settings import Settings
from worker.store import batch_writer, repo
from worker.store.db import ping
from worker.store.models import CheckinRow, DuplicateCheckin, EvaluationRow, RejectedInput, TransitionRow

log = get_logger(__name__)
_stdlib_log = logging.getLogger(__name__)
ACTOR = "pipeline"


class StoreUnavailable(RuntimeError):
    """The database did not answer; nothing was read from the stream."""


@dataclass
class DrainReport:
    read: int = 0
    reclaimed: int = 0
    evaluated: int = 0
    rejected: int = 0
    duplicates: int = 0
    redelivered: int = 0
    out_of_order: int = 0
    transitions: int = 0
    acked: int = 0
    batches: int = 0

    def add(self, other: "DrainReport") -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- decoding ----------------------------------------------------------------------------------


MAX_PAYLOAD_BYTES = 1 << 20  # a valid check-in is a few KiB (the note is at most 2,000 characters)
KEEP_OVERSIZED_BYTES = 64 << 10

# The pipeline's internal records (Refusal, Accepted, Evaluated, Prepared; intake.Entry and
# repo.PatientState) are built once per entry and never changed afterwards, but are not declared
# frozen: a frozen dataclass sets each field through object.__setattr__, about four times the cost,
# and these are built tens of thousands of times a second. Evaluation, which leaves the pipeline
# (alerting, the API), stays frozen.


@dataclass(slots=True)
class Refusal:
    reason: str
    errors: list[FieldError]
    checkin_id: str | None = None


@dataclass(slots=True)
class Accepted:
    checkin: CheckIn
    raw: bytes  # the stream entry's bytes: a valid check-in's JSON text
    # The text holds a \u escape of NUL or of a surrogate (the only way such a character gets into a
    # valid JSON document): a value some database refuses, so the entry is stored the careful way.
    suspect: bool = False
    # The document where it must be stored as data (see ``_document``); None: the text itself is
    # stored, and the document is parsed only where something asks for it (a duplicate's check).
    parsed: dict | None = None

    @property
    def document(self) -> dict:
        """The producer's JSON object as received (validated), every value kept."""
        return self.parsed if self.parsed is not None else orjson.loads(self.raw)

    def payload(self) -> Any:
        """The value stored in ``checkins.payload``: the producer's JSON text itself where it is
        strict JSON that every reader takes as it is (see ``_document``), else the parsed document."""
        return orjson.Fragment(self.raw) if self.parsed is None else self.parsed


def decode(entry: Entry) -> Accepted | Refusal:
    """The entry's check-in, or why it is refused (every error, each naming its field).

    Total: whatever the bytes, this returns; it never raises (a raise here would make the entry
    a poison message that crashes every batch it is in)."""
    raw = entry.payload
    if raw is None:
        names = sorted(k.decode("utf-8", "replace") for k in entry.fields)[:20]
        return Refusal("no_payload", [FieldError("(entry)", f"Stream entry has no 'checkin' field (fields: {names})")])
    if len(raw) > MAX_PAYLOAD_BYTES:
        return Refusal("too_large", [FieldError("(document)", f"Payload of {len(raw)} bytes exceeds the limit of "
                                                              f"{MAX_PAYLOAD_BYTES} (a check-in is a few KiB); its first "
                                                              f"{KEEP_OVERSIZED_BYTES} bytes are kept")])
    if not raw.isascii():  # ASCII is UTF-8; anything else is checked here, before the model sees it
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            return Refusal("not_utf8", [not_utf8(raw, exc)])
    try:
        checkin = parse_checkin(raw)
    except IntakeError as exc:
        return Refusal("invalid" if _is_json(raw) else "not_json", list(exc.errors), exc.checkin_id)
    except (RecursionError, MemoryError, ValueError) as exc:  # e.g. JSON nested thousands deep
        return Refusal("invalid", [FieldError("(document)", f"Unreadable document ({type(exc).__name__}); "
                                                            "check-ins are flat objects nested at most two levels")])
    suspect = _UNSAFE_ESCAPE.search(raw) is not None
    try:
        return Accepted(checkin, raw, suspect, _document(raw, suspect))
    except (RecursionError, ValueError) as exc:  # e.g. a number beyond Python's int-parsing limit
        return Refusal("invalid", [FieldError("(document)", f"Valid check-in that cannot be stored verbatim ({type(exc).__name__})")],
                       checkin.checkin_id)


# Python's json.loads refuses an integer of more than 4,300 digits (int_max_str_digits), so a shorter
# text cannot hold one: below this length, text that orjson reads is text every reader takes.
_VERBATIM_MAX_BYTES = 4_000


def _document(raw: bytes, suspect: bool) -> dict | None:
    """The producer's JSON object where it must be stored as data, None where the text itself can
    be stored (called only once the check-in is valid).

    The text is stored as it is when orjson reads it (strict RFC 8259: no NaN, no Infinity, no
    lone surrogate) and it is shorter than ``_VERBATIM_MAX_BYTES``: PostgreSQL's json and every
    Python reader then take it, and nothing is parsed twice. A valid check-in can still carry such
    a value under a key it repeats (the model validates the last one only): such a document is
    stored as the data json.loads reads, so the stored document never depends on which parser ran
    (tests/test_document_parsing.py compares both over the check-in corpus). orjson reads a valid
    check-in exactly as json.loads does: every number in one is bounded by the schema and duplicate
    keys keep the last value in both."""
    if not suspect:
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
        else:
            return None if len(raw) < _VERBATIM_MAX_BYTES else document
    return json.loads(raw.decode("utf-8"))


# \u0000 (NUL) and \uD800-\uDFFF (surrogates, paired or not: checked conservatively), any case.
_UNSAFE_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return False
    return True


# -- what needs no transaction -----------------------------------------------------------------


@dataclass(slots=True)
class Evaluated:
    entry: Entry
    accepted: Accepted
    evaluation: Evaluation | None  # None: the evaluator failed (``failure`` names the exception type)
    failure: str | None = None


@dataclass(slots=True)
class Prepared:
    """A batch decoded and evaluated: everything that needs no lock and no transaction, so
    ``drain`` can do it for the next batch while the current one is being written."""

    refused: list[tuple[Entry, Refusal]]
    evaluated: list[Evaluated]


def prepare(entries: list[Entry], sessions: sessionmaker[Session]) -> Prepared:
    """Decode every entry and evaluate the valid ones, with each patient's enrollment (read in a
    short transaction of its own) filling what the check-in lacks. Never raises for an entry: a
    refusal or an evaluator failure is carried to ``process``, which stores it."""
    refused: list[tuple[Entry, Refusal]] = []
    valid: list[tuple[Entry, Accepted]] = []
    for entry in entries:
        decoded = decode(entry)
        if isinstance(decoded, Refusal):
            refused.append((entry, decoded))
        else:
            valid.append((entry, decoded))
    ctx: dict = {}
    if valid:
        with sessions() as session:
            ctx = repo.contexts(session, {a.checkin.patient_id for _, a in valid})
    evaluated = []
    for entry, accepted in valid:
        checkin = accepted.checkin
        try:
            evaluated.append(Evaluated(entry, accepted, evaluate(checkin, ctx.get(checkin.patient_id))))
        except Exception as exc:  # noqa: BLE001 - a bug must not block the queue; the input is kept
            log.error("evaluation_failed", checkin_id=checkin.checkin_id, stream_id=entry.stream_id,
                      error_type=type(exc).__name__)
            evaluated.append(Evaluated(entry, accepted, None, type(exc).__name__))
    return Prepared(refused, evaluated)


# -- one transaction ---------------------------------------------------------------------------


# Called once per batch, inside the batch's transaction, with every evaluation stored in it (and its
# check-in), in per-patient order: alerting (worker.alert_jobs.on_batch) writes alert changes and
# their notification rows in the same transaction as the check-ins they come from.
AlertHook = Callable[[Session, list[tuple[Evaluation, CheckIn]], dt.datetime], None]


@dataclass
class _Batch:
    session: Session
    now: dt.datetime
    report: DrainReport = field(default_factory=DrainReport)
    stored: list[tuple[Evaluation, CheckIn]] = field(default_factory=list)

    def reject(self, entry: Entry, refusal: Refusal) -> None:
        """Store the entry's raw bytes and every error. Never fails the batch: should the database
        refuse even the cleaned row, a minimal one (raw bytes, reason, a generic error) is stored."""
        raw = entry.payload if entry.payload is not None else b""
        if len(raw) > MAX_PAYLOAD_BYTES:
            raw = raw[:KEEP_OVERSIZED_BYTES]
        cid = _clean(refusal.checkin_id)[:128] if refusal.checkin_id is not None else None
        values = dict(stream_id=entry.stream_id, payload_sha256=hashlib.sha256(raw).hexdigest(), checkin_id=cid,
                      reason=refusal.reason, errors=[{"loc": _clean(e.loc), "msg": _clean(e.msg)} for e in refusal.errors],
                      raw_payload=raw, delivery_count=entry.delivery_count, received_at=self.now)
        try:
            with self.session.begin_nested():
                new_id = repo.insert_ignore(self.session, RejectedInput.__table__, values, ("stream_id", "payload_sha256"))
        except DBAPIError as exc:
            if not isinstance(exc, DataError):
                raise
            values.update(checkin_id=None, errors=[{"loc": "(entry)", "msg": f"Refused; the error details could not be "
                                                    f"stored ({type(exc).__name__}); see the raw payload"}])
            new_id = repo.insert_ignore(self.session, RejectedInput.__table__, values, ("stream_id", "payload_sha256"))
        refusal = Refusal(refusal.reason, [FieldError(e["loc"], e["msg"]) for e in values["errors"]], values["checkin_id"])
        if new_id is None:
            self.report.redelivered += 1
            return
        self.report.rejected += 1
        repo.audit(self.session, at=self.now, actor=ACTOR, action="checkin.rejected", subject=refusal.checkin_id,
                   stream_id=entry.stream_id, reason=refusal.reason, locs=[e.loc for e in refusal.errors])
        log.warning("checkin_rejected", stream_id=entry.stream_id, checkin_id=refusal.checkin_id,
                    reason=refusal.reason, error_locs=[_logged_loc(e) for e in refusal.errors])

    def effective(self, checkin: CheckIn) -> dt.datetime:
        return min(checkin.recorded_at, self.now)

    def accept(self, evaluated: list[Evaluated], meanwhile: "ReadAhead | None" = None) -> None:
        """Store evaluated check-ins (and refuse those the evaluator failed on), per patient in
        effective_at order. ``meanwhile``: the next batch's read-ahead, run while the rows are
        written (PostgreSQL).

        Fast path: a few multi-row statements for the whole batch (``_store_all``), inside one
        SAVEPOINT. Should the database refuse a value anyway (DataError), or should a document hold
        a value some database cannot store (a NUL character, an unpaired surrogate: checked here in
        Python first), the batch goes through the per-entry path (``_store_or_refuse``: one
        SAVEPOINT per entry, so only the refused entry is rejected). Correctness never depends on
        the fast path: both produce the same rows, counts, audit entries and ``stored`` list."""
        evaluated = _repeats_last(sorted(evaluated, key=_order_key(self.now)))
        pids = {e.accepted.checkin.patient_id for e in evaluated}
        repo.lock_patients(self.session, pids)
        latest = repo.latest_states(self.session, pids)
        items: list[tuple[Entry, CheckIn, Accepted, Evaluation]] = []
        suspect = False
        for e in evaluated:
            entry, accepted, checkin = e.entry, e.accepted, e.accepted.checkin
            if e.evaluation is None:
                self.reject(entry, Refusal("evaluation_failed", [FieldError(
                    "(document)", f"The evaluator failed on this check-in ({e.failure}); stored for review, not evaluated")],
                    checkin.checkin_id))
                continue
            items.append((entry, checkin, accepted, e.evaluation))
            suspect = suspect or accepted.suspect
        if not items:
            return
        if not suspect:
            report, stored = self.report.as_dict(), len(self.stored)
            try:
                with self.session.begin_nested():
                    emit = self._store_all(items, latest, meanwhile)
            except DBAPIError as exc:
                # DataError: a value the database refuses. IntegrityError: another transaction stored
                # one of these checkin_id after CopyWriter looked; the per-entry path skips it.
                if not isinstance(exc, (DataError, IntegrityError)):
                    raise
                self._restore(report, stored)
                log.warning("batch_fast_path_refused", error_type=type(exc).__name__, entries=len(items))
            except (StatementError, UnicodeError, ValueError, TypeError) as exc:
                self._restore(report, stored)
                log.warning("batch_fast_path_refused", error_type=type(exc).__name__, entries=len(items))
            else:
                for level, event, kw in emit:
                    log.log(level, event, **kw)
                return
        for entry, checkin, accepted, evaluation in items:  # the per-entry safety net
            self._store_or_refuse(entry, checkin, accepted, evaluation, latest)

    def _restore(self, report: dict[str, int], stored: int) -> None:
        for name, value in report.items():  # the fast path's savepoint was rolled back
            setattr(self.report, name, value)
        del self.stored[stored:]

    def _store_all(self, items: list[tuple[Entry, CheckIn, Accepted, Evaluation]], latest: dict[str, repo.PatientState],
                   meanwhile: "ReadAhead | None" = None) -> list[tuple[str, dict]]:
        """``_store`` for every item at once: one statement (or COPY) per table. Returns the log
        events to emit once the statements have succeeded (so a refused batch logs nothing twice).
        With ``meanwhile`` (PostgreSQL), the rows are written by a helper thread while this one
        runs ``meanwhile`` (see batch_writer.CopyWriter)."""
        writer = batch_writer.writer_for(self.session, overlapped=meanwhile is not None)
        try:
            return self._write_all(writer, items, latest, meanwhile)
        finally:
            writer.close()  # also on an error: never leave while a helper thread still writes on the connection

    def _write_all(self, writer: batch_writer.InsertWriter | batch_writer.CopyWriter,
                   items: list[tuple[Entry, CheckIn, Accepted, Evaluation]], latest: dict[str, repo.PatientState],
                   meanwhile: "ReadAhead | None") -> list[tuple[str, dict]]:
        # Once per stored check-in: fields are read into locals once, rows are dict displays, and an
        # in-batch predecessor's state is its Evaluation itself (compare reads the same fields).
        session, now = self.session, self.now
        first: dict[str, int] = {}  # checkin_id -> index of its first item (in per-patient order)
        for i, item in enumerate(items):
            first.setdefault(item[1].checkin_id, i)
        unique = items if len(first) == len(items) else [items[i] for i in first.values()]
        row_ids = writer.checkins([
            {"checkin_id": c.checkin_id, "patient_id": c.patient_id, "recorded_at": c.recorded_at, "received_at": now,
             "stream_id": e.stream_id, "payload": accepted.payload()} for e, c, accepted, _ in unique])
        # patient -> (evaluation id, or the checkin_id of an evaluation of this batch; effective_at; state)
        state: dict[str, tuple[int | str, dt.datetime, object]] = {
            pid: (s.evaluation_id, s.effective_at, s) for pid, s in latest.items()}
        # Walk in per-patient order as _store does; evaluation ids are known only after the INSERT,
        # so an in-batch predecessor is referred to by its checkin_id until then.
        new: list[tuple[int, dt.datetime, bool, object, object]] = []  # (item, effective_at, out_of_order, previous, transition)
        known: list[int] = []
        rows: list[dict] = []
        for i, (entry, checkin, _, ev) in enumerate(items):
            cid = checkin.checkin_id
            if cid not in row_ids or first[cid] != i:
                known.append(i)
                continue
            pid = checkin.patient_id
            previous = state.get(pid)
            effective_at = min(checkin.recorded_at, now)  # as ``effective``
            out_of_order = previous is not None and effective_at < previous[1]
            transition = None
            if not out_of_order:
                transition = compare(previous[2] if previous is not None else None, ev)
                state[pid] = (cid, effective_at, ev)
            new.append((i, effective_at, out_of_order, previous, transition))
            rows.append(_evaluation_row(ev, row_ids[cid], effective_at, now, out_of_order))
        eval_ids = writer.evaluations(rows)
        emit: list[tuple[int, str, dict]] = []
        debug = _stdlib_log.isEnabledFor(logging.DEBUG)
        transitions = []
        report, stored = self.report, self.stored
        for i, effective_at, out_of_order, previous, transition in new:
            entry, checkin, _, ev = items[i]
            if effective_at < checkin.recorded_at:
                repo.audit(session, at=now, actor=ACTOR, action="checkin.future_dated", subject=checkin.checkin_id,
                           patient_id=checkin.patient_id, ahead_s=(checkin.recorded_at - now).total_seconds())
            stored.append((ev, checkin))  # out-of-order ones too: a late emergency report must still page
            previous_id = None if previous is None else previous[0] if isinstance(previous[0], int) else eval_ids[previous[0]]
            if out_of_order:
                report.out_of_order += 1
                repo.audit(session, at=now, actor=ACTOR, action="checkin.out_of_order", subject=checkin.checkin_id,
                           patient_id=checkin.patient_id, latest_evaluation_id=previous_id)
                emit.append((logging.INFO, "checkin_out_of_order", dict(checkin_id=checkin.checkin_id, patient_id=checkin.patient_id)))
                continue
            if transition is not None:
                transitions.append({"evaluation_id": eval_ids[ev.checkin_id], "previous_evaluation_id": previous_id,
                                    "patient_id": ev.patient_id, "checkin_id": ev.checkin_id, "kinds": transition.kinds,
                                    "urgency": ev.urgency.value, "detail": transition, "created_at": now})
                if debug:  # one line per transition only at DEBUG; drain_done counts them at INFO
                    emit.append((logging.DEBUG, "patient_transition", _transition_fields(ev, transition)))
        report.evaluated += len(new)
        report.transitions += len(transitions)
        writer.transitions(transitions)
        writer.flush(meanwhile.run if meanwhile is not None else None)
        for i in known:  # a redelivery or a duplicate (also of an earlier entry of this batch)
            self._known(*items[i])
        return emit

    def _store_or_refuse(self, entry: Entry, checkin: CheckIn, accepted: Accepted, ev: Evaluation,
                         latest: dict[str, repo.PatientState]) -> None:
        """Store one check-in inside a SAVEPOINT: a value the database cannot hold (e.g. a NUL
        character on PostgreSQL) rejects that entry only, never the batch. A database that is
        down still fails the whole batch (nothing is acknowledged)."""
        snapshot, stored = dict(latest), len(self.stored)
        try:
            with self.session.begin_nested():
                self._store(entry, checkin, accepted, ev, latest)
        except DBAPIError as exc:
            if not isinstance(exc, DataError):
                raise
            del self.stored[stored:]  # rolled back with the savepoint: nothing to alert on
            self._unstorable(entry, checkin, exc, latest, snapshot)
        except (StatementError, UnicodeError, ValueError, TypeError) as exc:
            del self.stored[stored:]
            self._unstorable(entry, checkin, exc, latest, snapshot)

    def _unstorable(self, entry: Entry, checkin: CheckIn, exc: BaseException, latest: dict, snapshot: dict) -> None:
        latest.clear()
        latest.update(snapshot)
        log.error("checkin_unstorable", checkin_id=_clean(checkin.checkin_id), stream_id=entry.stream_id,
                  error_type=type(exc).__name__)
        self.reject(entry, Refusal("unstorable", [FieldError(
            "(document)", f"The database refused a value of this check-in ({type(exc).__name__}, e.g. a NUL character "
                          "or an unpaired surrogate); kept here as raw bytes")], checkin.checkin_id))

    def _store(self, entry: Entry, checkin: CheckIn, accepted: Accepted, ev: Evaluation,
               latest: dict[str, repo.PatientState]) -> None:
        row_id = repo.insert_ignore(
            self.session,
            CheckinRow.__table__,
            dict(checkin_id=checkin.checkin_id, patient_id=checkin.patient_id, recorded_at=checkin.recorded_at,
                 received_at=self.now, stream_id=entry.stream_id, payload=accepted.payload()),
            ("checkin_id",),
        )
        if row_id is None:
            self._known(entry, checkin, accepted, ev)
            return
        previous = latest.get(checkin.patient_id)
        effective_at = self.effective(checkin)
        out_of_order = previous is not None and effective_at < previous.effective_at
        if effective_at < checkin.recorded_at:
            repo.audit(self.session, at=self.now, actor=ACTOR, action="checkin.future_dated", subject=checkin.checkin_id,
                       patient_id=checkin.patient_id, ahead_s=(checkin.recorded_at - self.now).total_seconds())
        eval_id = self.session.execute(
            EvaluationRow.__table__.insert().returning(EvaluationRow.__table__.c.id),
            _evaluation_row(ev, row_id, effective_at, self.now, out_of_order),
        ).scalar_one()
        self.report.evaluated += 1
        self.stored.append((ev, checkin))  # out-of-order ones too: a late emergency report must still page
        if out_of_order:
            self.report.out_of_order += 1
            repo.audit(self.session, at=self.now, actor=ACTOR, action="checkin.out_of_order", subject=checkin.checkin_id,
                       patient_id=checkin.patient_id, latest_evaluation_id=previous.evaluation_id)
            log.info("checkin_out_of_order", checkin_id=checkin.checkin_id, patient_id=checkin.patient_id)
            return
        transition = compare(previous, ev)
        latest[checkin.patient_id] = repo.PatientState(eval_id, effective_at, ev.crs_grade, ev.icans_grade,
                                                       ev.icans_floor, tuple(ev.red_flags), ev.urgency)
        if transition is not None:
            self.session.execute(
                TransitionRow.__table__.insert(),
                dict(evaluation_id=eval_id, previous_evaluation_id=previous.evaluation_id if previous else None,
                     patient_id=ev.patient_id, checkin_id=ev.checkin_id, kinds=list(transition.kinds),
                     urgency=ev.urgency.value, detail=transition, created_at=self.now),
            )
            self.report.transitions += 1
            log.debug("patient_transition", **_transition_fields(ev, transition))

    def _known(self, entry: Entry, checkin: CheckIn, accepted: Accepted, ev: Evaluation) -> None:
        """The checkin_id is stored already: a redelivery of the same entry, a duplicate, or a
        different check-in under a reused id (rejected)."""
        existing = self.session.execute(
            select(CheckinRow.stream_id, CheckinRow.patient_id, CheckinRow.payload).where(CheckinRow.checkin_id == checkin.checkin_id)
        ).one()
        if existing.stream_id == entry.stream_id:
            self.report.redelivered += 1
            return
        if existing.payload != accepted.document:
            other = "another patient's check-in" if existing.patient_id != checkin.patient_id else "a check-in with different content"
            self.reject(entry, Refusal("checkin_id_conflict", [FieldError("checkin_id", (
                f"Already used by {other}; this one was NOT evaluated (its urgency "
                f"would be {ev.urgency.value}): a checkin_id identifies one check-in, so the producer must resubmit it "
                "under a new checkin_id"))], checkin.checkin_id))
            return
        new_id = repo.insert_ignore(
            self.session,
            DuplicateCheckin.__table__,
            dict(stream_id=entry.stream_id, checkin_id=checkin.checkin_id, same_payload=True, received_at=self.now),
            ("stream_id", "checkin_id"),
        )
        if new_id is None:
            self.report.redelivered += 1
            return
        self.report.duplicates += 1
        log.info("checkin_duplicate", checkin_id=checkin.checkin_id, stream_id=entry.stream_id)


def _evaluation_row(ev: Evaluation, checkin_row_id: int, effective_at: dt.datetime, now: dt.datetime,
                    out_of_order: bool) -> dict:
    """The evaluations row of ``ev`` (the batch path; ``_store`` writes the same columns). JSON
    columns take tuples as they are (written as arrays), and ``result`` the Evaluation itself:
    orjson writes a dataclass as the object of its fields, which are ``as_dict()``'s keys and values
    (tests/test_evaluation.py holds them to it), without building that dict."""
    return {"checkin_row_id": checkin_row_id, "checkin_id": ev.checkin_id, "patient_id": ev.patient_id,
            "recorded_at": ev.recorded_at, "effective_at": effective_at, "evaluated_at": now, "crs_grade": ev.crs_grade,
            "crs_grade_is_minimum": ev.crs_grade_is_minimum, "icans_grade": ev.icans_grade, "icans_floor": ev.icans_floor,
            "red_flags": ev.red_flags, "news2": ev.news2, "urgency": ev.urgency.value, "out_of_order": out_of_order,
            "result": ev}


def _transition_fields(ev: Evaluation, transition: Transition) -> dict:
    return dict(checkin_id=ev.checkin_id, patient_id=ev.patient_id, transition=list(transition.kinds),
                urgency=ev.urgency.value, crs_grade=ev.crs_grade, icans_grade=ev.icans_grade, red_flags=list(ev.red_flags))


def _repeats_last(evaluated: list[Evaluated]) -> list[Evaluated]:
    """The batch with every later stream entry of a ``checkin_id`` moved to the end: the entry that
    arrived first is the check-in, whatever the patient or time of the others (they are
    duplicates of it, or conflicts), on both the fast and the per-entry path."""
    first: dict[str, Evaluated] = {}
    for e in evaluated:
        held = first.setdefault(e.accepted.checkin.checkin_id, e)
        if held is not e and _sid_key(e.entry.stream_id) < _sid_key(held.entry.stream_id):
            first[e.accepted.checkin.checkin_id] = e
    if len(first) == len(evaluated):  # the usual batch: no id twice
        return evaluated
    return ([e for e in evaluated if first[e.accepted.checkin.checkin_id] is e]
            + [e for e in evaluated if first[e.accepted.checkin.checkin_id] is not e])


def _logged_loc(error: FieldError) -> str:
    """An error's location for a log line: an unknown field's name is the producer's text, not ours."""
    return "(unknown field)" if error.msg == UNKNOWN_FIELD else error.loc


def _clean(text: str) -> str:
    """Text any database can store: no NUL, no unpaired surrogate (escaped, not dropped)."""
    text = str(text)
    if "\x00" in text or any("\ud800" <= ch <= "\udfff" for ch in text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    return text


def _order_key(now: dt.datetime) -> Callable[[Evaluated], tuple]:
    """A batch's sort key: patient, effective_at (recorded_at capped at ``now``, as ``effective``),
    stream order."""
    def key(e: Evaluated) -> tuple:
        checkin = e.accepted.checkin
        return checkin.patient_id, min(checkin.recorded_at, now), _sid_key(e.entry.stream_id)
    return key


def _sid_key(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def process(entries: list[Entry], *, sessions: sessionmaker[Session], now: dt.datetime,
            alerts: AlertHook | None = None, prepared: Prepared | None = None,
            meanwhile: "ReadAhead | None" = None) -> DrainReport:
    """Store the effects of ``entries`` (and, with ``alerts``, the alerts they raise) in ONE
    transaction. Does not acknowledge anything. ``prepared``: ``prepare(entries)`` done already.
    ``meanwhile``: run while the batch's rows are written, if they are written by COPY (the
    caller runs it otherwise)."""
    if prepared is None:
        prepared = prepare(entries, sessions)
    with sessions.begin() as session:
        batch = _Batch(session, now)
        for entry, refusal in prepared.refused:
            batch.reject(entry, refusal)
        batch.accept(prepared.evaluated, meanwhile)
        if alerts is not None and batch.stored:
            alerts(session, batch.stored, now)
    return batch.report


# -- draining ----------------------------------------------------------------------------------


# PostgreSQL's deadlock_detected and serialization_failure: the transaction was rolled back whole
# and may simply be run again (the entries are still ours). Anything else fails the batch, whose
# entries are taken over after CRS_CLAIM_MIN_IDLE_S.
_TRANSIENT_SQLSTATES = frozenset({"40P01", "40001"})
TRANSIENT_ATTEMPTS = 3


def _transient(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES


def _commit_and_ack(consumer: Consumer, entries: list[Entry], sessions: sessionmaker[Session], now: dt.datetime,
                    alerts: AlertHook | None = None, prepared: Prepared | None = None,
                    meanwhile: "ReadAhead | None" = None) -> DrainReport:
    started = time.perf_counter()
    with gc_tuning.paused():  # one batch (and the read-ahead of the next): see worker/gc_tuning.py
        if prepared is None:
            prepared = prepare(entries, sessions)
        for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
            try:
                report = process(entries, sessions=sessions, now=now, alerts=alerts, prepared=prepared,
                                 meanwhile=meanwhile)  # commit ...
                break
            except DBAPIError as exc:
                if not _transient(exc) or attempt == TRANSIENT_ATTEMPTS:
                    raise
                log.warning("batch_retried", error_type=type(exc.orig).__name__, attempt=attempt, batch_size=len(entries))
    report.acked = consumer.ack(e.stream_id for e in entries)  # ... THEN ack
    report.batches = 1
    metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
    metrics.CHECKINS_RECEIVED.inc(len(entries))
    metrics.CHECKINS_EVALUATED.inc(report.evaluated)
    metrics.CHECKINS_REJECTED.inc(report.rejected)
    metrics.CHECKINS_DUPLICATE.inc(report.duplicates)
    return report


def _reject_vanished(deleted: list[str], sessions: sessionmaker[Session], now: dt.datetime) -> DrainReport:
    """Pending entries that no longer exist in the stream: recorded so the loss is visible."""
    with sessions.begin() as session:
        batch = _Batch(session, now)
        for sid in deleted:
            batch.reject(Entry(sid, {}, 0), Refusal("vanished", [FieldError(
                "(entry)", "The stream entry was deleted or trimmed before it was committed; its content is lost "
                           "from the queue and the producer must resubmit it")]))
    return batch.report


def drain_once(*, r: redis.Redis, sessions: sessionmaker[Session], settings: Settings, now: dt.datetime,
               consumer: Consumer | None = None, alerts: AlertHook | None = None) -> DrainReport:
    """Reclaim stale entries, then read and process one batch. Raises StoreUnavailable (having
    touched nothing) when the database does not answer. ``consumer`` defaults to one named after
    this host and process."""
    consumer = consumer or Consumer(r, settings.stream_name, settings.group)
    report = _reclaim(consumer, sessions, settings, now, alerts)
    entries = consumer.read(settings.batch_size)
    report.read = len(entries)
    if entries:
        report.add(_commit_and_ack(consumer, entries, sessions, now, alerts))
    return report


def _reclaim(consumer: Consumer, sessions: sessionmaker[Session], settings: Settings, now: dt.datetime,
             alerts: AlertHook | None) -> DrainReport:
    """Check the database answers (StoreUnavailable if not, before anything is read), then take
    over and process the entries a dead or stuck worker left pending, one per transaction."""
    try:
        ping(sessions.kw["bind"])
    except (DBAPIError, SQLAlchemyError) as exc:
        raise StoreUnavailable(type(exc).__name__) from exc
    consumer.ensure_group()
    report = DrainReport()

    claimed, deleted = consumer.reclaim(settings.claim_min_idle_s, settings.batch_size)
    if deleted:
        report.add(_reject_vanished(deleted, sessions, now))
    for entry in claimed:
        report.reclaimed += 1
        if entry.delivery_count > settings.max_deliveries:
            with sessions.begin() as session:
                batch = _Batch(session, now)
                if repo.entry_is_stored(session, entry.stream_id):
                    # committed by a worker that was merely slow (its entry was reclaimed meanwhile)
                    batch.report.redelivered += 1
                else:
                    batch.reject(entry, Refusal("too_many_deliveries", [FieldError(
                        "(entry)", f"Delivered {entry.delivery_count} times without being committed "
                                   f"(limit CRS_MAX_DELIVERIES={settings.max_deliveries}); set aside instead of retried forever")],
                        _peek_id(entry)))
            batch.report.acked = consumer.ack([entry.stream_id])
            report.add(batch.report)
        else:
            report.add(_commit_and_ack(consumer, [entry], sessions, now, alerts))  # one per transaction
    if claimed:
        log.info("entries_reclaimed", claimed=len(claimed), consumer=consumer.name)
    return report


def _peek_id(entry: Entry) -> str | None:
    decoded = decode(entry)
    return decoded.checkin.checkin_id if isinstance(decoded, Accepted) else decoded.checkin_id


def drain(*, r: redis.Redis, sessions: sessionmaker[Session], settings: Settings, consumer: Consumer | None = None,
          clock: Callable[[], dt.datetime] = utcnow, budget_s: float | None = None, alerts: AlertHook | None = None) -> DrainReport:
    """Reclaim stale entries, then process batches until the stream is drained (a short batch) or
    ``budget_s`` is spent.

    While batch k's rows are being written (PostgreSQL: the COPYs, in a helper thread), this thread
    reads batch k+1 and decodes and evaluates it (``ReadAhead``: no lock, no transaction), so the
    database and Python work at the same time instead of taking turns. Batch k+1's transaction
    starts only after batch k's is committed and acknowledged, so each patient's check-ins are
    still compared with the latest committed state, in order. Should batch k fail, the entries read
    ahead are released (``Consumer.release``: still pending, taken over by the next drain at once)
    and batch k's error is raised."""
    consumer = consumer or Consumer(r, settings.stream_name, settings.group)
    budget = settings.drain_budget_s if budget_s is None else budget_s
    deadline = time.monotonic() + budget
    total = _reclaim(consumer, sessions, settings, clock(), alerts)
    entries, now, prepared = ReadAhead(consumer, sessions, settings, clock).result()
    while entries:
        total.read += len(entries)
        ahead = None
        if len(entries) == settings.batch_size and time.monotonic() < deadline:
            ahead = ReadAhead(consumer, sessions, settings, clock)
        try:
            total.add(_commit_and_ack(consumer, entries, sessions, now, alerts, prepared, ahead))
        except BaseException:
            if ahead is not None:
                ahead.release()
            raise
        if ahead is None:
            break
        entries, now, prepared = ahead.result()
    if total.read or total.reclaimed:
        log.info("drain_done", **{k: v for k, v in total.as_dict().items() if k in _LOGGED})
    return total


class ReadAhead:
    """The next batch: read from the stream, its time taken, decoded and evaluated (``prepare``),
    once, either while the current batch is written (``run``, called by ``CopyWriter.flush``) or
    when ``drain`` asks for it (``result``). ``run`` never raises: an error is kept and raised by
    ``result``, after the entries it read are released."""

    def __init__(self, consumer: Consumer, sessions: sessionmaker[Session], settings: Settings,
                 clock: Callable[[], dt.datetime]) -> None:
        self.consumer, self.sessions, self.settings, self.clock = consumer, sessions, settings, clock
        self.entries: list[Entry] = []
        self.now: dt.datetime | None = None
        self.prepared: Prepared | None = None
        self.error: BaseException | None = None
        self.done = False

    def run(self) -> None:
        if self.done:
            return
        self.done = True
        try:
            self.entries = self.consumer.read(self.settings.batch_size)
            self.now = self.clock()
            if self.entries:
                self.prepared = prepare(self.entries, self.sessions)
        except BaseException as exc:  # noqa: BLE001 - raised by result(), in drain's own flow
            self.error = exc

    def result(self) -> tuple[list[Entry], dt.datetime, Prepared | None]:
        self.run()
        if self.error is not None:
            self.release()
            raise self.error
        assert self.now is not None
        return self.entries, self.now, self.prepared

    def release(self) -> None:
        """Hand back what was read (nothing is lost; see Consumer.release)."""
        entries, self.entries = self.entries, []
        if not entries:
            return
        try:
            released = self.consumer.release((e.stream_id for e in entries), self.settings.claim_min_idle_s)
        except redis.RedisError as exc:  # they stay pending and are reclaimed after claim_min_idle_s
            log.warning("entries_not_released", entries=len(entries), error_type=type(exc).__name__)
            return
        if released != len(entries):  # deleted from the stream meanwhile (see Consumer.release): say so
            log.error("released_entries_vanished", entries=len(entries) - released,
                      stream_ids=[e.stream_id for e in entries][:20])


_LOGGED = {"evaluated", "rejected", "duplicates", "acked", "transitions", "out_of_order", "batches"}
