"""The at-least-once Celery settings (ecosystem.md 1.2) are what the app runs with."""

from __future__ import annotations

import inspect

from worker.celery_app import DRAIN_TASK, make_app


def test_reliability_settings(make_settings):
    s = make_settings()
    conf = make_app(s, s.redis_url).conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.task_acks_on_failure_or_timeout
    assert conf.worker_prefetch_multiplier == 1 and conf.worker_disable_prefetch
    assert conf.worker_cancel_long_running_tasks_on_connection_loss
    assert conf.task_serializer == "json" and list(conf.accept_content) == ["json"]
    assert conf.task_ignore_result and not conf.result_backend
    opts = conf.broker_transport_options
    assert conf.task_soft_time_limit < conf.task_time_limit < opts["visibility_timeout"]
    assert opts["global_keyprefix"] == f"{s.namespace}:celery:" and opts["socket_timeout"]
    assert conf.broker_connection_retry_on_startup and conf.broker_connection_max_retries is None
    assert conf.task_default_queue == s.celery_queue


def test_the_drain_task_takes_no_arguments():
    """Task arguments sit in plain text in Redis: ours carry nothing, so never PHI."""
    from worker.celery_app import app
    from worker.tasks import drain_checkins

    assert drain_checkins.name == DRAIN_TASK and DRAIN_TASK in app.tasks
    assert inspect.signature(drain_checkins.run).parameters == {}
