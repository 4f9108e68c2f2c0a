"""Fixtures for integration tests against the REAL services on this machine.

* PostgreSQL 15 on 127.0.0.1:5432 (trust auth): one database per test
  (``crs_test_<session>_<random>``, dropped WITH (FORCE) at the end of the test).
* Redis 7 on 127.0.0.1:6379: every test gets its own key namespace (``CRS_NAMESPACE``), so the
  stream, the consumer group, the scheduler lock and Celery's keys are private to it. Keys are
  deleted by pattern afterwards; nothing ever flushes the shared server.
* SQLite: a file in the test's tmp_path.

``backend`` parametrizes store/pipeline tests over both databases.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import redis as redis_lib

from worker.settings import Settings, load_settings
from worker.store.db import make_engine, session_factory, upgrade

PG_HOST = os.environ.get("CRS_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("CRS_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("CRS_TEST_PG_USER", "postgres")
REDIS_URL = os.environ.get("CRS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def _pg_admin() -> psycopg.Connection:
    return psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True)


def _drop(name: str) -> None:
    with _pg_admin() as conn:
        # FORCE ends any session still connected (e.g. a killed worker's), so teardown never hangs
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_session_prefix() -> str:
    return f"crs_test_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def pg_url(pg_session_prefix: str) -> Iterator[str]:
    """A PostgreSQL database of its own for this test (created from template0, dropped after)."""
    name = f"{pg_session_prefix}_{uuid.uuid4().hex[:6]}"
    with _pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    try:
        yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        _drop(name)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'crs-alert.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def db_url(backend: str, request) -> str:
    return request.getfixturevalue("sqlite_url" if backend == "sqlite" else "pg_url")


@pytest.fixture
def twins(backend, tmp_path, pg_session_prefix):
    """Two empty, migrated databases of the backend, e.g. one for each of two code paths that must
    leave the same rows."""
    urls, made = [], []
    for name in ("seq", "batch"):
        if backend == "sqlite":
            urls.append(f"sqlite:///{tmp_path / name}.db")
            continue
        db = f"{pg_session_prefix}_{name}_{uuid.uuid4().hex[:6]}"
        with _pg_admin() as conn:
            conn.execute(f'CREATE DATABASE "{db}" TEMPLATE template0')
        made.append(db)
        urls.append(f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{db}")
    engines = [make_engine(u) for u in urls]
    try:
        for e in engines:
            upgrade(e)
        yield engines
    finally:
        for e in engines:
            e.dispose()
        for db in made:
            _drop(db)


@pytest.fixture
def engine(db_url: str):
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine):
    return session_factory(engine)


@pytest.fixture
def namespace() -> Iterator[str]:
    ns = f"crstest-{uuid.uuid4().hex[:10]}"
    yield ns
    r = redis_lib.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(match=f"{ns}*", count=1000))
    if keys:
        r.delete(*keys)
    r.close()


@pytest.fixture
def r() -> Iterator[redis_lib.Redis]:
    client = redis_lib.Redis.from_url(REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def make_settings(namespace: str, tmp_path):
    """Settings for this test: private namespace, short timings; keyword overrides win."""

    def make(**overrides) -> Settings:
        base = dict(
            redis_url=REDIS_URL,
            namespace=namespace,
            var_dir=tmp_path / "var",
            batch_size=50,
            drain_interval_s=0.5,
            drain_budget_s=1.0,
            claim_min_idle_s=2.0,
            max_deliveries=5,
            scheduler_lock_timeout_s=3.0,
            visibility_timeout_s=30.0,
            task_time_limit_s=20.0,
            task_soft_time_limit_s=15.0,
            log_json=True,
        )
        base.update(overrides)
        return load_settings(**base)

    return make


@pytest.fixture
def service_env(namespace: str, tmp_path):
    """Environment for worker/scheduler child processes (worker.services.Services)."""

    def make(database_url: str, redis_url: str = REDIS_URL, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CRS_") and k not in ("REDIS_URL", "DATABASE_URL")}
        env.update(
            REDIS_URL=redis_url,
            DATABASE_URL=database_url,
            CRS_NAMESPACE=namespace,
            CRS_VAR_DIR=str(tmp_path / "var"),
            CRS_BATCH_SIZE="50",
            CRS_DRAIN_INTERVAL_S="0.2",
            CRS_DRAIN_BUDGET_S="1",
            CRS_CLAIM_MIN_IDLE_S="2",
            CRS_SCHEDULER_LOCK_TIMEOUT_S="3",
            CRS_VISIBILITY_TIMEOUT_S="30",
            CRS_TASK_TIME_LIMIT_S="20",
            CRS_TASK_SOFT_TIME_LIMIT_S="15",
            CRS_WORKER_CONCURRENCY="2",
            CRS_LOG_LEVEL="INFO",
        )
        env.update(overrides)
        return env

    return make
