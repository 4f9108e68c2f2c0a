"""drain() reads and evaluates batch k+1 while batch k's rows are written (pipeline.ReadAhead and
CopyWriter.flush), on PostgreSQL: the same rows as one batch at a time; batch k+1 really is read
before batch k commits; a failure of batch k releases what was read ahead (pending, reclaimable
at once, delivery counts unchanged); a failure while reading ahead still lets batch k commit."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import event, select, text

from tests.integration.helpers import checkin, febrile, hypotensive
from tests.integration.test_batch_writer import BlindCopyWriter
from worker import pipeline
from worker.intake import Consumer, backlog, submit
from worker.store import repo
from worker.store.db import session_factory
from worker.store.models import AuditEntry, CheckinRow, EvaluationRow, TransitionRow

pytestmark = pytest.mark.parametrize("backend", ["postgresql"])  # the overlap needs CopyWriter
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def stream() -> list[dict]:
    """41 check-ins of 5 patients, interleaved, getting worse and better across batch boundaries."""
    kinds = [checkin, febrile, hypotensive, lambda cid, pid, m: checkin(cid, pid, m, neuro={"ice_score": 6})]
    return [kinds[(i * 7 // 5) % 4](f"c{i:02d}", f"P-{i % 5}", i) for i in range(41)]


def rows(engine) -> dict[str, list[tuple]]:
    with engine.connect() as c:
        out = {m.__tablename__: [tuple(r) for r in c.execute(select(m.__table__).order_by(m.__table__.c.id))]
               for m in (EvaluationRow, TransitionRow, AuditEntry)}
        out["checkins"] = [tuple(r)[1:5] + tuple(r)[6:] for r in c.execute(select(CheckinRow.__table__).order_by(CheckinRow.id))]
    return out  # check-ins without id and stream_id (each run has its own stream)


def test_overlapped_drain_leaves_what_one_batch_at_a_time_leaves(twins, r, make_settings, namespace):
    results = []
    for i, engine in enumerate(twins):
        settings = make_settings(namespace=f"{namespace}-{i}", batch_size=6)
        consumer = Consumer(r, settings.stream_name, settings.group, "c")
        submit(r, settings.stream_name, stream(), group=settings.group)
        sessions = session_factory(engine)
        if i == 0:
            report = pipeline.drain(r=r, sessions=sessions, settings=settings, consumer=consumer, clock=lambda: NOW, budget_s=60)
        else:
            report = pipeline.DrainReport()
            while (step := pipeline.drain_once(r=r, sessions=sessions, settings=settings, consumer=consumer, now=NOW)).read:
                report.add(step)
        assert (report.evaluated, report.acked, report.batches) == (41, 41, 7)
        assert backlog(r, settings.stream_name, settings.group) == {"pending": 0, "lag": 0}
        results.append(rows(engine))
    assert results[0] == results[1]
    assert len(results[0]["transitions"]) > 10


def test_the_next_batch_is_read_before_this_one_commits(engine, r, make_settings, monkeypatch):
    settings = make_settings(batch_size=5)
    submit(r, settings.stream_name, [febrile(f"c{i}", f"P-{i}", i) for i in range(12)], group=settings.group)
    consumer = Consumer(r, settings.stream_name, settings.group, "c")
    events: list[str] = []
    read = consumer.read
    monkeypatch.setattr(consumer, "read", lambda count: (events.append("read"), read(count))[1])
    event.listen(engine, "commit", lambda conn: events.append("commit"))
    report = pipeline.drain(r=r, sessions=session_factory(engine), settings=settings, consumer=consumer, budget_s=60)
    assert report.evaluated == 12
    # contexts and reclaim commit nothing; each batch's transaction is one commit
    batch_events = [e for e in events if e in ("read", "commit")]
    assert batch_events[:4] == ["read", "read", "commit", "read"], batch_events


def test_a_failed_batch_releases_what_was_read_ahead(engine, r, make_settings, monkeypatch):
    settings = make_settings(batch_size=5, claim_min_idle_s=30.0, drain_budget_s=10.0)
    submit(r, settings.stream_name, [febrile(f"c{i}", f"P-{i}", i) for i in range(12)], group=settings.group)
    consumer = Consumer(r, settings.stream_name, settings.group, "dies")
    sessions = session_factory(engine)

    def alerts(session, stored, now):  # runs after the rows are written, inside the transaction
        raise RuntimeError("bug in the alert hook")

    with pytest.raises(RuntimeError, match="bug in the alert hook"):
        pipeline.drain(r=r, sessions=sessions, settings=settings, consumer=consumer, alerts=alerts)
    with sessions() as s:
        assert repo.counts(s)["checkins"] == 0  # batch 1 rolled back
    pending = r.xpending_range(settings.stream_name, settings.group, "-", "+", 20)
    idle = {p["message_id"].decode(): p["time_since_delivered"] for p in pending}
    assert len(idle) == 10 and all(p["times_delivered"] == 1 for p in pending)
    released = sorted(sid for sid, ms in idle.items() if ms >= 30_000)
    assert len(released) == 5  # batch 2, read ahead; batch 1 waits for claim_min_idle_s as before
    # the next drain takes the released entries over at once and processes everything
    other = Consumer(r, settings.stream_name, settings.group, "next")
    report = pipeline.drain(r=r, sessions=sessions, settings=settings, consumer=other)
    assert report.reclaimed == 5 and report.evaluated == 7  # 5 released + the 2 never read
    with sessions() as s:
        stored = set(s.scalars(text("SELECT stream_id FROM checkins")))
    assert set(released) <= stored


def test_a_failure_while_reading_ahead_lets_the_current_batch_commit(engine, r, make_settings, monkeypatch):
    settings = make_settings(batch_size=5, claim_min_idle_s=30.0)
    submit(r, settings.stream_name, [febrile(f"c{i}", f"P-{i}", i) for i in range(12)], group=settings.group)
    consumer = Consumer(r, settings.stream_name, settings.group, "c")
    sessions = session_factory(engine)
    real = repo.contexts
    calls = {"n": 0}

    def contexts(session, pids):
        calls["n"] += 1
        if calls["n"] == 2:  # the read-ahead of batch 2
            raise ConnectionError("enrollment read failed")
        return real(session, pids)

    monkeypatch.setattr(repo, "contexts", contexts)
    with pytest.raises(ConnectionError):
        pipeline.drain(r=r, sessions=sessions, settings=settings, consumer=consumer)
    with sessions() as s:
        assert repo.counts(s)["evaluated"] == 5  # batch 1 committed ...
    pending = r.xpending_range(settings.stream_name, settings.group, "-", "+", 20)
    assert len(pending) == 5 and all(p["time_since_delivered"] >= 30_000 for p in pending)  # ... and acked; batch 2 released


def test_a_checkin_stored_meanwhile_is_caught_in_the_helper_thread_too(engine, r, make_settings):
    """The overlapped COPY (helper thread) hits the unique constraint: the batch still takes the
    per-entry path and records the duplicate; the switch interval is restored."""
    import sys

    from worker.store import batch_writer

    settings = make_settings(batch_size=5)
    consumer = Consumer(r, settings.stream_name, settings.group, "c")
    sessions = session_factory(engine)
    submit(r, settings.stream_name, [febrile("a1", "P-1", 0)], group=settings.group)
    pipeline.drain(r=r, sessions=sessions, settings=settings, consumer=consumer)
    submit(r, settings.stream_name, [febrile("a1", "P-1", 0)]
           + [febrile(f"b{i}", f"P-{i}", i) for i in range(2, 11)], group=settings.group)

    switch = sys.getswitchinterval()
    original = batch_writer.writer_for
    batch_writer.writer_for = lambda session, overlapped=False: BlindCopyWriter(session, overlapped=overlapped)
    try:
        report = pipeline.drain(r=r, sessions=sessions, settings=settings, consumer=consumer)
    finally:
        batch_writer.writer_for = original
    assert (report.evaluated, report.duplicates, report.acked) == (9, 1, 10)
    assert sys.getswitchinterval() == switch
    with sessions() as s:
        assert repo.counts(s)["evaluated"] == 10


def test_an_error_while_the_helper_writes_waits_for_it_before_rolling_back(engine, r, make_settings, monkeypatch):
    """A bug between the check-ins' COPY (already running in the helper thread) and the flush: the
    batch fails only after the helper has finished with the connection, nothing is committed, and
    the next drain works on the same pool."""
    from worker.store import batch_writer

    settings = make_settings(batch_size=5, claim_min_idle_s=30.0)
    consumer = Consumer(r, settings.stream_name, settings.group, "c")
    sessions = session_factory(engine)
    submit(r, settings.stream_name, [febrile(f"c{i}", f"P-{i}", i) for i in range(12)], group=settings.group)
    finished = []
    real_run = batch_writer._run

    def slow_run(driver, plans):
        import time

        time.sleep(0.2)  # still writing when the bug strikes
        result = real_run(driver, plans)
        finished.append(time.monotonic())
        return result

    def bug(self, rows):
        raise RuntimeError("bug while building evaluation rows")

    monkeypatch.setattr(batch_writer, "_run", slow_run)
    monkeypatch.setattr(batch_writer.CopyWriter, "evaluations", bug)
    with pytest.raises(RuntimeError, match="bug while building"):
        pipeline.drain(r=r, sessions=sessions, settings=settings, consumer=consumer)
    assert finished  # the helper's COPY ran to its end before the error left the batch
    monkeypatch.undo()
    with sessions() as s:
        assert repo.counts(s)["checkins"] == 0
    report = pipeline.drain(r=r, sessions=sessions, settings=settings, consumer=Consumer(r, settings.stream_name, settings.group, "d"))
    assert report.evaluated == 7  # the 7 never read; the failed batch waits for claim_min_idle_s, as before


def test_a_cut_short_wait_for_the_helper_is_resumed_by_the_next_close(engine, monkeypatch):
    """Celery's soft time limit (a signal, raising in the drain thread) can interrupt close() while
    it waits for the helper: the close() that always follows still waits for the helper before the
    session moves on."""
    import signal
    import time

    from worker.store import batch_writer

    class TimeLimit(Exception):
        pass

    def on_alarm(signum, frame):
        raise TimeLimit

    real_run = batch_writer._run
    done = []
    monkeypatch.setattr(batch_writer, "_run", lambda d, p: (time.sleep(0.4), real_run(d, p), done.append(1))[1])
    row = dict(checkin_id="c1", patient_id="P-1", recorded_at=NOW, received_at=NOW, stream_id="1-1", payload={})
    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        with session_factory(engine)() as s:
            writer = batch_writer.CopyWriter(s, overlapped=True)
            writer.checkins([row])  # the helper starts the check-ins' COPY now
            signal.setitimer(signal.ITIMER_REAL, 0.1)
            with pytest.raises(TimeLimit):
                writer.close()
            assert not done  # the helper is still writing ...
            assert writer.close() == [] and done  # ... and the next close waited for it
            assert s.scalar(text("SELECT count(*) FROM checkins")) == 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_an_entry_deleted_before_its_release_is_reported_not_silently_dropped(engine, r, make_settings, capsys):
    settings = make_settings(batch_size=5, claim_min_idle_s=30.0)
    submit(r, settings.stream_name, [febrile(f"c{i}", f"P-{i}", i) for i in range(3)], group=settings.group)
    consumer = Consumer(r, settings.stream_name, settings.group, "c")
    ahead = pipeline.ReadAhead(consumer, session_factory(engine), settings, lambda: NOW)
    ahead.run()
    gone = ahead.entries[1].stream_id
    r.xdel(settings.stream_name, gone)  # someone trimmed the stream (nothing in crs-alert does)
    ahead.release()
    vanished = [line for line in capsys.readouterr().out.splitlines() if "released_entries_vanished" in line]
    assert len(vanished) == 1 and "entries=1" in vanished[0] and gone in vanished[0]
    pending = r.xpending_range(settings.stream_name, settings.group, "-", "+", 10)
    assert len(pending) == 2 and all(p["time_since_delivered"] >= 30_000 for p in pending)
