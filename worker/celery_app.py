"""The Celery application: Redis broker, at-least-once task settings (ecosystem.md section 1.2).

Celery carries only "go look" ticks (``drain_checkins`` takes no arguments, so no PHI ever sits in
a broker message); the check-ins themselves travel on the intake stream and their state lives in
the database. A lost tick is harmless (the next one comes a second later), a duplicate tick just
adds a consumer to the group, which gets disjoint entries.

``celery -A worker.celery_app worker`` uses the module-level ``app``, configured from the
environment (worker.settings). ``make_app(settings, broker_url)`` builds another one (tests,
``crs-alert run`` with an embedded Redis).
"""

from __future__ import annotations

from celery import Celery, signals

from worker.logs import install_celery_logging
from worker.settings import Settings, load_settings

DEFAULT_BROKER = "redis://127.0.0.1:6379/0"
DRAIN_TASK = "crs.drain_checkins"
DISPATCH_TASK = "crs.dispatch_due"
ESCALATE_TASK = "crs.escalate_due"
MISSED_TASK = "crs.check_missed_checkins"


def celery_config(settings: Settings, broker_url: str) -> dict:
    return dict(
        broker_url=broker_url,
        broker_transport_options={
            # must exceed the task time limit: a task still running past it is delivered twice
            "visibility_timeout": settings.visibility_timeout_s,
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
            "socket_keepalive": True,
            "health_check_interval": 10,
            "retry_on_timeout": True,
            "global_keyprefix": settings.celery_key_prefix,
        },
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_disable_prefetch=True,
        worker_cancel_long_running_tasks_on_connection_loss=True,
        worker_soft_shutdown_timeout=min(30.0, settings.task_time_limit_s),
        worker_enable_soft_shutdown_on_idle=False,
        task_time_limit=settings.task_time_limit_s,
        task_soft_time_limit=settings.task_soft_time_limit_s,
        task_ignore_result=True,
        result_backend=None,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=settings.celery_queue,
        task_create_missing_queues=True,
        worker_max_tasks_per_child=1000,
        worker_max_memory_per_child=300_000,  # KiB
        worker_concurrency=settings.worker_concurrency,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        enable_utc=True,
        timezone="UTC",
    )


def make_app(settings: Settings | None = None, broker_url: str | None = None) -> Celery:
    settings = settings or load_settings()
    celery = Celery("crs_alert", include=["worker.tasks"])
    celery.conf.update(celery_config(settings, broker_url or settings.redis_url or DEFAULT_BROKER))
    return celery


def _tune_child(**_: object) -> None:
    from worker import gc_tuning

    gc_tuning.tune()


install_celery_logging()
signals.worker_init.connect(_tune_child, weak=False)  # the worker process (solo/threads pools; forks inherit)
signals.worker_process_init.connect(_tune_child, weak=False)  # and each prefork child
app = make_app()
