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
import datetime as dt
import json
import os
import re
import secrets
import socket
import threading
import time
import uuid
from pathlib import Path

from worker.commands import _common
from worker.demo_sinks import Sinks

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
    from worker.jsonstream import FramingError
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
    sinks = Sinks().start()  # local SMTP, webhook, SMS and PagerDuty receivers: nothing leaves this machine
    channels_file = demo_dir / "channels.yaml"
    channels_file.write_text(json.dumps(sinks.channels_config(), indent=2))  # JSON is YAML
    ack_secret = secrets.token_urlsafe(32)
    api_port = _free_port()
    env = dict(os.environ, REDIS_URL=handle.url, DATABASE_URL=f"sqlite:///{db_path}", CRS_NAMESPACE=namespace,
               CRS_DRAIN_INTERVAL_S="0.5", CRS_DISPATCH_INTERVAL_S="0.5", CRS_ESCALATE_INTERVAL_S="1",
               CRS_LOG_LEVEL="INFO", CRS_VAR_DIR=str(base.var_dir.resolve()), CRS_RULES_PATH=str(CONFIG / "rules.yaml"),
               CRS_CHANNELS_PATH=str(channels_file), CRS_ACK_SECRET=ack_secret, CRS_PUBLIC_URL=f"http://127.0.0.1:{api_port}",
               **sinks.environ())  # fmt: skip
    s = load_settings(redis_url=handle.url, database_url=env["DATABASE_URL"], namespace=namespace,
                      drain_interval_s=0.5)
    r = _common.redis_client(handle.url)
    services: Services | None = None
    api = None
    try:
        print(f"crs-alert demo: Redis {handle.source}, database {db_path}", flush=True)
        engine = engine_for(s)
        upgrade(engine)
        _step(1, "database migrated to the latest schema")

        try:
            patients = parse_enrollments(Path(args.patients).read_bytes())
        except (OSError, EnrollmentError, FramingError) as exc:
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

        api = _serve_api(sessions, ack_secret, api_port)
        _deliveries_and_ack(sessions, sinks, args.timeout)
    finally:
        if api is not None:
            api.close()
        sinks.stop()
        if services is not None:
            codes = services.stop()
            print(f"\n[9] stopped worker and scheduler (exit {codes.get('worker')}, {codes.get('scheduler')})", flush=True)
        keys = list(r.scan_iter(match=f"{namespace}*", count=1000))
        if keys:
            r.delete(*keys)
        handle.stop()
    return 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve_api(sessions, secret: str, port: int):  # type: ignore[no-untyped-def]
    """The API (ack links) in a thread of this process, on the port the pages' links name."""
    from waitress.server import create_server

    from worker.api import ApiConfig, create_app

    server = create_server(create_app(sessions, ApiConfig(ack_secret=secret)), host="127.0.0.1", port=port, threads=2)
    threading.Thread(target=server.run, name="demo-api", daemon=True).start()
    return server


def _deliveries_and_ack(sessions, sinks: Sinks, timeout: float) -> None:  # type: ignore[no-untyped-def]
    """Wait for the emergency's first pages to reach the local servers, acknowledge it with the
    link from the delivered SMS, and print the alerts, the delivery records and what arrived."""
    import requests
    from sqlalchemy import select

    from worker.store.alert_tables import Alert, DeliveryAttempt, Notification

    started = time.monotonic()
    while True:
        with sessions() as s:
            emergency = s.scalars(select(Alert).where(Alert.urgency == "emergency").order_by(Alert.id)).first()
            pages = list(s.scalars(select(Notification).where(Notification.alert_id == emergency.id))) if emergency else []
        kinds = {r.kind for r in sinks.received}
        if emergency and pages and all(n.status == "sent" for n in pages if n.step == 0) and {"email", "webhook", "sms"} <= kinds:
            break
        if time.monotonic() - started > timeout:
            raise _common.CommandError("the emergency's pages were not delivered in time; see the services log")
        time.sleep(0.2)
    _step(6, f"alert {emergency.code} (patient {emergency.patient_id}, {emergency.urgency}, route {emergency.route}) "
             "was paged; what the local servers received:")
    for got in sinks.received:
        print(f"      {got.kind:9} to {got.to:24} ref {got.reference[:24]:24} {got.summary.splitlines()[0][:70]}")
    sms = next(g for g in sinks.received if g.kind == "sms" and emergency.code in g.summary)
    link = re.search(r"https?://\S+/ack/\S+", sms.summary)
    if link is None:
        raise _common.CommandError("the SMS carries no acknowledgement link")
    reply = requests.post(link.group(0), timeout=10)
    _step(7, f"acknowledged {emergency.code} with the signed link from the SMS: HTTP {reply.status_code} {reply.json()}")
    time.sleep(1.5)  # an escalation tick passes: nothing more is paged for an acknowledged alert
    with sessions() as s:
        print("\n[8] alerts and delivery records:")
        for a in s.scalars(select(Alert).order_by(Alert.id)):
            print(f"    alert {a.code}  {a.state:12} {a.urgency:9} patient {a.patient_id:8} route {a.route:18} "
                  f"policy {a.policy_name:14} acked by {a.acked_by or '-'}")
        print(f"    {'notification':12} {'alert':5} {'event':16} {'receiver':14} {'channel':11} {'status':9} attempts  outcome")
        for n in s.scalars(select(Notification).order_by(Notification.id)):
            outcomes = ",".join(a.outcome for a in s.scalars(select(DeliveryAttempt).where(DeliveryAttempt.notification_id == n.id)))
            code = s.get(Alert, n.alert_id).code
            print(f"    ntf-{n.id:<8} {code:5} {n.event:16} {n.receiver:14} {n.channel:11} {n.status:9} {n.attempts:<9} {outcomes or '-'}"
                  + (f"  ({n.status_reason})" if n.status_reason else ""))
