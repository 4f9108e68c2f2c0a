"""The scheduler process: APScheduler 3.11 ``BlockingScheduler`` ticks that enqueue Celery tasks.

One leader at a time. Each scheduler loops:

* **standby**: try to take the Redis lock ``<namespace>:scheduler:lock`` (redis-py ``Lock``, a
  token checked on every extend) every ``STANDBY_POLL_S``; a live scheduler keeps its heartbeat;
* **leader**: run the BlockingScheduler with two jobs, ``drain`` (``send_task`` of
  ``drain_checkins`` every CRS_DRAIN_INTERVAL_S, with ``expires`` so ticks piling up during a
  worker outage are dropped, not burst) and ``keep_lock`` (extend the lock back to
  CRS_SCHEDULER_LOCK_TIMEOUT_S three times per timeout). When an extend fails (the lock expired
  and someone else took it, or Redis is unreachable) the leader stops scheduling at once and goes
  back to standby. A dead leader's lock expires, so a standby takes over within about one lock
  timeout.

Correctness never depends on there being one leader (two ticks are two consumers in the group);
the lock only keeps the broker quiet. Timers are ticks here, never Celery countdown/ETA tasks.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

import redis
from apscheduler.schedulers.blocking import BlockingScheduler
from celery import Celery
from redis.exceptions import LockError, RedisError

from worker import heartbeat
from worker.celery_app import DISPATCH_TASK, DRAIN_TASK, ESCALATE_TASK, MISSED_TASK
from worker.logs import get_logger
from worker.settings import Settings

log = get_logger(__name__)
STANDBY_POLL_S = 0.5


def identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class LeaderLock:
    """The leader lock plus a readable ``leader`` key (host:pid) that expires with it."""

    def __init__(self, r: redis.Redis, settings: Settings, ident: str):
        self.r, self.settings, self.ident = r, settings, ident
        self.timeout = settings.scheduler_lock_timeout_s
        # thread_local=False: the lock is taken in the main thread and extended from APScheduler's pool
        self.lock = r.lock(settings.lock_name, timeout=self.timeout, blocking=False, thread_local=False)

    def try_acquire(self) -> bool:
        if self.lock.acquire(blocking=False):
            self._publish()
            return True
        return False

    def extend(self) -> None:
        """Reset the lock's TTL to the full timeout; raises LockError when no longer ours."""
        self.lock.reacquire()
        self._publish()

    def release(self) -> None:
        try:
            self.lock.release()
            self.r.delete(self.settings.leader_key)
        except (LockError, RedisError):
            pass

    def _publish(self) -> None:
        self.r.set(self.settings.leader_key, self.ident, px=int(self.timeout * 1000))


def current_leader(r: redis.Redis, settings: Settings) -> str | None:
    value = r.get(settings.leader_key)
    return value.decode() if isinstance(value, bytes) else value


class Scheduler:
    def __init__(self, settings: Settings, r: redis.Redis, app: Celery, stop: threading.Event | None = None):
        self.settings, self.r, self.app = settings, r, app
        self.stop = stop or threading.Event()
        self.ident = identity()
        self.lock = LeaderLock(r, settings, self.ident)
        self.terms = 0  # how many times this process became leader

    # -- jobs ------------------------------------------------------------------------------
    def send_drain(self) -> None:
        self._send(DRAIN_TASK, self.settings.drain_interval_s)

    def _send(self, task: str, interval_s: float) -> None:
        try:
            self.app.send_task(task, queue=self.settings.celery_queue, expires=max(5.0, 5 * interval_s))
        except Exception as exc:  # noqa: BLE001 - a lost tick is harmless; the next one follows
            log.warning("tick_not_sent", task=task, error_type=type(exc).__name__)

    def _keep_lock(self, sched: BlockingScheduler) -> None:
        if self.stop.is_set():
            sched.shutdown(wait=False)
            return
        try:
            self.lock.extend()
            heartbeat.write_heartbeat(self.r, "scheduler", namespace=self.settings.namespace)
        except Exception as exc:  # noqa: BLE001 - whatever the cause, an unconfirmed lock means stop leading
            log.error("leadership_lost", error_type=type(exc).__name__, instance=self.ident)
            sched.shutdown(wait=False)

    def _watch_stop(self, sched: BlockingScheduler) -> None:
        if self.stop.is_set():
            sched.shutdown(wait=False)

    # -- loop ------------------------------------------------------------------------------
    def lead(self) -> None:
        """Run the BlockingScheduler until leadership is lost or a stop is requested."""
        s = self.settings
        sched = BlockingScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1,
                                                                "misfire_grace_time": max(1, int(s.drain_interval_s * 2))})
        sched.add_job(self.send_drain, "interval", seconds=s.drain_interval_s, id="drain", next_run_time=_now())
        # Alerting ticks: each task is idempotent (conditional updates, SKIP LOCKED claims), so a
        # duplicate tick after a failover does nothing; timers live in the database, not in Celery.
        for task, every in ((DISPATCH_TASK, s.dispatch_interval_s), (ESCALATE_TASK, s.escalate_interval_s),
                            (MISSED_TASK, s.missed_interval_s)):  # fmt: skip
            sched.add_job(self._send, "interval", seconds=every, args=[task, every], id=task, next_run_time=_now())
        keep_every = max(0.2, min(s.scheduler_lock_timeout_s / 3, 5.0))
        sched.add_job(self._keep_lock, "interval", seconds=keep_every, args=[sched], id="keep_lock")
        sched.add_job(self._watch_stop, "interval", seconds=0.5, args=[sched], id="watch_stop")
        self.terms += 1
        log.info("leadership_acquired", instance=self.ident, interval_s=s.drain_interval_s)
        sched.start()  # blocks until shutdown()

    def run(self) -> None:
        """Standby until the lock is ours, lead, and again; returns when ``stop`` is set."""
        log.info("scheduler_started", instance=self.ident)
        while not self.stop.is_set():
            try:
                heartbeat.write_heartbeat(self.r, "scheduler", namespace=self.settings.namespace)
                leader = self.lock.try_acquire()
            except RedisError as exc:
                log.warning("redis_unavailable", error_type=type(exc).__name__)
                self.stop.wait(1.0)
                continue
            if leader:
                self.lead()
            else:
                self.stop.wait(STANDBY_POLL_S)
        self.lock.release()
        log.info("scheduler_stopped", instance=self.ident)


def _now() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC)


def install_stop_signals(stop: threading.Event) -> Callable[[], None]:
    """SIGINT/SIGTERM set ``stop`` (main thread only); returns a function restoring the old handlers."""
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(_signo: int, _frame: Any) -> None:
        stop.set()

    for sig in old:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, h in old.items():
            signal.signal(sig, h)

    return restore


def queue_gauges(r: redis.Redis, settings: Settings) -> Callable[[], dict[str, float]]:
    """Live intake gauges for worker.metrics.register_queue_collector (scheduler process only)."""
    from worker.intake import backlog

    def collect() -> dict[str, float]:
        b = backlog(r, settings.stream_name, settings.group)
        return {"queue_lag": float(b["lag"] if b["lag"] is not None else -1), "pending_entries": float(b["pending"])}

    return collect
