"""The schema: Alembic migrations produce exactly the models' schema on both backends."""

from __future__ import annotations

import datetime as dt

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from worker.store import repo
from worker.store.db import current_revision, load_all_models, make_engine, session_factory, upgrade

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def test_migrations_produce_the_models_schema(engine):
    """Every table of every worker.store module; a model change without a migration fails here."""
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), load_all_models())
    assert diff == [], "models and migrations differ; add an Alembic revision under worker/store/migrations/versions"
    tables = set(inspect(engine).get_table_names())
    assert {"patients", "checkins", "evaluations", "rejected_inputs", "duplicate_checkins", "transitions",
            "audit_log", "alembic_version"} <= tables


def test_upgrade_is_idempotent(engine):
    before = current_revision(engine)
    upgrade(engine)
    assert current_revision(engine) == before is not None


def test_checkin_id_is_unique(engine):
    uniques = {tuple(u["column_names"]) for u in inspect(engine).get_unique_constraints("checkins")}
    assert ("checkin_id",) in uniques


def test_enroll_creates_then_updates_and_audits(sessions):
    with sessions.begin() as s:
        assert repo.enroll(s, repo.Enrollment("P-1", age_years=60, therapy="teclistamab", unit="u1",
                                              checkin_interval_h=8, labels={"k": "v"}), now=NOW, actor="t")
    with sessions.begin() as s:
        assert not repo.enroll(s, repo.Enrollment("P-1", age_years=61), now=NOW, actor="t")
    with sessions() as s:
        [p] = repo.list_patients(s)
        ctx = repo.contexts(s, ["P-1", "P-unknown"])
    assert p.age_years == 61 and p.therapy is None and p.enrolled_at == NOW
    assert set(ctx) == {"P-1"} and ctx["P-1"].age_years == 61


def test_naive_datetimes_are_refused(sessions):
    with pytest.raises(Exception, match="naive"):
        with sessions.begin() as s:
            repo.enroll(s, repo.Enrollment("P-2"), now=dt.datetime(2026, 1, 1), actor="t")


def test_sqlite_parent_directory_is_created(tmp_path):
    eng = make_engine(f"sqlite:///{tmp_path / 'a' / 'b' / 'x.db'}")
    upgrade(eng)
    assert (tmp_path / "a" / "b" / "x.db").exists()
    with session_factory(eng)() as s:
        assert repo.counts(s)["received"] == 0


