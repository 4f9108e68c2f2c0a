"""The schema: Alembic migrations produce exactly the models' schema on both backends."""

from __future__ import annotations

import datetime as dt

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

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
