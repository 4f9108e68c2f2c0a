"""A pipeline batch's evaluations applied to alerts with a few statements, whatever its size: the
batched twin of calling worker.alerting.on_evaluation for each evaluation in order, with the same
resulting rows (alerts, notifications, audit log: same values, ids in the same order).

The rules are alerting's own (alerting.apply_evaluation on a Store); ``Batch`` is the Store that
keeps the batch in memory:
- one SELECT ... FOR UPDATE of every open alert of the batch's patients (any condition and
  episode), by id; the rules read and change those, and the alerts they open, in memory, so
  inhibition sees the patient's other open alerts including the ones opened earlier in the batch;
- at the end, in this order: the new alerts' codes checked with one query (colliders drawn
  again); the changed alerts written with one executemany UPDATE per set of changed columns (a
  few kinds: annotation, upgrade, upgrade with a new policy) and the new ones with one multi-row
  INSERT (ids in opening order); the cancelled pages among the rows from before the batch with
  one UPDATE; then the notification rows and the audit rows, each with one multi-row
  INSERT, in the order the per-evaluation path writes them.
  Not an ORM flush: it sends one UPDATE per run of alerts with the same changed columns, and on
  SQLite one INSERT per new alert (it must match RETURNING rows to objects in order); so the new
  alerts stay out of the session (matched to their ids by code) and the changed ones are marked
  as written once the UPDATE has run.
- Cancelling pages: rows written earlier in the batch are cancelled in memory; rows from before
  the batch take the reason of the first cancel of their alert (a later one finds them cancelled).
- A notification whose dedupe_key exists already (never in normal operation) raises ``Unusual``:
  the caller falls back to the per-evaluation path, the reference for anything unusual.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from typing import Any

from sqlalchemy import bindparam, case, inspect, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from worker import alerting
from worker.rules.loader import LoadedRules
from worker.store.alert_tables import OPEN_STATES, Alert, Notification
from worker.store.models import AuditEntry, Patient
from worker.store.repo import insert_many, insert_many_ignore

_COLUMNS = [prop.key for prop in inspect(Alert).column_attrs if prop.key != "id"]  # attribute = column names


class Unusual(RuntimeError):
    """Something the batched path does not reproduce; the per-evaluation path must do the batch."""


@dataclasses.dataclass
class _Written:
    alert: Alert
    rows: alerting.Rows


class Batch:
    """alerting's Store for one batch (see the module docstring). ``run`` it inside a savepoint; if
    that fails, roll the savepoint back and call ``forget``."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.loaded: list[Alert] = []  # open before the batch (persistent, locked)
        self.new: list[Alert] = []  # opened by the batch (transient until written)
        self.alerts: dict[str, list[Alert]] = defaultdict(list)  # by patient: loaded by id, then new ones
        self.written: list[_Written] = []
        self.written_by_alert: dict[int, list[_Written]] = defaultdict(list)  # by id(alert)
        self.cancel_before: dict[int, str] = {}  # alert id -> why: its pages from before the batch
        self.audits: list[tuple[Alert, dict[str, Any]]] = []

    def run(self, stored: list[tuple[Any, Any]], patients: dict[str, Patient], loaded: LoadedRules,
            now: dt.datetime) -> list[alerting.Outcome | None]:  # fmt: skip
        """Apply ``stored`` (evaluation, check-in) in order; the outcome of each (None: skipped,
        the patient has nothing open and its route does not page)."""
        self._load({e.patient_id for e, _ in stored})
        open_pids = set(self.alerts)
        results: list[tuple[str, Alert | None, int] | None] = []
        for evaluation, checkin in stored:
            pid = evaluation.patient_id
            patient = patients.get(pid)
            if pid not in open_pids and not alerting.route_pages(evaluation, patient, loaded):
                results.append(None)
                continue
            result = alerting.apply_evaluation(self, evaluation, patient, loaded, now,
                                               episode=alerting.episode_of(patient, checkin.therapy_start))  # fmt: skip
            if result[0] == "opened":
                open_pids.add(pid)
            results.append(result)
        self._write_all()  # the new alerts get their ids here
        return [alerting.outcome_of(*r) if r is not None else None for r in results]

    def forget(self) -> None:
        """After the savepoint's rollback: no state of this batch stays in the session (the
        rollback expires changed objects already; this does not depend on it)."""
        for alert in self.new:
            if alert in self.session:
                self.session.expunge(alert)
        for alert in self.loaded:
            if alert in self.session:
                self.session.expire(alert)

    # -- alerting.Store ------------------------------------------------------------------------

    def _open(self, patient_id: str) -> list[Alert]:
        return [a for a in self.alerts.get(patient_id, ()) if a.state in OPEN_STATES]

    def missed_checkin_alerts(self, patient_id: str) -> list[Alert]:
        return [a for a in self._open(patient_id) if a.condition == "missed_checkin"]

    def clinical_alert(self, patient_id: str, episode: str) -> Alert | None:
        return next((a for a in self._open(patient_id) if a.condition == "clinical" and a.episode == episode), None)

    def others(self, alert: Alert) -> list[Alert]:
        return [a for a in self._open(alert.patient_id) if a is not alert]

    def add(self, alert: Alert) -> None:
        alert.code = alerting.random_code()  # checked for collisions at the end, all at once
        self.new.append(alert)
        self.alerts[alert.patient_id].append(alert)

    def write(self, alert: Alert, rows: alerting.Rows) -> int:
        written = _Written(alert, rows)
        self.written.append(written)
        self.written_by_alert[id(alert)].append(written)
        return rows.size

    def cancel_pages(self, alert: Alert, why: str) -> None:
        for w in self.written_by_alert.get(id(alert), ()):
            if w.rows.escalating and w.rows.status in alerting.CANCELLABLE:
                w.rows = dataclasses.replace(w.rows, status="cancelled", reason=why)
        if alert.id is not None:  # an alert from before the batch: its earlier rows too
            self.cancel_before.setdefault(alert.id, why)

    def audit(self, alert: Alert, *, at: dt.datetime, actor: str, action: str, **detail: Any) -> None:
        self.audits.append((alert, {"at": at, "actor": actor, "action": action, "detail": detail}))

    # -- reading and writing -------------------------------------------------------------------

    def _load(self, patient_ids: set[str]) -> None:
        query = (select(Alert).where(Alert.patient_id.in_(sorted(patient_ids)), Alert.state.in_(OPEN_STATES))
                 .order_by(Alert.id).with_for_update().execution_options(populate_existing=True))  # fmt: skip
        self.loaded = list(self.session.scalars(query))
        for alert in self.loaded:
            self.alerts[alert.patient_id].append(alert)

    def _write_all(self) -> None:
        session = self.session
        with session.no_autoflush:  # the changed alerts are written below, with one statement
            self._assign_codes()
            self._update_loaded()
            self._insert_new()
            if self.cancel_before:
                n = Notification.__table__.c
                session.execute(update(Notification.__table__)
                                .where(n.alert_id.in_(sorted(self.cancel_before)), n.escalating.is_(True),
                                       n.status.in_(alerting.CANCELLABLE))
                                .values(status="cancelled", status_reason=case(self.cancel_before, value=n.alert_id)))  # fmt: skip
            rows = [row for w in self.written for row in w.rows.build(w.alert.id, w.alert.code)]
            if len(insert_many_ignore(session, Notification.__table__, rows, ["dedupe_key"], ["id"])) != len(rows):
                raise Unusual("a notification's dedupe_key exists already")
            insert_many(session, AuditEntry.__table__, [dict(entry, subject=f"alert:{alert.id}") for alert, entry in self.audits])

    def _assign_codes(self) -> None:
        """Every new alert's code unused in the table and in the batch (one query a round)."""
        todo, kept = list(self.new), set()
        for _ in range(alerting.CODE_TRIES):
            if not todo:
                return
            taken = set(self.session.scalars(select(Alert.code).where(Alert.code.in_({a.code for a in todo}))))
            again = []
            for alert in todo:
                if alert.code in taken or alert.code in kept:
                    again.append(alert)
                else:
                    kept.add(alert.code)
            for alert in again:
                alert.code = alerting.random_code()
            todo = again
        raise alerting.AlertError("could not find a free alert code")

    def _update_loaded(self) -> None:
        """The changed alerts from before the batch: one executemany UPDATE per set of changed
        columns (an annotation changes a few; the policy snapshot is rewritten only when it
        changed); then their ORM state is marked as written (nothing left for a flush to do)."""
        groups: dict[tuple[str, ...], list[Alert]] = defaultdict(list)
        for alert in self.loaded:
            keys = tuple(k for k in _COLUMNS if k in inspect(alert).committed_state)
            if keys:
                groups[keys].append(alert)
        t = Alert.__table__
        for keys, changed in groups.items():
            stmt = update(t).where(t.c.id == bindparam("_id")).values({t.c[k]: bindparam(f"_{k}", type_=t.c[k].type) for k in keys})
            self.session.execute(stmt, [{"_id": a.id, **{f"_{k}": getattr(a, k) for k in keys}} for a in changed])
            for alert in changed:
                for key in keys:
                    set_committed_value(alert, key, getattr(alert, key))

    def _insert_new(self) -> None:
        """The new alerts with one multi-row INSERT, in opening order (their ids follow it)."""
        if not self.new:
            return
        got = insert_many(self.session, Alert.__table__, [{k: getattr(a, k) for k in _COLUMNS} for a in self.new], ["id", "code"])
        ids = {code: alert_id for alert_id, code in got}
        for alert in self.new:
            alert.id = ids[alert.code]
