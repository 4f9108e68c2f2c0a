"""The drain pipeline against real Redis and both databases (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from sqlalchemy import func, select

from tests.integration.helpers import T0, checkin, febrile, hypotensive
from worker.intake import Consumer, backlog, submit
from worker.pipeline import StoreUnavailable, drain, drain_once, process
from worker.store import repo
from worker.store.db import make_engine, session_factory
from worker.store.models import AuditEntry, CheckinRow, EvaluationRow, RejectedInput, TransitionRow

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


@pytest.fixture
def settings(make_settings):
    return make_settings()


@pytest.fixture
def consumer(r, settings):
    c = Consumer(r, settings.stream_name, settings.group, "test-consumer")
    c.ensure_group()
    return c


def run(r, sessions, settings, consumer, now=NOW):
    return drain_once(r=r, sessions=sessions, settings=settings, consumer=consumer, now=now)


def test_valid_checkins_are_evaluated_committed_then_acknowledged(r, sessions, settings, consumer):
    submit(r, settings.stream_name, [febrile("c1", "P-1"), checkin("c2", "P-2"), hypotensive("c3", "P-3")])
    report = run(r, sessions, settings, consumer)
    assert (report.read, report.evaluated, report.acked, report.rejected) == (3, 3, 3, 0)
    with sessions() as s:
        rows = {e.checkin_id: e for e in repo.evaluations(s)}
        assert set(rows) == {"c1", "c2", "c3"}
        assert rows["c1"].crs_grade == 1 and rows["c1"].urgency == "urgent"
        assert rows["c3"].crs_grade == 2
        assert rows["c2"].crs_grade == 0
        assert rows["c1"].result["checkin_id"] == "c1" and rows["c1"].result["valid"] is True
        assert rows["c1"].recorded_at == T0  # aware UTC on both backends
        assert rows["c1"].evaluated_at == NOW
    assert backlog(r, settings.stream_name, settings.group) == {"pending": 0, "lag": 0}
    assert r.xlen(settings.stream_name) == 0  # deleted once committed and acknowledged


@pytest.mark.parametrize(
    ("raw", "reason", "loc"),
    [
        (json.dumps(checkin("bad-temp", vitals={"temperature_c": 55})), "invalid", "vitals.temperature_c"),
        (json.dumps({"patient_id": "P-1", "recorded_at": "2026-11-20T06:00:00Z"}), "invalid", "checkin_id"),
        (json.dumps(checkin("naive", recorded_at="2026-11-20T06:00:00")), "invalid", "recorded_at"),
        (json.dumps(checkin("extra", colour="blue")), "invalid", "colour"),
        ("{not json", "not_json", ""),
        ("[1, 2]", "invalid", ""),
        (b"\xff\xfe{}", "not_utf8", "(document)"),
        (b"", "not_json", ""),
        (b"[" * 100_000, "invalid", "(document)"),  # nested deeper than any parser's recursion limit
        (b'{"checkin_id": "deep", "note": ' + b"[" * 5000 + b"]" * 5000 + b"}", "invalid", "(document)"),
    ],
)
def test_invalid_input_is_stored_with_every_error_and_acknowledged(r, sessions, settings, consumer, raw, reason, loc):
    submit(r, settings.stream_name, [raw, febrile("ok-1")])
    report = run(r, sessions, settings, consumer)
    assert (report.rejected, report.evaluated, report.acked) == (1, 1, 2)
    with sessions() as s:
        [rej] = repo.rejected_inputs(s)
        assert rej.reason == reason
        assert rej.raw_payload == (raw if isinstance(raw, bytes) else raw.encode())
        assert rej.errors and all(set(e) == {"loc", "msg"} and e["msg"] for e in rej.errors)
        assert loc in [e["loc"] for e in rej.errors]
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "checkin.rejected")) == 1
    assert backlog(r, settings.stream_name, settings.group)["pending"] == 0


def test_every_field_error_is_kept_and_the_id_recovered(r, sessions, settings, consumer):
    bad = checkin("multi", vitals={"temperature_c": 99, "heart_rate_bpm": "fast"}, source="robot")
    submit(r, settings.stream_name, [bad])
    run(r, sessions, settings, consumer)
    with sessions() as s:
        [rej] = repo.rejected_inputs(s)
    assert rej.checkin_id == "multi"
    assert {e["loc"] for e in rej.errors} == {"vitals.temperature_c", "vitals.heart_rate_bpm", "source"}


def test_a_byte_order_mark_is_named_and_the_id_recovered(r, sessions, settings, consumer):
    submit(r, settings.stream_name, [b"\xef\xbb\xbf" + json.dumps(febrile("bom-1")).encode()])
    run(r, sessions, settings, consumer)
    with sessions() as s:
        [rej] = repo.rejected_inputs(s)
    assert rej.checkin_id == "bom-1"
    assert [e["loc"] for e in rej.errors] == ["(document)"] and "byte order mark (BOM" in rej.errors[0]["msg"]


def test_entry_without_payload_field_is_rejected(r, sessions, settings, consumer):
    r.xadd(settings.stream_name, {"body": "{}"})
    run(r, sessions, settings, consumer)
    with sessions() as s:
        [rej] = repo.rejected_inputs(s)
    assert rej.reason == "no_payload" and "checkin" in rej.errors[0]["msg"]


def test_duplicate_checkin_id_is_one_row_and_counted(r, sessions, settings, consumer):
    submit(r, settings.stream_name, [febrile("dup-1"), febrile("dup-1")])  # same batch
    run(r, sessions, settings, consumer)
    submit(r, settings.stream_name, [febrile("dup-1")])  # later batch, same content: a resend
    report = run(r, sessions, settings, consumer)
    assert report.duplicates == 1 and report.evaluated == 0 and report.rejected == 0
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(CheckinRow)) == 1
        assert s.scalar(select(func.count()).select_from(EvaluationRow)) == 1
        c = repo.counts(s)
    assert (c["duplicates"], c["checkins"], c["received"], c["rejected"]) == (2, 1, 3, 0)
    assert backlog(r, settings.stream_name, settings.group)["pending"] == 0


@pytest.mark.parametrize("same_batch", [False, True])
def test_a_reused_checkin_id_with_other_content_is_rejected_not_passed_off_as_a_duplicate(r, sessions, settings, consumer,
                                                                                         same_batch):
    """Another patient's emergency under a stored checkin_id is a producer fault: it is kept with
    its errors (the urgency it would have had included) and counted as rejected, not as a resend."""
    emergency = hypotensive("dup-1", "P-other")  # sorts before P-zzz: the entry that came first still wins
    if same_batch:
        submit(r, settings.stream_name, [febrile("dup-1", "P-zzz"), emergency])
    else:
        submit(r, settings.stream_name, [febrile("dup-1", "P-zzz")])
        run(r, sessions, settings, consumer)
        submit(r, settings.stream_name, [emergency])
    run(r, sessions, settings, consumer)
    with sessions() as s:
        [rej] = repo.rejected_inputs(s)
        c = repo.counts(s)
        assert s.scalar(select(func.count()).select_from(CheckinRow)) == 1
    assert (rej.reason, rej.checkin_id, [e["loc"] for e in rej.errors]) == ("checkin_id_conflict", "dup-1", ["checkin_id"])
    assert "another patient's check-in" in rej.errors[0]["msg"] and "NOT evaluated" in rej.errors[0]["msg"]
    assert "would be " in rej.errors[0]["msg"]
    assert b'"P-other"' in bytes(rej.raw_payload)
    with sessions() as s:
        assert s.scalar(select(CheckinRow.patient_id)) == "P-zzz"
    assert (c["checkins"], c["rejected"], c["duplicates"]) == (1, 1, 0)
    assert backlog(r, settings.stream_name, settings.group)["pending"] == 0


def test_replay_after_commit_but_before_ack_changes_nothing(r, sessions, settings, consumer, r_factory=None):
    """A worker that committed and died before XACK: the entries come back; nothing is counted twice."""
    submit(r, settings.stream_name, [febrile("c1"), "{bad json", hypotensive("c2", minutes=5)])
    entries = consumer.read(10)
    process(entries, sessions=sessions, now=NOW)  # committed ... and the worker dies here (no ack)
    time.sleep(settings.claim_min_idle_s + 0.2)
    other = Consumer(r, settings.stream_name, settings.group, "rescuer")
    report = run(r, sessions, settings, other)
    assert report.reclaimed == 3 and report.redelivered == 3
    assert (report.evaluated, report.rejected, report.duplicates) == (0, 0, 0)
    with sessions() as s:
        c = repo.counts(s)
        assert s.scalar(select(func.count()).select_from(TransitionRow)) == 2
    assert (c["evaluated"], c["rejected"], c["duplicates"]) == (2, 1, 0)
    assert backlog(r, settings.stream_name, settings.group)["pending"] == 0


def test_entries_of_a_dead_worker_are_reclaimed_and_processed_once(r, sessions, settings, consumer):
    submit(r, settings.stream_name, [febrile(f"c{i}", f"P-{i}") for i in range(5)])
    consumer.read(10)  # delivered to a worker that dies before committing anything
    other = Consumer(r, settings.stream_name, settings.group, "rescuer")
    assert run(r, sessions, settings, other).evaluated == 0  # not idle long enough yet
    time.sleep(settings.claim_min_idle_s + 0.2)
    report = run(r, sessions, settings, other)
    assert (report.reclaimed, report.evaluated) == (5, 5)
    with sessions() as s:
        assert repo.counts(s)["evaluated"] == 5


def test_poison_entry_is_set_aside_after_max_deliveries(r, sessions, settings, consumer):
    settings = settings.model_copy(update={"max_deliveries": 2, "claim_min_idle_s": 0.05})
    submit(r, settings.stream_name, [febrile("poison")])
    consumer.read(1)  # delivery 1
    for _ in range(2):  # deliveries 2 and 3, each "crashing" before commit
        time.sleep(0.1)
        consumer.reclaim(0.05, 10)
    time.sleep(0.1)
    report = run(r, sessions, settings, Consumer(r, settings.stream_name, settings.group, "x"))
    assert report.rejected == 1 and report.evaluated == 0
    with sessions() as s:
        [rej] = repo.rejected_inputs(s)
    assert rej.reason == "too_many_deliveries" and rej.delivery_count == 4 and rej.checkin_id == "poison"
    assert "CRS_MAX_DELIVERIES=2" in rej.errors[0]["msg"]
    assert json.loads(rej.raw_payload)["checkin_id"] == "poison"
    assert backlog(r, settings.stream_name, settings.group)["pending"] == 0


def test_pending_entry_deleted_from_the_stream_is_recorded_not_ignored(r, sessions, settings, consumer):
    [sid] = submit(r, settings.stream_name, [febrile("gone")])
    consumer.read(1)
    r.xdel(settings.stream_name, sid)  # e.g. an operator trimmed the stream
    time.sleep(settings.claim_min_idle_s + 0.2)
    run(r, sessions, settings, consumer)
    with sessions() as s:
        [rej] = repo.rejected_inputs(s)
    assert rej.reason == "vanished" and rej.stream_id == sid and "resubmit" in rej.errors[0]["msg"]


def test_batch_is_evaluated_in_recorded_order_per_patient(r, sessions, settings, consumer):
    # submitted newest first; evaluated oldest first, each compared with the one before
    submit(r, settings.stream_name, [hypotensive("late", minutes=60), febrile("mid", minutes=30), checkin("early")])
    run(r, sessions, settings, consumer)
    with sessions() as s:
        kinds = {t.checkin_id: t.kinds for t in repo.transitions(s)}
        [latest] = repo.latest_evaluations(s)
    assert kinds["early"] == ["first"]
    assert "crs_worse" in kinds["mid"] and "crs_worse" in kinds["late"]
    assert latest.checkin_id == "late"


def test_out_of_order_checkin_is_stored_but_never_the_latest_state(r, sessions, settings, consumer):
    submit(r, settings.stream_name, [hypotensive("newer", minutes=60)])
    run(r, sessions, settings, consumer)
    submit(r, settings.stream_name, [checkin("older", minutes=10)])
    report = run(r, sessions, settings, consumer)
    assert report.out_of_order == 1 and report.evaluated == 1 and report.transitions == 0
    with sessions() as s:
        rows = {e.checkin_id: e for e in repo.evaluations(s)}
        [latest] = repo.latest_evaluations(s)
        assert s.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action == "checkin.out_of_order")) == 1
    assert rows["older"].out_of_order and not rows["newer"].out_of_order
    assert latest.checkin_id == "newer"
    # a later check-in compares against "newer", not against the out-of-order one
    submit(r, settings.stream_name, [hypotensive("newest", minutes=90)])
    assert run(r, sessions, settings, consumer).transitions == 0  # same state as "newer": nothing worse


def test_enrollment_fills_age_and_therapy(r, sessions, settings, consumer):
    with sessions.begin() as s:
        repo.enroll(s, repo.Enrollment("P-7", age_years=8, therapy="tisagenlecleucel",
                                       therapy_start=dt.date(2026, 11, 15)), now=NOW, actor="test")
    submit(r, settings.stream_name, [febrile("kid", "P-7")])
    run(r, sessions, settings, consumer)
    with sessions() as s:
        [row] = repo.evaluations(s)
    assert row.result["age_years"] == 8 and row.result["day_since_therapy"] == 5


def test_drain_loops_over_full_batches(r, sessions, make_settings):
    settings = make_settings(batch_size=7)
    submit(r, settings.stream_name, [checkin(f"c{i}", f"P-{i % 3}", minutes=i) for i in range(30)], group=settings.group)
    consumer = Consumer(r, settings.stream_name, settings.group, "loop")
    report = drain(r=r, sessions=sessions, settings=settings, consumer=consumer, budget_s=30)
    assert report.evaluated == 30 and report.batches == 5
    with sessions() as s:
        assert repo.counts(s)["evaluated"] == 30


def test_database_down_nothing_is_read_or_acknowledged(r, settings, consumer, backend):
    submit(r, settings.stream_name, [febrile("c1"), febrile("c2", minutes=1)])
    if backend == "postgresql":
        dead = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")  # connection refused
    else:
        dead = make_engine("sqlite:////nonexistent-dir-crs/sub/x.db") if False else make_engine(
            "postgresql+psycopg://postgres@127.0.0.1:1/none")
    with pytest.raises(StoreUnavailable):
        run(r, session_factory(dead), settings, consumer)
    assert backlog(r, settings.stream_name, settings.group) == {"pending": 0, "lag": 2}


@pytest.mark.parametrize(
    "doc",
    [
        checkin("nul\x00id"),  # valid per the schema; PostgreSQL text cannot hold NUL
        checkin("surrogate", note="\ud800 unpaired"),
        checkin("nul-note", note="a\x00b"),
    ],
    ids=["nul-in-id", "surrogate-in-note", "nul-in-note"],
)
def test_values_a_database_cannot_hold_reject_that_entry_only(r, sessions, settings, consumer, doc):
    raw = json.dumps(doc).encode()  # ASCII JSON with \\u escapes: valid UTF-8, valid JSON
    submit(r, settings.stream_name, [raw, febrile("fine", "P-9")])
    report = run(r, sessions, settings, consumer)
    assert report.acked == 2 and report.evaluated + report.rejected == 2
    with sessions() as s:
        ids = {e.checkin_id for e in repo.evaluations(s)}
        rejected = repo.rejected_inputs(s)
    assert "fine" in ids
    if rejected:
        [rej] = rejected
        assert rej.reason in {"unstorable", "invalid"} and rej.raw_payload == raw and "\x00" not in (rej.checkin_id or "")


def test_a_session_cut_off_mid_transaction_cannot_block_its_patients(r, pg_url, make_settings):
    """A worker that vanished inside a transaction (half-open connection) keeps its patient locks
    on the server; the lock timeout fails the waiting batch (left unacknowledged), and the server
    ends the orphaned session, after which the batch goes through."""
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError, OperationalError

    from worker.store.db import engine_for, upgrade

    settings = make_settings(database_url=pg_url, db_idle_in_transaction_timeout_s=1.5, db_lock_timeout_s=0.3)
    engine = engine_for(settings)
    upgrade(engine)
    sessions = session_factory(engine)
    consumer = Consumer(r, settings.stream_name, settings.group, "c")
    orphan = engine.connect()
    orphan.execute(text("SELECT pg_advisory_xact_lock(hashtextextended('P-1', 0))"))  # ... and never a word again
    submit(r, settings.stream_name, [febrile("c1", "P-1")], group=settings.group)
    with pytest.raises(OperationalError):
        run(r, sessions, settings, consumer)
    assert backlog(r, settings.stream_name, settings.group)["pending"] == 1  # not acknowledged
    time.sleep(settings.claim_min_idle_s + 0.2)  # > idle-in-transaction timeout: the server ended the orphan
    report = run(r, sessions, settings, Consumer(r, settings.stream_name, settings.group, "other"))
    assert report.evaluated == 1
    with pytest.raises(DBAPIError, match="idle-in-transaction timeout"):
        orphan.execute(text("SELECT 1"))
    orphan.invalidate()
    engine.dispose()


def test_an_oversized_payload_is_refused_and_its_head_kept(r, sessions, settings, consumer):
    from worker.pipeline import KEEP_OVERSIZED_BYTES, MAX_PAYLOAD_BYTES

    huge = b'{"checkin_id": "big", "note": "' + b"x" * MAX_PAYLOAD_BYTES + b'"}'
    submit(r, settings.stream_name, [huge])
    run(r, sessions, settings, consumer)
    with sessions() as s:
        [rej] = repo.rejected_inputs(s)
    assert rej.reason == "too_large" and rej.raw_payload == huge[:KEEP_OVERSIZED_BYTES]
    assert str(len(huge)) in rej.errors[0]["msg"]


def test_a_future_dated_checkin_cannot_hide_the_ones_after_it(r, sessions, settings, consumer):
    """A device clock a year ahead: evaluated and audited, but later real check-ins still become
    the patient's latest state and still produce transitions."""
    future = checkin("clock-ahead", recorded_at="2027-11-20T06:00:00Z")
    submit(r, settings.stream_name, [future])
    run(r, sessions, settings, consumer, now=NOW)
    submit(r, settings.stream_name, [hypotensive("real-later", minutes=400)])  # 12:40, after the first batch
    report = run(r, sessions, settings, consumer, now=NOW + dt.timedelta(hours=1))
    assert report.out_of_order == 0 and report.transitions == 1
    with sessions() as s:
        [latest] = repo.latest_evaluations(s)
        rows = {e.checkin_id: e for e in repo.evaluations(s)}
        audited = s.scalars(select(AuditEntry.action).where(AuditEntry.subject == "clock-ahead")).all()
    assert latest.checkin_id == "real-later"
    assert rows["clock-ahead"].effective_at == NOW and rows["clock-ahead"].recorded_at.year == 2027
    assert "checkin.future_dated" in audited


