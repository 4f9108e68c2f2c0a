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

from worker import heartbeat, pipeline
from worker.celery_app import DRAIN_TASK, app
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
    try:
        report = pipeline.drain(r=rt.r, sessions=rt.sessions, settings=rt.settings, consumer=rt.consumer)
    except pipeline.StoreUnavailable as exc:
        log.warning("store_unavailable", error_type=str(exc), consumer=rt.consumer.name)
        return {"store_unavailable": 1}
    heartbeat.write_heartbeat(rt.r, "worker", namespace=rt.settings.namespace)
    if time.monotonic() - rt.pruned_at > PRUNE_EVERY_S:
        rt.pruned_at = time.monotonic()
        prune_consumers(rt.r, rt.settings.stream_name, rt.settings.group, idle_s=3600)
    return report.as_dict()
