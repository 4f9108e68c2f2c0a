"""The pipeline's two batch writers (worker.store.batch_writer) on PostgreSQL: binary COPY and
multi-row INSERT leave the same rows (every column, ids included) for the same stream, including
in-batch duplicates, resubmissions of stored check-ins, replays after a crash, out-of-order and
future-dated check-ins; a check-in stored by another transaction after CopyWriter looked sends the
batch down the per-entry path with the same result; bad values and lost connections surface as
SQLAlchemy errors the pipeline already handles."""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DataError, OperationalError

from tests.integration.conftest import _pg_admin
from tests.integration.helpers import checkin, febrile, hypotensive
from worker import pipeline
from worker.intake import Consumer, submit
from worker.store import batch_writer
from worker.store.db import session_factory
from worker.store.models import (
    AuditEntry,
    CheckinRow,
    DuplicateCheckin,
    EvaluationRow,
    RejectedInput,
    TransitionRow,
)

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
TABLES = (CheckinRow, EvaluationRow, TransitionRow, DuplicateCheckin, RejectedInput, AuditEntry)


pytestmark = pytest.mark.parametrize("backend", ["postgresql"])  # COPY is PostgreSQL's; twins: two databases


def dump(engine) -> dict[str, list[tuple]]:
    """Every row of the pipeline's tables, stream ids replaced by their rank (each run has its own
    stream, and both submit the same entries in the same order)."""
    with engine.connect() as c:
        rows = {m.__tablename__: [tuple(r) for r in c.execute(select(m.__table__).order_by(m.__table__.c.id))] for m in TABLES}
        ids = c.execute(text("SELECT stream_id FROM checkins UNION SELECT stream_id FROM duplicate_checkins "
                             "UNION SELECT stream_id FROM rejected_inputs")).scalars().all()
    rank = {sid: f"entry-{i}" for i, sid in enumerate(sorted(ids, key=lambda s: tuple(map(int, s.split("-")))))}

    def plain(value):
        if isinstance(value, str):
            return rank.get(value, value)
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        return value

    out = {table: [tuple(plain(v) for v in row) for row in table_rows] for table, table_rows in rows.items()}
    # INSERT ... ON CONFLICT DO NOTHING draws a sequence value even for a row it skips, so the
    # check-ins' ids differ between the writers after a replay: compared through their checkin_id.
    checkin_of = {row[0]: row[1] for row in out["checkins"]}
    out["checkins"] = [row[1:] for row in out["checkins"]]
    out["evaluations"] = [(row[0], checkin_of[row[1]], *row[2:]) for row in out["evaluations"]]
    return out