def test_an_entry_committed_by_a_slow_worker_is_not_called_poison(r, sessions, settings, consumer):
    """Reclaimed past the delivery limit, but its effects are committed: acknowledged, not rejected."""
    settings = settings.model_copy(update={"max_deliveries": 1, "claim_min_idle_s": 0.05})
    submit(r, settings.stream_name, [febrile("slow")])
    entries = consumer.read(1)
    time.sleep(0.1)
    consumer.reclaim(0.05, 10)  # a second delivery while the first worker is still busy ...
    process(entries, sessions=sessions, now=NOW)  # ... which then commits (and dies before XACK)
    time.sleep(0.1)
    report = run(r, sessions, settings, Consumer(r, settings.stream_name, settings.group, "third"))
    assert (report.rejected, report.redelivered, report.acked) == (0, 1, 1)
    with sessions() as s:
        assert repo.counts(s)["evaluated"] == 1 and repo.rejected_inputs(s) == []


def test_a_deadlocked_batch_is_run_again_at_once(r, pg_url, make_settings):
    """A real deadlock on PostgreSQL: another transaction holds patient P-2's lock and then asks for
    P-1's while the batch holds P-1 and waits for P-2. The server aborts one of them; when it is the
    batch, the batch is run again at once (not left for CRS_CLAIM_MIN_IDLE_S) and commits once."""
    import threading

    from sqlalchemy import text

    from worker.store.db import engine_for, upgrade

    settings = make_settings(database_url=pg_url)
    engine = engine_for(settings)
    upgrade(engine)
    sessions = session_factory(engine)
    consumer = Consumer(r, settings.stream_name, settings.group, "c")
    submit(r, settings.stream_name, [febrile("d1", "P-1"), febrile("d2", "P-2")], group=settings.group)
    other = engine.connect()
    other.execute(text("SELECT pg_advisory_xact_lock(hashtextextended('P-2', 0))"))
    result: dict = {}

    def drain_it() -> None:
        try:
            result["report"] = run(r, sessions, settings, consumer)
        except Exception as exc:  # noqa: BLE001 - reported below
            result["error"] = exc

    worker = threading.Thread(target=drain_it)
    worker.start()
    waiting = text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()")
    deadline = time.monotonic() + 10
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as probe:  # a fresh snapshot per query
        while probe.execute(waiting).scalar() == 0:  # the batch holds P-1 and waits for P-2
            assert time.monotonic() < deadline, "the batch never waited for P-2"
            time.sleep(0.02)
    try:  # closes the cycle; after deadlock_timeout (1 s) the server aborts the batch, which waited first
        other.execute(text("SELECT pg_advisory_xact_lock(hashtextextended('P-1', 0))"))
    finally:
        other.rollback()  # releases both: the batch's second run goes through
        other.close()
    worker.join(30)
    assert "error" not in result, result.get("error")
    assert result["report"].evaluated == 2 and result["report"].acked == 2
    with sessions() as s:
        assert s.scalar(select(func.count()).select_from(EvaluationRow)) == 2
    assert backlog(r, settings.stream_name, settings.group)["pending"] == 0
    engine.dispose()


