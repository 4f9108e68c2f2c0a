"""`crs-alert db upgrade|current`: apply the Alembic migrations (programmatically) or show the revision."""

from __future__ import annotations

import argparse

from worker.commands import _common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("db", help="database schema: upgrade to the latest migration, or show the current one")
    dbsub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    up = dbsub.add_parser("upgrade", help="apply every pending migration (idempotent)")
    up.add_argument("--revision", default="head", help="target revision (default: head)")
    up.set_defaults(func=upgrade)
    cur = dbsub.add_parser("current", help="print the database's current revision")
    cur.set_defaults(func=current)


def upgrade(args: argparse.Namespace) -> int:
    from alembic.util import CommandError as AlembicError
    from sqlalchemy.exc import SQLAlchemyError

    from worker.store import db

    try:
        s = _common.settings()
        engine = db.engine_for(s)
        try:
            db.upgrade(engine, args.revision)
            revision = db.current_revision(engine)
        except AlembicError as exc:  # e.g. an unknown --revision; alembic's words name the revision only
            raise _common.CommandError(f"cannot upgrade to --revision {args.revision!r}: {exc}") from None
        except SQLAlchemyError as exc:
            raise _common.CommandError(f"database {db.redacted_url(engine)} is unavailable ({type(exc).__name__})") from None
        print(f"database {db.redacted_url(engine)} at revision {revision}")
        return 0
    except _common.CommandError as exc:
        return _common.fail(exc)


def current(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from worker.store import db

    try:
        s = _common.settings()
        _common.require_database(s)  # `db current` reads: it never creates the file
        engine = db.engine_for(s)
        try:
            revision = db.current_revision(engine)
        except SQLAlchemyError as exc:
            raise _common.CommandError(f"database {db.redacted_url(engine)} is unavailable ({type(exc).__name__})") from None
        print(revision or "(empty database)")
        return 0
    except _common.CommandError as exc:
        return _common.fail(exc)
