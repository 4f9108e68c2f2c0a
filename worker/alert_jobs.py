"""The scheduled alerting jobs, called by thin Celery tasks: escalate, dispatch, missed check-ins.

Each job takes the process runtime (settings, database, rules in force, channels) and the time; it
is idempotent and safe to run in several processes at once (conditional updates and SKIP LOCKED
claims), so a duplicate or stale tick does nothing harmful.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from worker import alerting, delivery
from worker.runtime import Runtime, admin_alert, get_runtime


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def escalate(runtime: Runtime | None = None, now: dt.datetime | None = None) -> int:
    rt = runtime or get_runtime()
    with rt.sessions.begin() as s:
        return alerting.escalate_due(s, rt.rules.get(), now or utcnow())


def missed_checkins(runtime: Runtime | None = None, now: dt.datetime | None = None) -> list[int]:
    rt = runtime or get_runtime()
    with rt.sessions.begin() as s:
        return alerting.check_missed(s, rt.rules.get(), now or utcnow())


def dispatch(runtime: Runtime | None = None, clock: Any = utcnow) -> delivery.DispatchReport:
    rt = runtime or get_runtime()
    st = rt.settings
    links = delivery.AckLinks(st.ack_secret.get_secret_value(), st.public_url) if st.ack_secret and st.public_url else None
    policy = delivery.DeliveryPolicy(
        max_attempts=st.delivery_max_attempts,
        max_age=dt.timedelta(seconds=st.delivery_max_age_s),
        rate_per_minute=rt.rate_limits,
    )
    report = delivery.dispatch_due(rt.sessions, rt.channels(), clock, policy=policy, links=links)
    if report.template_errors:  # the built-in message went out; an administrator must fix the template
        admin_alert(rt.sessions, rt.rules.get(), ["A message template failed; the built-in message was sent.",
                                                  *report.template_errors])  # fmt: skip
    return report


def on_evaluations(session: Any, items: list[tuple[Any, Any, Any]], now: dt.datetime, runtime: Runtime | None = None) -> list[alerting.Outcome]:
    """Pipeline hook: apply each (evaluation, patient or None, check-in therapy_start) to the
    patient's alerts, in the batch's transaction, in recorded order."""
    rt = runtime or get_runtime()
    rules = rt.rules.get()
    return [alerting.on_evaluation(session, e, p, rules, now, episode=alerting.episode_of(p, start)) for e, p, start in items]