def test_latest_evaluations_is_one_query_whatever_the_number_of_patients(r, sessions, settings, consumer, engine):
    """`status` lists each patient's latest evaluation, most urgent first, with one query (it used
    to make one per patient)."""
    from sqlalchemy import event

    docs = [febrile(f"n-{i}", f"P-{i:03d}", minutes=i % 7) for i in range(60)]
    docs += [hypotensive(f"h-{i}", f"P-{i:03d}", minutes=30) for i in range(0, 60, 10)]  # later and worse
    submit(r, settings.stream_name, docs, group=settings.group)
    while run(r, sessions, settings, consumer).read:
        pass
    statements = []

    def count(conn, cursor, statement, *args):  # noqa: ANN001 - SQLAlchemy's event signature
        statements.append(statement)

    with sessions() as s:
        s.connection()  # the session's connection is ready: only latest_evaluations' queries count
        event.listen(engine, "before_cursor_execute", count)
        try:
            latest = repo.latest_evaluations(s, limit=1000)
        finally:
            event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 1
    assert len(latest) == 60 and len({e.patient_id for e in latest}) == 60
    assert [e.checkin_id for e in latest[:6]] == [f"h-{i}" for i in range(0, 60, 10)]  # the worse ones first
    assert {e.checkin_id for e in latest[6:]} == {f"n-{i}" for i in range(60) if i % 10}
