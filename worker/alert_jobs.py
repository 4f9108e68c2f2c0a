"""The scheduled alerting jobs, called by thin Celery tasks: escalate, dispatch, missed check-ins.

Each job takes the process runtime (settings, database, rules in force, channels) and the time; it
is idempotent and safe to run in several processes at once (conditional updates and SKIP LOCKED
claims), so a duplicate or stale tick does nothing harmful.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from worker import alerting, delivery
from worker.logs import get_logger
from worker.runtime import Runtime, admin_alert, get_runtime

log = get_logger(__name__)


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
    report = delivery.dispatch_due(rt.sessions, rt.channels(), clock, policy=policy, links=links, templates=rt.templates())
    if report.template_errors:  # the built-in message went out; an administrator must fix the template
        admin_alert(rt.sessions, rt.rules.get(), ["A message template failed; the built-in message was sent.",
                                                  *report.template_errors])  # fmt: skip
    return report


def on_batch(session: Any, stored: list[tuple[Any, Any]], now: dt.datetime, runtime: Runtime | None = None) -> None:
    """Pipeline hook (worker.pipeline.AlertHook): apply the batch's evaluations to alerts, in the
    batch's transaction, with a few statements for the whole batch (worker.alert_batch)."""
    from sqlalchemy import select

    from worker.store.models import Patient

    rt = runtime or get_runtime()
    pids = {e.patient_id for e, _ in stored}
    patients = {p.patient_id: p for p in session.scalars(select(Patient).where(Patient.patient_id.in_(pids)))}
    apply_batch(session, stored, patients, rt.rules.get(), now)


def apply_batch(session: Any, stored: list[tuple[Any, Any]], patients: dict[str, Any], rules: Any,
                now: dt.datetime) -> list[alerting.Outcome | None]:  # fmt: skip
    """The batched path in a savepoint. A database failure fails the batch (it is not acknowledged
    and comes back); any other failure is a bug of the batched path: logged, its savepoint rolled
    back and its state dropped from the session, and ``each`` does the batch instead."""
    from sqlalchemy.exc import DBAPIError

    from worker.alert_batch import Batch

    batch = Batch(session)
    try:
        with session.begin_nested():
            return batch.run(stored, patients, rules, now)
    except DBAPIError:
        raise
    except Exception as exc:  # noqa: BLE001 - see the docstring
        log.error("alert_batch_failed", error_type=type(exc).__name__, evaluations=len(stored))
        batch.forget()
    return each(session, stored, patients, rules, now)


def _alerting_failed(session: Any, evaluation: Any, patient: Any, rules: Any, now: dt.datetime, error_type: str) -> None:
    """The alert rules failed on this evaluation: open a ``system`` alert with its content (patient,
    grades, urgency, red flags), routed like any alert, so the check-in is not left unseen. Its own
    failure is logged, never raised (a database error still fails the batch)."""
    import hashlib

    from sqlalchemy.exc import DBAPIError

    from worker.rules import routing

    try:
        with session.begin_nested():
            content = alerting.content_of(evaluation, patient, "system")
            content["reasons"] = [f"Alerting failed on this check-in ({error_type}); it was evaluated as "
                                  f"{content['urgency']}: review the patient now.", *(content.get("reasons") or [])]  # fmt: skip
            subj = alerting.subject_of(content)
            decision = routing.decide(rules.rules.routes, subj)
            if decision.page:
                episode = "failed:" + hashlib.sha256(str(evaluation.checkin_id).encode()).hexdigest()[:24]
                alerting.open_alert(session, content, subj, decision, rules, now, episode=episode,
                                    condition="system", actor="system")  # fmt: skip
    except DBAPIError:
        raise
    except Exception as exc:  # noqa: BLE001 - the audit row and the log line above remain
        log.error("alerting_failed_alert_failed", checkin_id=evaluation.checkin_id, error_type=type(exc).__name__)


def each(session: Any, stored: list[tuple[Any, Any]], patients: dict[str, Any], rules: Any,
         now: dt.datetime) -> list[alerting.Outcome | None]:  # fmt: skip
    """The reference path: one evaluation at a time (None: skipped).

    - Open alerts of the batch's patients are read once for the whole batch.
    - An evaluation whose route does not page, for a patient with nothing open, costs no query.
    - Each evaluation runs in its own savepoint. A database failure fails the batch (it is not
      acknowledged and comes back); any other failure is a bug: logged and audited as
      ``alerting.failed`` with the check-in id, the check-in itself stays stored, and a ``system``
      alert carrying the evaluation is opened through the routes (``_alerting_failed``), so an
      emergency still reaches someone.
    """
    from sqlalchemy import select
    from sqlalchemy.exc import DBAPIError

    from worker.store.alert_tables import OPEN_STATES, Alert
    from worker.store.repo import audit

    pids = {e.patient_id for e, _ in stored}
    open_pids = set(session.scalars(select(Alert.patient_id).where(Alert.patient_id.in_(pids), Alert.state.in_(OPEN_STATES))))
    outcomes: list[alerting.Outcome | None] = []
    for evaluation, checkin in stored:
        pid = evaluation.patient_id
        patient = patients.get(pid)
        outcomes.append(None)
        if pid not in open_pids and not alerting.route_pages(evaluation, patient, rules):
            continue
        try:
            with session.begin_nested():
                out = alerting.on_evaluation(session, evaluation, patient, rules, now,
                                             episode=alerting.episode_of(patient, checkin.therapy_start))  # fmt: skip
        except DBAPIError:
            raise
        except Exception as exc:  # noqa: BLE001 - see the docstring
            log.error("alerting_failed", checkin_id=evaluation.checkin_id, patient_id=pid, error_type=type(exc).__name__)
            audit(session, at=now, actor="system", action="alerting.failed", subject=evaluation.checkin_id,
                  patient_id=pid, error_type=type(exc).__name__)  # fmt: skip
            _alerting_failed(session, evaluation, patient, rules, now, type(exc).__name__)
            continue
        outcomes[-1] = out
        if out.action == "opened":
            open_pids.add(pid)
    return outcomes
