"""The scheduler's leader loop in-process, against the real Redis and a real Celery app."""

from __future__ import annotations

import threading
import time

from tests.integration.helpers import wait_for
from worker.celery_app import make_app
from worker.scheduler import Scheduler, current_leader


def _queued(r, settings) -> int:
    return r.llen(f"{settings.celery_key_prefix}{settings.celery_queue}")


def test_leader_that_loses_its_lock_stops_scheduling_then_stands_by(r, make_settings):
    settings = make_settings(drain_interval_s=0.2, scheduler_lock_timeout_s=1.5)
    app = make_app(settings, settings.redis_url)
    stop = threading.Event()
    sched = Scheduler(settings, r, app, stop)
    thread = threading.Thread(target=sched.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: current_leader(r, settings) == sched.ident, 10, what="leadership")
        wait_for(lambda: _queued(r, settings) >= 3, 5, what="ticks")

        r.set(settings.lock_name, "someone-else", px=60_000)  # e.g. a Redis failover handed the lock over
        time.sleep(1.5)  # at least one keep-lock round
        before = _queued(r, settings)
        time.sleep(1.0)
        assert _queued(r, settings) == before, "a scheduler without the lock must not send ticks"
        assert sched.terms == 1

        r.delete(settings.lock_name)  # the other leader is gone: this one takes over again
        wait_for(lambda: sched.terms == 2 and current_leader(r, settings) == sched.ident, 10, what="re-election")
        wait_for(lambda: _queued(r, settings) > before, 5, what="ticks from the new term")
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    assert r.get(settings.lock_name) is None  # released on a clean stop: a standby takes over at once
