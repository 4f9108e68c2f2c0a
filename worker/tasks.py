"""Thin Celery tasks: no arguments (never PHI), each calls the pipeline and returns counts.

Per-process resources (settings, Redis client, engine, consumer name) are created lazily in the
process that runs the task, so they are never shared across a prefork ``fork()``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import redis
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from worker import alert_jobs, heartbeat, pipeline
from worker.celery_app import DISPATCH_TASK, DRAIN_TASK, ESCALATE_TASK, MISSED_TASK, app
from worker.intake import Consumer, prune_consumers
from worker.logs import get_logger
from worker.settings import Settings, load_settings
from worker.store.db import engine_for, session_factory

log = get_logger(__name__)
PRUNE_EVERY_S = 300.0


@dataclass
class Runtime:
    pid: int
    settings: Settings
    r: redis.Redis
    engine: Engine
    sessions: sessionmaker[Session]
    consumer: Consumer
    pruned_at: float = 0.0


_runtime: Runtime | None = None


def runtime() -> Runtime:
    global _runtime
    if _runtime is None or _runtime.pid != os.getpid():
        settings = load_settings()
        r = redis.Redis.from_url(app.conf.broker_url, socket_timeout=10, socket_connect_timeout=5,
                                 health_check_interval=10)
        engine = engine_for(settings)
        _runtime = Runtime(os.getpid(), settings, r, engine, session_factory(engine),
                           Consumer(r, settings.stream_name, settings.group))
    return _runtime


@app.task(name=DRAIN_TASK, ignore_result=True)
def drain_checkins() -> dict[str, Any]:
    """Drain the intake stream until it is empty or the time budget is spent (pipeline.drain)."""
    rt = runtime()
    alerting_rt = alerting_runtime(rt)
    try:
        report = pipeline.drain(r=rt.r, sessions=rt.sessions, settings=rt.settings, consumer=rt.consumer,
                                alerts=lambda session, stored, now: alert_jobs.on_batch(session, stored, now, alerting_rt))
    except pipeline.StoreUnavailable as exc:
        log.warning("store_unavailable", error_type=type(exc).__name__, consumer=rt.consumer.name)
        return {"store_unavailable": 1}
    if report.evaluated:  # new alerts may have written pages: deliver now, not at the next tick
        kick_dispatch(rt)
    heartbeat.write_heartbeat(rt.r, "worker", namespace=rt.settings.namespace)
    if time.monotonic() - rt.pruned_at > PRUNE_EVERY_S:
        rt.pruned_at = time.monotonic()
        prune_consumers(rt.r, rt.settings.stream_name, rt.settings.group, idle_s=3600)
    return report.as_dict()


def alerting_runtime(rt: Runtime) -> alert_jobs.Runtime:
    """The alerting runtime of this process (rules in force, channels), sharing the task's database."""
    return alert_jobs.get_runtime(sessions=rt.sessions, settings=rt.settings)


def kick_dispatch(rt: Runtime) -> None:
    try:
        app.send_task(DISPATCH_TASK, queue=rt.settings.celery_queue, expires=30)
    except Exception as exc:  # noqa: BLE001 - the scheduler's dispatch tick follows within seconds
        log.warning("dispatch_kick_not_sent", error_type=type(exc).__name__)


@app.task(name=DISPATCH_TASK, ignore_result=True)
def dispatch_due() -> dict[str, Any]:
    """Deliver due notifications (worker.delivery); idempotent, safe to run in several workers."""
    rt = runtime()
    report = alert_jobs.dispatch(alerting_runtime(rt))
    return {k: v for k, v in report.__dict__.items() if isinstance(v, int)}


@app.task(name=ESCALATE_TASK, ignore_result=True)
def escalate_due() -> dict[str, Any]:
    """Advance due escalations (worker.alerting.escalate_due); pages are delivered at once."""
    rt = runtime()
    written = alert_jobs.escalate(alerting_runtime(rt))
    if written:
        kick_dispatch(rt)
    return {"notifications": written}


@app.task(name=MISSED_TASK, ignore_result=True)
def check_missed_checkins() -> dict[str, Any]:
    """Open an alert for every patient who missed a check-in (worker.alerting.check_missed)."""
    rt = runtime()
    opened = alert_jobs.missed_checkins(alerting_runtime(rt))
    if opened:
        kick_dispatch(rt)
    return {"opened": len(opened)}
