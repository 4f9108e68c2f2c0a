"""`crs-alert demo`: the whole pipeline on this machine, end to end, with sample data.

Migrates a fresh demo database (SQLite under CRS_VAR_DIR/demo/), enrolls the sample patients,
starts a real worker and scheduler (the `run` machinery, as child processes), submits the sample
check-ins to the intake stream, waits until every one is committed, prints what was recorded and
stops everything. Uses its own Redis key namespace (removed at the end), so it never touches a
deployment's stream or database. Needs only the repository, the venv and a Redis (REDIS_URL,
localhost:6379, or a redis-server on PATH).
"""

from __future__ import annotations

import argparse
import os
import time
import uuid
from pathlib import Path

from worker.commands import _common

CONFIG = Path(__file__).resolve().parents[2] / "config"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the pipeline end to end on sample data and print what was recorded")
    p.add_argument("--patients", default=str(CONFIG / "sample-patients.jsonl"))
    p.add_argument("--checkins", default=str(CONFIG / "sample-checkins.jsonl"))
    p.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for the worker (default 90)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _demo(args)
    except _common.CommandError as exc:
        return _common.fail(exc)


def _step(n: int, text: str) -> None:
    print(f"[{n}] {text}", flush=True)


def _demo(args: argparse.Namespace) -> int:
    from worker import summary
    from worker.commands.patients import enroll_all
    from worker.commands.submit import read_lines
    from worker.enrollment import EnrollmentError, parse_enrollments
    from worker.intake import backlog, submit
    from worker.services import Services
    from worker.settings import load_settings
    from worker.store import repo
    from worker.store.db import engine_for, session_factory, upgrade

    base = _common.settings()
    handle = _common.redis_handle(base)
    demo_dir = (base.var_dir / "demo").resolve()
    demo_dir.mkdir(parents=True, exist_ok=True)
    db_path = demo_dir / "crs-alert-demo.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_path}{suffix}").unlink(missing_ok=True)
    namespace = f"{base.namespace}-demo-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, REDIS_URL=handle.url, DATABASE_URL=f"sqlite:///{db_path}", CRS_NAMESPACE=namespace,
               CRS_DRAIN_INTERVAL_S="0.5", CRS_LOG_LEVEL="INFO", CRS_VAR_DIR=str(base.var_dir.resolve()))
    s = load_settings(redis_url=handle.url, database_url=env["DATABASE_URL"], namespace=namespace,
                      drain_interval_s=0.5)
    r = _common.redis_client(handle.url)
    services: Services | None = None
    try:
        print(f"crs-alert demo: Redis {handle.source}, database {db_path}", flush=True)
        engine = engine_for(s)
        upgrade(engine)
        _step(1, "database migrated to the latest schema")

        try:
            patients = parse_enrollments(Path(args.patients).read_text(encoding="utf-8"))
        except (OSError, EnrollmentError) as exc:
            raise _common.CommandError(f"{args.patients}: {exc}") from None
        created, _ = enroll_all(engine, patients, actor="demo")
        _step(2, f"enrolled {created} sample patients ({', '.join(p.patient_id for p in patients)})")

        services = Services(env, log_path=demo_dir / "services.log").start()
        pids = services.pids()
        _step(3, f"started worker (pid {pids['worker']}) and scheduler (pid {pids['scheduler']}); "
                 f"their JSON logs go to {demo_dir / 'services.log'}")

        lines = read_lines(args.checkins)
        submit(r, s.stream_name, lines, group=s.group)
        _step(4, f"submitted {len(lines)} check-ins from {args.checkins} to stream {s.stream_name}")

        sessions = session_factory(engine)
        started = time.monotonic()
        while True:
            with sessions() as session:
                received = repo.counts(session)["received"]
            back = backlog(r, s.stream_name, s.group)
            if received >= len(lines) and back["pending"] == 0 and back["lag"] == 0:
                break
            if services.dead():
                raise _common.CommandError(f"{', '.join(services.dead())} exited; see {demo_dir / 'services.log'}")
            if time.monotonic() - started > args.timeout:
                raise _common.CommandError(
                    f"only {received} of {len(lines)} check-ins committed after {args.timeout:.0f} s; "
                    f"see {demo_dir / 'services.log'}")
            time.sleep(0.2)
        _step(5, f"all {len(lines)} check-ins committed and acknowledged in {time.monotonic() - started:.1f} s\n")

        with sessions() as session:
            print(summary.render_records(session), flush=True)
    finally:
        if services is not None:
            codes = services.stop()
            print(f"\n[6] stopped worker and scheduler (exit {codes.get('worker')}, {codes.get('scheduler')})", flush=True)
        keys = list(r.scan_iter(match=f"{namespace}*", count=1000))
        if keys:
            r.delete(*keys)
        handle.stop()
    return 0
