"""Engine and sessions for PostgreSQL (psycopg 3) and SQLite, plus programmatic migrations.

SQLite is made safe for several local processes: WAL journal, foreign keys on, a busy timeout,
and ``BEGIN IMMEDIATE`` for every transaction so two writers queue up instead of failing with
"database is locked" when a read turns into a write.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from worker.store.repo import json_text

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def make_engine(url: str, *, echo: bool = False, idle_in_transaction_s: float = 30.0, lock_timeout_s: float = 20.0,
                statement_timeout_s: float = 60.0) -> Engine:
    """An engine for ``url``; creates the parent directory of a SQLite file. The timeouts apply to
    PostgreSQL sessions (see below). JSON columns are written by ``repo.json_text`` on both
    databases, as the batch paths write them: orjson (tuples, datetimes, dataclasses, and
    ``orjson.Fragment``, JSON text stored as it is), json.dumps where orjson refuses a value."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, echo=echo, json_serializer=json_text, connect_args={"timeout": 30})
        _sqlite_pragmas(engine)
        return engine
    engine = create_engine(url, echo=echo, pool_pre_ping=True, json_serializer=json_text, connect_args=dict(
        connect_timeout=5,
        # notice a dead server or a broken network path within ~25 s instead of hours
        keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
    ))
    _postgres_timeouts(engine, idle_in_transaction_s, lock_timeout_s, statement_timeout_s)
    return engine


def engine_for(settings) -> Engine:  # type: ignore[no-untyped-def]
    """The engine a process uses, configured from worker.settings.Settings."""
    return make_engine(settings.sqlalchemy_url, idle_in_transaction_s=settings.db_idle_in_transaction_timeout_s,
                       lock_timeout_s=settings.db_lock_timeout_s, statement_timeout_s=settings.db_statement_timeout_s)


# A worker that vanishes mid-transaction behind a broken network path leaves its session "idle in
# transaction" on the server, holding row and advisory (patient) locks, and every other worker
# would wait on them for hours (until TCP keepalive gives up). So the server ends such a session
# after ``idle_in_transaction_s``, and no statement waits on a lock longer than ``lock_timeout_s``
# (that batch fails, stays unacknowledged and is retried). A batch never idles inside its
# transaction (no network call happens between BEGIN and COMMIT), so a healthy batch is never cut.
def _postgres_timeouts(engine: Engine, idle_s: float, lock_s: float, statement_s: float) -> None:
    settings = {
        "idle_in_transaction_session_timeout": idle_s,
        "lock_timeout": lock_s,
        "statement_timeout": statement_s,
    }

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        with dbapi_conn.cursor() as cur:
            for name, seconds in settings.items():
                cur.execute(f"SET {name} = {int(seconds * 1000)}")  # milliseconds; names are constants
        dbapi_conn.commit()


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (below)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def load_all_models():  # type: ignore[no-untyped-def]
    """Import every module of worker.store so Base.metadata holds every table (migrations and the
    schema test compare against all of them, whichever modules happen to be imported already)."""
    import importlib
    import pkgutil

    import worker.store
    from worker.store.models import Base

    for info in pkgutil.iter_modules(worker.store.__path__):
        if info.name not in ("db", "migrations") and not info.ispkg:
            importlib.import_module(f"worker.store.{info.name}")
    return Base.metadata


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def ping(engine: Engine) -> None:
    """Raise (sqlalchemy.exc.OperationalError & co.) unless the database answers."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))


def redacted_url(engine_or_url: Engine | str) -> str:
    """The URL without its password. Redacted as text (worker.settings.redact_url): SQLAlchemy
    splits user information at the FIRST '@', so its own hide_password showed the rest of a
    password holding an unencoded '@'."""
    from worker.settings import redact_url

    text = engine_or_url.url.render_as_string(hide_password=False) if isinstance(engine_or_url, Engine) else engine_or_url
    return redact_url(text)


def alembic_config(engine: Engine):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the Alembic migrations up to ``revision`` (``crs-alert db upgrade``)."""
    from alembic import command

    command.upgrade(alembic_config(engine), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