def test_0004_keeps_the_rows_and_one_evaluation_per_checkin(db_url):
    """A store at 0003 with data upgrades to 0004 (SQLite rebuilds the table): rows kept, the
    redundant unique constraint on evaluations.checkin_id gone, one evaluation per check-in still
    enforced through checkin_row_id."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    eng = make_engine(db_url)
    try:
        upgrade(eng, "0003")
        assert ("checkin_id",) in {tuple(u["column_names"]) for u in inspect(eng).get_unique_constraints("evaluations")}
        row = dict(cid="c1", pid="P-01", at=NOW, sid="1-0", payload="{}", result="{}", flags="[]")
        with eng.begin() as c:
            c.execute(text("INSERT INTO checkins (checkin_id, patient_id, recorded_at, received_at, stream_id, payload) "
                           "VALUES (:cid, :pid, :at, :at, :sid, :payload)"), row)
            row["rid"] = c.execute(text("SELECT id FROM checkins")).scalar_one()
            c.execute(text("INSERT INTO evaluations (checkin_row_id, checkin_id, patient_id, recorded_at, effective_at, "
                           "evaluated_at, crs_grade, crs_grade_is_minimum, icans_floor, red_flags, urgency, out_of_order, result) "
                           "VALUES (:rid, :cid, :pid, :at, :at, :at, 1, false, 0, :flags, 'urgent', false, :result)"), row)
        upgrade(eng, "0004")
        assert current_revision(eng) == "0004"
        uniques = {tuple(u["column_names"]) for u in inspect(eng).get_unique_constraints("evaluations")}
        assert ("checkin_id",) not in uniques and ("checkin_row_id",) in uniques
        with eng.connect() as c:
            assert c.execute(text("SELECT checkin_id, crs_grade FROM evaluations")).all() == [("c1", 1)]
        with pytest.raises(IntegrityError), eng.begin() as c:  # a second evaluation of the same check-in
            c.execute(text("INSERT INTO evaluations (checkin_row_id, checkin_id, patient_id, recorded_at, effective_at, "
                           "evaluated_at, crs_grade, crs_grade_is_minimum, icans_floor, red_flags, urgency, out_of_order, result) "
                           "VALUES (:rid, :cid, :pid, :at, :at, :at, 2, false, 0, :flags, 'urgent', false, :result)"), row)
    finally:
        eng.dispose()


def test_0005_replaces_the_latest_state_index_and_goes_back(db_url):
    """0005 swaps ix_evaluations_patient_effective for (patient_id, effective_at, id); its
    downgrade restores the old index."""
    from alembic import command

    from worker.store.db import alembic_config

    eng = make_engine(db_url)
    try:
        def indexes() -> dict[str, list[str]]:
            return {i["name"]: i["column_names"] for i in inspect(eng).get_indexes("evaluations")}

        upgrade(eng, "0004")
        assert indexes()["ix_evaluations_patient_effective"] == ["patient_id", "effective_at"]
        upgrade(eng, "0005")
        got = indexes()
        assert got["ix_evaluations_patient_latest"] == ["patient_id", "effective_at", "id"]
        assert "ix_evaluations_patient_effective" not in got
        command.downgrade(alembic_config(eng), "0004")
        got = indexes()
        assert "ix_evaluations_patient_latest" not in got and "ix_evaluations_patient_effective" in got
    finally:
        eng.dispose()


def test_the_latest_state_is_one_index_entry_per_patient_even_with_ties(pg_url):
    """Many evaluations of a patient at the same effective_at (future-dated check-ins are
    evaluated at their batch's time): PostgreSQL reads one index entry per patient, no sort."""
    from sqlalchemy import text

    eng = make_engine(pg_url)
    try:
        upgrade(eng)
        with session_factory(eng).begin() as s:
            for n in range(40):
                _store_evaluation(s, "P-TIE", n, NOW, [], "none")
            last = _store_evaluation(s, "P-TIE", 40, NOW, [], "urgent")
        with eng.begin() as c:
            c.execute(text("ANALYZE evaluations"))
            c.execute(text("SET LOCAL enable_seqscan = off"))  # a tiny table: ask for the index path it has
            plan = "\n".join(r[0] for r in c.execute(text("EXPLAIN (ANALYZE) " + repo._LATEST["postgresql"].text),
                                                      {"pids": repo.id_list(["P-TIE"])}))
        assert "ix_evaluations_patient_latest" in plan and "Sort" not in plan, plan
        with session_factory(eng)() as s:
            assert repo.latest_states(s, ["P-TIE"])["P-TIE"].evaluation_id == last
    finally:
        eng.dispose()


def _store_evaluation(s, pid: str, n: int, effective_at: dt.datetime, flags: list[str], urgency: str) -> int:
    from worker.store.models import CheckinRow, EvaluationRow

    row = CheckinRow(checkin_id=f"{pid}-{n}", patient_id=pid, recorded_at=effective_at, received_at=NOW,
                     stream_id=f"{n}-0", payload={})
    s.add(row)
    s.flush()
    ev = EvaluationRow(checkin_row_id=row.id, checkin_id=row.checkin_id, patient_id=pid, recorded_at=effective_at,
                       effective_at=effective_at, evaluated_at=NOW, crs_grade=n % 5, crs_grade_is_minimum=False,
                       icans_grade=None if n % 2 else n % 5, icans_floor=n % 3, red_flags=flags, news2=None,
                       urgency=urgency, out_of_order=False, result={})
    s.add(ev)
    s.flush()
    return ev.id


@pytest.mark.parametrize("time_zone", ["UTC", "Pacific/Chatham"])
def test_latest_states_and_contexts_read_back_exactly(engine, sessions, backend, time_zone):
    """PostgreSQL returns these as one JSON text: every timestamp to the microsecond, in UTC
    whatever the session's time zone, floats and dates exactly as stored, ties broken by id."""
    from worker.domain import Urgency
    from worker.store.models import Patient

    t = dt.datetime(2026, 11, 20, 3, 4, 5, 678901, tzinfo=dt.UTC)
    ages = {"P-a": 30.000000000000004, "P-b": 0.1, "P-c": None}
    with sessions.begin() as s:
        for pid, age in ages.items():
            s.add(Patient(patient_id=pid, age_years=age, therapy="teclistamab" if age else None,
                          therapy_start=dt.date(2026, 2, 28) if age else None, labels={}, enrolled_at=NOW, updated_at=NOW))
        _store_evaluation(s, "P-a", 1, t - dt.timedelta(hours=1), ["fever"], "urgent")
        tie_first = _store_evaluation(s, "P-a", 2, t, ["hypotension", "fever"], "emergency")
        tie_last = _store_evaluation(s, "P-a", 3, t, [], "routine")  # same effective_at, arrived later: wins
        b = _store_evaluation(s, "P-b", 4, t + dt.timedelta(microseconds=1), ["hypoxia"], "urgent")
    assert tie_last > tie_first
    with sessions() as s:
        if backend == "postgresql":
            s.execute(text(f"SET TIME ZONE '{time_zone}'"))
        latest = repo.latest_states(s, ["P-a", "P-b", "P-c", "P-none"])
        ctx = repo.contexts(s, ["P-a", "P-b", "P-c", "P-none"])
    assert set(latest) == {"P-a", "P-b"}
    a, bs = latest["P-a"], latest["P-b"]
    assert (a.evaluation_id, a.effective_at, a.crs_grade, a.icans_grade, a.icans_floor, a.red_flags, a.urgency) == (
        tie_last, t, 3, None, 0, (), Urgency.ROUTINE)
    assert (bs.evaluation_id, bs.effective_at, bs.red_flags, bs.urgency) == (b, t + dt.timedelta(microseconds=1),
                                                                             ("hypoxia",), Urgency.URGENT)
    assert a.effective_at.utcoffset() == dt.timedelta(0) and bs.effective_at.utcoffset() == dt.timedelta(0)
    assert set(ctx) == {"P-a", "P-b", "P-c"}
    assert ctx["P-a"].age_years == 30.000000000000004 and ctx["P-b"].age_years == 0.1
    assert ctx["P-a"].therapy_start == dt.date(2026, 2, 28) and ctx["P-a"].therapy == "teclistamab"
    assert ctx["P-c"].age_years is None and ctx["P-c"].therapy is None and ctx["P-c"].therapy_start is None


def test_patient_locks_block_a_second_transaction_until_commit(pg_url):
    """One row back, every lock still taken: a second session cannot lock the same patient.
    (PostgreSQL only: SQLite serialises every writer with BEGIN IMMEDIATE.)"""
    eng = make_engine(pg_url)
    upgrade(eng)
    sessions = session_factory(eng)
    with sessions.begin() as s1:
        repo.lock_patients(s1, ["P-2", "P-1", "P-3"])
        with sessions() as s2:
            s2.execute(text("SET lock_timeout = '200ms'"))
            for pid in ("P-1", "P-2", "P-3"):
                with pytest.raises(Exception, match="lock timeout"):
                    with s2.begin_nested():
                        repo.lock_patients(s2, [pid])
            repo.lock_patients(s2, ["P-4"])  # another patient: not blocked
            s2.rollback()
    with sessions.begin() as s3:  # released at commit
        s3.execute(text("SET LOCAL lock_timeout = '200ms'"))
        repo.lock_patients(s3, ["P-1", "P-2", "P-3"])
    eng.dispose()