def by_checkin(rows: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """``dump`` without evaluation and transition ids (a rolled-back COPY keeps the sequence values
    it reserved): evaluations and transitions named by their check-in instead."""
    checkin_of = {row[0]: row[1] for row in rows["evaluations"]}
    return dict(rows, evaluations=[row[1:] for row in rows["evaluations"]],
                transitions=[(checkin_of[row[1]], checkin_of.get(row[2]), *row[3:]) for row in rows["transitions"]])


def assert_same(a: dict[str, list[tuple]], b: dict[str, list[tuple]]) -> None:
    for table, rows in a.items():
        for i, (x, y) in enumerate(zip(rows, b[table])):
            assert x == y, f"{table} row {i}:\n  copy   {x}\n  insert {y}"
        assert len(rows) == len(b[table]), table


class BlindCopyWriter(batch_writer.CopyWriter):
    """A CopyWriter whose look-up for stored checkin_id finds nothing: as if another transaction
    stored one of them right after the look-up."""

    def checkins(self, rows):
        original = self.session.execute

        def execute(statement, *args, **kwargs):
            if "SELECT checkin_id FROM checkins" in str(statement):
                return original(text("SELECT NULL::text AS checkin_id WHERE false"))
            return original(statement, *args, **kwargs)

        self.session.execute = execute
        try:
            return super().checkins(rows)
        finally:
            del self.session.execute


def stream(seed: int) -> list[list[dict]]:
    """Batches of check-ins: several per patient, shuffled, with in-batch duplicates, resubmissions
    of stored check-ins (same and changed payload), late (out-of-order) and future-dated ones."""
    rnd = random.Random(seed)
    makers = [checkin, febrile, hypotensive,
              lambda cid, pid, m: checkin(cid, pid, m, neuro={"ice_score": 5}),
              lambda cid, pid, m: checkin(cid, pid, m, symptoms=["chest_pain"])]
    batches, sent, n = [], [], 0
    for b in range(4):
        batch = []
        for _ in range(30):
            n += 1
            pid = f"P-{rnd.randrange(8):02d}"
            batch.append(rnd.choice(makers)(f"c{n:03d}", pid, b * 100 + rnd.uniform(0, 90)))
        batch.append(dict(batch[0]))  # the same check-in twice in one batch
        if sent:
            batch.append(dict(rnd.choice(sent)))  # a resubmission of a stored one
            changed = dict(rnd.choice(sent), source="clinician")
            batch.append(changed)  # the same checkin_id with another payload
        batch.append(checkin(f"late{b}", "P-01", -500 + b))  # older than the patient's latest
        batch.append(febrile(f"future{b}", "P-02", 60 * 24 * 30))  # a month after NOW
        rnd.shuffle(batch)
        sent.extend(batch)
        batches.append(batch)
    return batches


def run_stream(engine, r, make_settings, namespace, batches, writer) -> dict[str, list[tuple]]:
    settings = make_settings(namespace=f"{namespace}-{uuid.uuid4().hex[:6]}")  # under the fixture's namespace: cleaned up
    consumer = Consumer(r, settings.stream_name, settings.group, "test-consumer")
    consumer.ensure_group()
    sessions = session_factory(engine)
    original = batch_writer.writer_for
    batch_writer.writer_for = writer
    try:
        for i, batch in enumerate(batches):
            submit(r, settings.stream_name, batch)
            now = NOW + dt.timedelta(minutes=i)
            entries = consumer.read(1000)
            pipeline.process(entries, sessions=sessions, now=now)
            pipeline.process(entries, sessions=sessions, now=now)  # a replay after a crash before the ack
            consumer.ack(e.stream_id for e in entries)
    finally:
        batch_writer.writer_for = original
    return dump(engine)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_copy_and_insert_writers_leave_the_same_rows(twins, r, make_settings, namespace, seed):
    batches = stream(seed)
    copied = run_stream(twins[0], r, make_settings, namespace, batches, batch_writer.CopyWriter)
    inserted = run_stream(twins[1], r, make_settings, namespace, batches, batch_writer.InsertWriter)
    assert_same(copied, inserted)
    assert len(copied["duplicate_checkins"]) >= 3 and len(copied["transitions"]) > 10
    assert {a[3] for a in copied["audit_log"]} >= {"checkin.out_of_order", "checkin.future_dated"}


def test_postgresql_is_the_copy_writer(twins):
    with session_factory(twins[0])() as s:
        assert isinstance(batch_writer.writer_for(s), batch_writer.CopyWriter)


def test_the_named_sequences_are_the_tables_own(twins):
    with twins[0].connect() as c:
        for table, sequence in batch_writer.SEQUENCES.items():
            assert c.scalar(text(f"SELECT pg_get_serial_sequence('{table}', 'id')")) == f"public.{sequence}"


def test_a_checkin_stored_meanwhile_sends_the_batch_down_the_per_entry_path(twins, r, make_settings, namespace, capsys):
    """Another transaction stores a checkin_id after CopyWriter's look-up (simulated: the look-up
    sees nothing): the COPY is refused by the unique constraint, the savepoint rolls back, and the
    per-entry path records the duplicate; the rest of the batch is stored as usual."""
    batches = [[febrile("a1", "P-01", 0), checkin("a2", "P-02", 1)], [febrile("a1", "P-01", 0), hypotensive("a3", "P-01", 6)]]
    expected = run_stream(twins[1], r, make_settings, namespace, batches, batch_writer.InsertWriter)

    got = run_stream(twins[0], r, make_settings, namespace, batches, BlindCopyWriter)
    assert_same(by_checkin(got), by_checkin(expected))
    assert [row[2] for row in got["duplicate_checkins"]] == ["a1"]
    refused = [line for line in capsys.readouterr().out.splitlines() if "batch_fast_path_refused" in line]
    # the replay of batch 1, batch 2 (a1 is stored) and its replay; batch 1 itself went through COPY
    assert len(refused) == 3 and all("error_type=IntegrityError" in line for line in refused)


def test_a_value_the_column_refuses_is_a_data_error(twins):
    row = dict(checkin_id="x" * 129, patient_id="P-01", recorded_at=NOW, received_at=NOW, stream_id="1-1", payload={})
    with session_factory(twins[0])() as s, pytest.raises(DataError, match="character varying"):
        batch_writer.copy_rows(s, CheckinRow.__table__, [row])


def test_a_naive_timestamp_is_refused_before_anything_is_sent(twins):
    row = dict(checkin_id="c1", patient_id="P-01", recorded_at=NOW.replace(tzinfo=None), received_at=NOW, stream_id="1-1", payload={})
    with session_factory(twins[0])() as s:
        with pytest.raises(ValueError, match="checkins.recorded_at: naive"):
            batch_writer.copy_rows(s, CheckinRow.__table__, [row])
        assert s.scalar(text("SELECT count(*) FROM checkins")) == 0


def test_json_values_are_stored_as_written_even_where_orjson_refuses(twins):
    """JSON columns go to the driver as plain data (serialised by the cursor's dumper): an integer
    beyond 64 bits, which orjson refuses, is written by json.dumps and read back exactly."""
    payload = {"big": 2 ** 70, "text": "ünï \u2028 \"q\"", "when": dt.datetime(2026, 11, 20, 1, 2, 3, 4, tzinfo=dt.UTC),
               "nested": [{"a": None}, 1.5, True]}
    row = dict(checkin_id="c1", patient_id="P-01", recorded_at=NOW, received_at=NOW, stream_id="1-1", payload=payload)
    with session_factory(twins[0]).begin() as s:
        batch_writer.copy_rows(s, CheckinRow.__table__, [row])
    with session_factory(twins[0])() as s:
        stored = s.scalar(text("SELECT CAST(payload AS text) FROM checkins WHERE checkin_id = 'c1'"))
    assert json.loads(stored) == dict(payload, when="2026-11-20T01:02:03.000004+00:00")


def test_a_json_value_that_cannot_be_serialised_is_a_type_error_and_nothing_is_stored(twins):
    row = dict(checkin_id="c1", patient_id="P-01", recorded_at=NOW, received_at=NOW, stream_id="1-1", payload={"x": object()})
    with session_factory(twins[0])() as s:
        with pytest.raises(TypeError, match="not JSON serializable"):
            batch_writer.copy_rows(s, CheckinRow.__table__, [row])
        s.rollback()
        assert s.scalar(text("SELECT count(*) FROM checkins")) == 0


def test_a_plan_of_one_column_sends_rows_of_one_value(twins):
    statement, types, values = batch_writer._plan(CheckinRow.__table__, [{"checkin_id": "a"}, {"checkin_id": "b"}], [7, 8])
    assert statement == "COPY checkins (id, checkin_id) FROM STDIN (FORMAT BINARY)"
    assert types == ["int8", "text"] and values == [(7, "a"), (8, "b")]


def test_a_connection_lost_during_copy_is_an_operational_error_and_invalidated(twins):
    row = dict(checkin_id="c1", patient_id="P-01", recorded_at=NOW, received_at=NOW, stream_id="1-1", payload={})
    engine = twins[0]
    with session_factory(engine)() as s:
        pid = s.scalar(text("SELECT pg_backend_pid()"))
        with _pg_admin() as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(OperationalError) as caught:
            batch_writer.copy_rows(s, CheckinRow.__table__, [row])
        assert caught.value.connection_invalidated
    with session_factory(engine)() as s:  # the pool hands out a working connection afterwards
        assert s.scalar(text("SELECT count(*) FROM checkins")) == 0


ODD_IDS = ['a,b', 'q"uote', 'back\\slash', '{brace}', ' spaced ', 'ünï-cödé', 'emoji-\U0001f489', "tab\there", "'single'", "[1,2]"]


def test_checkin_ids_of_any_characters_are_recognised_when_submitted_again(twins, r, make_settings, namespace, capsys):
    """The writer asks which checkin_id are stored already with ONE JSON-text parameter
    (repo.id_list): ids holding the characters of JSON, of array literals and of SQL quoting must
    come back exactly, or a resubmission would be COPYed again and refused by the unique constraint
    (the per-entry path would then hide the miss, so the test also asserts the fast path held)."""
    first = [febrile(cid, f"P-{i:02d}", i) for i, cid in enumerate(ODD_IDS)]
    again = [dict(doc) for doc in first[:5]] + [dict(doc, source="clinician") for doc in first[5:]]
    batches = [first, again + [checkin("plain", "P-99", 30)]]
    expected = run_stream(twins[1], r, make_settings, namespace, batches, batch_writer.InsertWriter)
    got = run_stream(twins[0], r, make_settings, namespace, batches, batch_writer.CopyWriter)
    assert_same(got, expected)
    assert sorted(row[2] for row in got["duplicate_checkins"]) == sorted(ODD_IDS[:5])  # resent as they were
    assert sorted(row[3] for row in got["rejected_inputs"]) == sorted(ODD_IDS[5:])  # the ids reused for other content
    assert {row[4] for row in got["rejected_inputs"]} == {"checkin_id_conflict"}
    assert sorted(row[0] for row in got["checkins"]) == sorted([*ODD_IDS, "plain"])
    assert "batch_fast_path_refused" not in capsys.readouterr().out
