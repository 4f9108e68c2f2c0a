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
