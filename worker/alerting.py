"""Alerts: open, upgrade, annotate, escalate, acknowledge and resolve, in the caller's transaction.

Rules (issue 4; the pure parts are in worker/rules/):
- One open alert per (patient, episode, condition). A paging route opens it; the escalation policy
  and the receivers it names are frozen onto it.
- A later evaluation worse than the worst the alert has seen (CRS grade, ICANS level, a new
  emergency red flag) upgrades it: it becomes unacknowledged and the escalation restarts, at the
  step already reached (at step 1 when it had been acknowledged or its policy changes), with fresh
  content. Anything else is an annotation: recorded, not paged.
- Only a clinician resolves a clinical alert. Exception [design]: a missed-check-in alert is
  resolved by the system when the patient checks in again (that is what it was waiting for).
- Escalation due times are stored on the alert; ``escalate_due`` claims each due alert with a
  conditional update on ``escalation_seq``, so concurrent or repeated runs write each page once.
  If several pages fell due while nothing ran, only the latest is sent (the most escalated).
- Quiet hours hold back routine escalation, not just its messages: a routine alert opened in them
  starts its timeline when they end, and a routine escalation due in them waits for their end
  and then sends the latest page due (one page, not a night's worth at once).
- An acknowledged alert that is not resolved re-pages from step 1 after the policy's ack_timeout.
- A page is as urgent as the worst the alert has seen (an unresolved emergency stays one for its
  silences, quiet hours, inhibition and delivery, whatever a later, better check-in says).
- Every page is written as notification rows (the outbox) in the same transaction; inhibited and
  silenced ones are kept with status "suppressed" and the reason, quiet hours set "deferred" with
  the time they may go. Nothing is dropped without a row saying why.
- Every transition goes to the audit log.

The rules read open alerts and write their effects through a ``Store``: ``SessionStore`` issues the
statements one by one in the caller's session (the reference); worker.alert_batch applies a whole
pipeline batch in memory with the same rules and writes it with a few statements.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from worker.grading import therapy as th
from worker.rules import escalation, policy, routing
from worker.rules.loader import LoadedRules
from worker.rules.matchers import URGENCY_ORDER
from worker.rules.models import SNAPSHOT, Contact, Policy, Receiver
from worker.store.alert_tables import OPEN_STATES, Alert, Notification
from worker.store.models import EvaluationRow, Patient
from worker.store.repo import audit, insert_ignore

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read over the phone and typed in an SMS
SYSTEM = "system"
CODE_TRIES = 20
CANCELLABLE = ("pending", "deferred")  # the page statuses an upgrade, an acknowledgement or a resolution cancels


class AlertError(ValueError):
    """An action that cannot be done (unknown alert, already resolved, ...); the message says why."""


@dataclass(frozen=True, slots=True)
class Outcome:
    action: str  # opened | upgraded | annotated | not_paged
    alert_id: int | None = None
    pages: int = 0


# ---- helpers ----------------------------------------------------------------------------------


def episode_of(patient: Patient | None, therapy_start: dt.date | None = None) -> str:
    start = patient.therapy_start if patient is not None and patient.therapy_start else therapy_start
    return start.isoformat() if start else "unenrolled"


def content_of(evaluation: Any, patient: Patient | None, condition: str) -> dict[str, Any]:
    """What an alert shows and routes on: the evaluation, the condition, the patient's unit and labels."""
    data = evaluation.as_dict() if hasattr(evaluation, "as_dict") else dict(evaluation)
    data["condition"] = condition
    data["unit"] = patient.unit if patient is not None else None
    data["labels"] = dict(patient.labels or {}) if patient is not None else {}
    return data


subject_of = policy.subject_from_content  # the matcher fields of an alert's stored content


def _snapshot(loaded: LoadedRules, policy_name: str, notify: tuple[str, ...]) -> dict[str, Any]:
    rules = loaded.rules
    pol = rules.escalation_policies[policy_name]
    names = {n for step in pol.steps for n in step.notify} | {pol.failsafe} | set(notify)
    return {
        "name": policy_name,
        "policy": pol.model_dump(mode="json"),
        "receivers": {n: rules.receivers[n].model_dump(mode="json") for n in sorted(names)},
    }


def _policy(alert: Alert) -> Policy:
    return _parsed(Policy, alert.policy_snapshot["policy"])


def _receiver(alert: Alert, name: str) -> Receiver:
    return _parsed(Receiver, alert.policy_snapshot["receivers"][name])


_PARSED: dict[int, tuple[dict[str, Any], Any]] = {}


def _parsed(model: Any, data: dict[str, Any]) -> Any:
    """``model.model_validate(data)``, once per snapshot dict object (a batch reads the same alert's
    snapshot many times). Keyed by identity and checked by identity, so a replaced snapshot is
    parsed again; the models are frozen, so sharing a parsed one is safe."""
    hit = _PARSED.get(id(data))
    if hit is not None and hit[0] is data and type(hit[1]) is model:
        return hit[1]
    if len(_PARSED) >= 4096:
        _PARSED.clear()
    parsed = model.model_validate(data, context=SNAPSHOT)  # frozen under older rules: no 7d duration cap
    _PARSED[id(data)] = (data, parsed)  # holding ``data`` keeps its id from being reused
    return parsed


def random_code() -> str:
    # 32 symbols: each random byte modulo 32 is uniform (256 = 8 x 32), one call for the five
    return "".join(CODE_ALPHABET[b % 32] for b in secrets.token_bytes(5))


def _new_code(session: Session) -> str:
    for _ in range(CODE_TRIES):
        code = random_code()
        if session.scalar(select(Alert.id).where(Alert.code == code)) is None:
            return code
    raise AlertError("could not find a free alert code")  # 32^5 codes: practically unreachable


def _open_alerts(session: Session, patient_id: str) -> list[Alert]:
    return list(session.scalars(select(Alert).where(Alert.patient_id == patient_id, Alert.state.in_(OPEN_STATES))))


# ---- notifications (the outbox) -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rows:
    """One page or message about an alert: its notification rows (one per receiver contact), as the
    alert was when it was written. ``build`` makes the rows once the alert has its id and code."""

    content: dict[str, Any]
    urgency: str
    contacts: tuple[tuple[str, tuple[Contact, ...]], ...]  # (receiver, its contacts)
    event: str
    escalating: bool
    step: int
    repeat: int
    key: str
    status: str
    reason: str | None
    created_at: dt.datetime
    not_before: dt.datetime

    @property
    def size(self) -> int:
        return sum(len(contacts) for _, contacts in self.contacts)

    def build(self, alert_id: int, code: str) -> list[dict[str, Any]]:
        content = dict(self.content, alert_id=alert_id, alert_code=code, event=self.event, step=self.step, repeat=self.repeat)
        return [{
            "dedupe_key": f"{alert_id}:{self.key}:{name}:{index}",
            "alert_id": alert_id,
            "event": self.event,
            "urgency": self.urgency,
            "receiver": name,
            "channel": contact.channel,
            "address": contact.to,
            "escalating": self.escalating,
            "step": self.step,
            "repeat": self.repeat,
            "status": self.status,
            "status_reason": self.reason,
            "content": dict(content),
            "created_at": self.created_at,
            "next_attempt_at": self.not_before,
            "attempts": 0,
        } for name, contacts in self.contacts for index, contact in enumerate(contacts)]  # fmt: skip


class Store(Protocol):
    """Where the alert rules read the open alerts and send their effects. ``SessionStore`` does it
    statement by statement in the caller's session (the reference behaviour); worker.alert_batch
    keeps a whole batch in memory and writes it with a few statements."""

    def missed_checkin_alerts(self, patient_id: str) -> list[Alert]: ...
    def clinical_alert(self, patient_id: str, episode: str) -> Alert | None: ...
    def others(self, alert: Alert) -> list[Alert]: ...  # the patient's other open alerts
    def add(self, alert: Alert) -> None: ...  # a new alert: gets its code (and id, when the store can)
    def write(self, alert: Alert, rows: Rows) -> int: ...  # the rows written (a known dedupe_key is not)
    def cancel_pages(self, alert: Alert, why: str) -> None: ...
    def audit(self, alert: Alert, *, at: dt.datetime, actor: str, action: str, **detail: Any) -> None: ...


@dataclass(frozen=True, slots=True)
class SessionStore:
    """The Store on a session: every read is a query, every write a statement, at once."""

    session: Session

    def missed_checkin_alerts(self, patient_id: str) -> list[Alert]:
        return list(self.session.scalars(select(Alert).where(Alert.patient_id == patient_id, Alert.condition == "missed_checkin",
                                                             Alert.state.in_(OPEN_STATES))))  # fmt: skip

    def clinical_alert(self, patient_id: str, episode: str) -> Alert | None:
        return self.session.scalars(
            select(Alert).where(Alert.patient_id == patient_id, Alert.episode == episode,
                                Alert.condition == "clinical", Alert.state.in_(OPEN_STATES)).with_for_update()  # fmt: skip
        ).first()

    def others(self, alert: Alert) -> list[Alert]:
        return [a for a in _open_alerts(self.session, alert.patient_id) if a.id != alert.id]

    def add(self, alert: Alert) -> None:
        alert.code = _new_code(self.session)
        self.session.add(alert)
        self.session.flush()  # the id goes into the notification keys

    def write(self, alert: Alert, rows: Rows) -> int:
        written = 0
        for row in rows.build(alert.id, alert.code):
            if insert_ignore(self.session, Notification.__table__, row, ["dedupe_key"]) is not None:
                written += 1
        return written

    def cancel_pages(self, alert: Alert, why: str) -> None:
        self.session.execute(
            update(Notification)
            .where(Notification.alert_id == alert.id, Notification.escalating.is_(True),
                   Notification.status.in_(CANCELLABLE))  # fmt: skip
            .values(status="cancelled", status_reason=why)
        )

    def audit(self, alert: Alert, *, at: dt.datetime, actor: str, action: str, **detail: Any) -> None:
        audit(self.session, at=at, actor=actor, action=action, subject=f"alert:{alert.id}", **detail)


def _page_subject(alert: Alert) -> dict[str, Any]:
    """The matcher fields of the alert's pages: its latest content, as urgent as the worst seen."""
    subj = subject_of(alert.content)
    worst = (alert.worst or {}).get("urgency") or subj["urgency"]
    subj["urgency"] = max(subj["urgency"], worst, key=URGENCY_ORDER.__getitem__)
    return subj


def _quiet_until(alert: Alert, loaded: LoadedRules | None, now: dt.datetime) -> dt.datetime | None:
    """The end of the quiet hours holding back the alert's pages now (routine only), else None."""
    if loaded is None:
        return None
    return policy.quiet_until(_page_subject(alert), now, loaded.rules.timezone, loaded.rules.quiet_hours)


def _write(store: Store, alert: Alert, loaded: LoadedRules | None, now: dt.datetime, *, receivers: tuple[str, ...],
           event: str, escalating: bool, step: int, repeat: int, key: str) -> int:  # fmt: skip
    """Notification rows for ``receivers`` (each contact), with inhibition/silence/quiet-hours status.

    A page is as urgent as the worst the alert has seen, not its latest check-in: an emergency
    nobody has resolved still pages as one after a better check-in (no silence, quiet hours,
    inhibition or rate limit applies to it)."""
    subj = _page_subject(alert) if escalating else subject_of(alert.content)
    urgency = subj["urgency"] if escalating else alert.urgency
    status, reason, not_before = "pending", None, now
    if loaded is not None and escalating:
        others = [subject_of(a.content) for a in store.others(alert)]
        rules = loaded.rules
        if (rule := policy.inhibited_by(subj, others, rules.inhibit)) is not None:
            status, reason = "suppressed", "inhibited: " + " & ".join(m.text for m in rule.source)
        elif (silence := policy.silenced_by(subj, now, rules.silences)) is not None:
            status, reason = "suppressed", f"silenced by {silence.id}"
        elif (until := policy.quiet_until(subj, now, rules.timezone, rules.quiet_hours)) is not None:
            status, reason, not_before = "deferred", "quiet hours", until
    contacts = tuple((name, tuple(_receiver(alert, name).contacts)) for name in receivers)
    return store.write(alert, Rows(alert.content, urgency, contacts, event, escalating, step, repeat, key,
                                   status, reason, now, not_before))  # fmt: skip


def _page(store: Store, alert: Alert, loaded: LoadedRules | None, page: escalation.Page, event: str, now: dt.datetime) -> int:
    kind = "failsafe" if page.kind == "failsafe" else event
    key = f"e{alert.escalation_epoch}:p{page.seq}"
    return _write(store, alert, loaded, now, receivers=page.receivers, event=kind, escalating=True,
                  step=page.step, repeat=page.repeat, key=key)  # fmt: skip


def _inform(store: Store, alert: Alert, now: dt.datetime, event: str, key: str) -> int:
    if not alert.notify_receivers:
        return 0
    return _write(store, alert, None, now, receivers=tuple(alert.notify_receivers), event=event,
                  escalating=False, step=0, repeat=0, key=f"info:{key}")  # fmt: skip


def _start_escalation(store: Store, alert: Alert, loaded: LoadedRules | None, now: dt.datetime, event: str,
                      first_step: int) -> int:  # fmt: skip
    """Page the first step now; in quiet hours (routine) the timeline starts when they end, which
    is when that page goes out: nobody is escalated past for a page they could not have seen."""
    pol = _policy(alert)
    first_step = min(first_step, len(pol.steps))
    start = _quiet_until(alert, loaded, now) or now
    alert.escalation_epoch = (alert.escalation_epoch or 0) + 1
    alert.escalation_first_step = first_step
    alert.escalation_started_at = start
    page = escalation.page_at(pol, start, 0, first_step)
    written = _page(store, alert, loaded, page, event, now)
    alert.escalation_seq = 1
    alert.next_escalation_at = escalation.page_at(pol, start, 1, first_step).at
    return written


# ---- evaluations -> alerts ------------------------------------------------------------------


def on_evaluation(session: Session, evaluation: Any, patient: Patient | None, loaded: LoadedRules, now: dt.datetime,
                  *, episode: str, actor: str = SYSTEM) -> Outcome:  # fmt: skip
    """Apply one evaluation to the patient's alerts (call inside the batch's transaction)."""
    return outcome_of(*apply_evaluation(SessionStore(session), evaluation, patient, loaded, now, episode=episode, actor=actor))


def outcome_of(action: str, alert: Alert | None, pages: int) -> Outcome:
    return Outcome(action, alert.id if alert is not None else None, pages)


def route_pages(evaluation: Any, patient: Patient | None, loaded: LoadedRules) -> bool:
    """Whether the evaluation's route pages: for a patient with no open alert, one that does not
    page changes nothing (the batch hooks skip it without a query)."""
    return routing.decide(loaded.rules.routes, subject_of(content_of(evaluation, patient, "clinical"))).page


def apply_evaluation(store: Store, evaluation: Any, patient: Patient | None, loaded: LoadedRules, now: dt.datetime,
                     *, episode: str, actor: str = SYSTEM) -> tuple[str, Alert | None, int]:  # fmt: skip
    """on_evaluation on any Store: (action, the alert, pages written)."""
    _resolve_missed_checkin(store, evaluation.patient_id, now, evaluation.checkin_id)
    content = content_of(evaluation, patient, "clinical")
    subj = subject_of(content)
    decision = routing.decide(loaded.rules.routes, subj)
    alert = store.clinical_alert(evaluation.patient_id, episode)
    if alert is None:
        if not decision.page:
            return "not_paged", None, 0
        return _open(store, content, subj, decision, loaded, now, episode=episode, condition="clinical", actor=actor)

    kind, why = policy.assess(policy.Worst(**_worst_args(alert.worst)), subj)
    newer = _when(content) >= _when(alert.content)
    alert.worst = _worst_json(policy.merge_worst(policy.Worst(**_worst_args(alert.worst)), subj))
    if newer:
        alert.content = content
        alert.urgency = subj["urgency"]
        alert.latest_checkin_id = evaluation.checkin_id
    alert.updated_at = now
    if kind == "annotate":
        store.audit(alert, at=now, actor=actor, action="alert.annotated",
                    checkin_id=evaluation.checkin_id, urgency=subj["urgency"], newer=newer)  # fmt: skip
        return "annotated", alert, 0

    if not newer:  # a late report of something worse: show it, it is new information
        alert.content = content
    step = 0 if alert.state == "acknowledged" else _current_step(alert)
    if decision.policy != alert.policy_name:
        alert.policy_name = decision.policy
        alert.policy_snapshot = _snapshot(loaded, decision.policy, decision.notify)
        alert.notify_receivers = list(decision.notify)
        alert.route = decision.route_name
        step = 0
    alert.state = "triggered"
    alert.acked_at = alert.acked_by = alert.ack_via = None
    alert.upgrades += 1
    store.cancel_pages(alert, "superseded by an upgrade")
    pages = _start_escalation(store, alert, loaded, now, "alert.upgraded", step)
    _inform(store, alert, now, "alert.upgraded", f"up{alert.upgrades}")
    store.audit(alert, at=now, actor=actor, action="alert.upgraded",
                checkin_id=evaluation.checkin_id, why=why, policy=alert.policy_name, route=decision.route_name)  # fmt: skip
    return "upgraded", alert, pages


def _when(content: dict[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(content["recorded_at"])


def _current_step(alert: Alert) -> int:
    if not alert.escalation_seq:
        return alert.escalation_first_step
    last = escalation.page_at(_policy(alert), alert.escalation_started_at, alert.escalation_seq - 1, alert.escalation_first_step)
    return last.step


def _worst_args(worst: dict[str, Any]) -> dict[str, Any]:
    return {**worst, "red_flags": frozenset(worst["red_flags"])}


def _worst_json(worst: policy.Worst) -> dict[str, Any]:
    return {"crs_grade": worst.crs_grade, "icans_level": worst.icans_level, "red_flags": sorted(worst.red_flags),
            "urgency": worst.urgency}  # fmt: skip


def open_alert(session: Session, content: dict[str, Any], subj: dict[str, Any], decision: routing.Decision,
          loaded: LoadedRules, now: dt.datetime, *, episode: str, condition: str, actor: str) -> Outcome:  # fmt: skip
    return outcome_of(*_open(SessionStore(session), content, subj, decision, loaded, now, episode=episode,
                           condition=condition, actor=actor))  # fmt: skip


def _open(store: Store, content: dict[str, Any], subj: dict[str, Any], decision: routing.Decision, loaded: LoadedRules,
          now: dt.datetime, *, episode: str, condition: str, actor: str) -> tuple[str, Alert, int]:  # fmt: skip
    worst = policy.merge_worst(None, {**subj, "crs_grade": subj["crs_grade"] or 0, "icans_grade": subj["icans_grade"] or 0})
    alert = Alert(
        patient_id=subj["patient_id"],
        episode=episode,
        condition=condition,
        state="triggered",
        urgency=subj["urgency"],
        route=decision.route_name,
        policy_name=decision.policy,
        policy_snapshot=_snapshot(loaded, decision.policy, decision.notify),
        notify_receivers=list(decision.notify),
        rules_sha256=loaded.sha256,
        worst=_worst_json(worst),
        content=content,
        latest_checkin_id=content.get("checkin_id"),
        escalation_started_at=now,
        escalation_seq=0,
        escalation_epoch=0,
        escalation_first_step=0,
        upgrades=0,
        opened_at=now,
        updated_at=now,
    )
    store.add(alert)
    pages = _start_escalation(store, alert, loaded, now, "alert.triggered", 0)
    _inform(store, alert, now, "alert.triggered", "open")
    store.audit(alert, at=now, actor=actor, action="alert.opened",
                patient_id=alert.patient_id, condition=condition, route=decision.route_name, policy=decision.policy,
                urgency=alert.urgency, guard=decision.guard, checkin_id=content.get("checkin_id"))  # fmt: skip
    return "opened", alert, pages


def _resolve_missed_checkin(store: Store, patient_id: str, now: dt.datetime, checkin_id: str) -> None:
    for alert in store.missed_checkin_alerts(patient_id):
        _close(store, alert, now, actor="system:checkin-received", note=f"check-in {checkin_id} received")


# ---- escalation -------------------------------------------------------------------------------


def escalate_due(session: Session, loaded: LoadedRules | None, now: dt.datetime, limit: int = 200) -> int:
    """Advance every alert whose next page is due; returns the notification rows written.

    Each alert is claimed with a conditional UPDATE on (id, state, escalation_seq, epoch): a run
    that lost the race, or a stale duplicate, updates 0 rows and writes nothing. On PostgreSQL the
    due alerts are locked as they are read, skipping any another transaction holds (a pipeline
    batch updating it, another escalate run): those are taken at the next tick.
    """
    due = session.execute(
        select(Alert.id, Alert.state, Alert.escalation_seq, Alert.escalation_epoch)
        .where(Alert.state.in_(OPEN_STATES), Alert.next_escalation_at <= now)
        .order_by(Alert.next_escalation_at, Alert.id)  # ties in a fixed order
        .limit(limit)
        # PostgreSQL: an alert a drain batch holds (it locks its patients' open alerts) is left to
        # the next tick instead of waited for, so the two never deadlock; SQLite has no row locks.
        .with_for_update(skip_locked=True)
    ).all()
    written = 0
    store = SessionStore(session)
    for alert_id, state, seq, epoch in due:
        alert = session.get(Alert, alert_id, populate_existing=True)
        pol = _policy(alert)
        if state == "acknowledged":
            claimed = session.execute(
                update(Alert).where(Alert.id == alert_id, Alert.state == "acknowledged", Alert.escalation_epoch == epoch)
                .values(state="triggered", updated_at=now).execution_options(synchronize_session=False)  # fmt: skip
            ).rowcount
            if claimed != 1:
                continue
            session.refresh(alert)
            alert.acked_at = alert.acked_by = alert.ack_via = None
            written += _start_escalation(store, alert, loaded, now, "alert.repeated", 0)
            audit(session, at=now, actor=SYSTEM, action="alert.ack_timeout", subject=f"alert:{alert_id}",
                  ack_timeout_s=pol.ack_timeout.total_seconds())  # fmt: skip
            continue
        if (until := _quiet_until(alert, loaded, now)) is not None:
            # Routine in quiet hours: wait for their end, then send the latest page due by then
            # (one page, as after a scheduler outage), not one deferred page per page due overnight.
            session.execute(
                update(Alert).where(Alert.id == alert_id, Alert.state == "triggered", Alert.escalation_seq == seq,
                                    Alert.escalation_epoch == epoch)  # fmt: skip
                .values(next_escalation_at=until).execution_options(synchronize_session=False)
            )
            continue
        # Catch up: the latest page already due (the most escalated), then the one after it.
        page, following = escalation.latest_due(pol, alert.escalation_started_at, seq, now, alert.escalation_first_step)
        target = page.seq
        claimed = session.execute(
            update(Alert).where(Alert.id == alert_id, Alert.state == "triggered", Alert.escalation_seq == seq,
                                Alert.escalation_epoch == epoch)  # fmt: skip
            .values(escalation_seq=target + 1, next_escalation_at=following.at, updated_at=now)
            .execution_options(synchronize_session=False)
        ).rowcount
        if claimed != 1:
            continue
        session.refresh(alert)
        event = "alert.repeated" if page.kind == "repeat" else "alert.escalated"
        written += _page(store, alert, loaded, page, event, now)
        audit(session, at=now, actor=SYSTEM, action=f"alert.{page.kind}", subject=f"alert:{alert_id}",
              step=page.step + 1, repeat=page.repeat, receivers=list(page.receivers), skipped=target - seq)  # fmt: skip
    return written


# ---- acknowledge / resolve ------------------------------------------------------------------


_MAX_ID = 2**63 - 1  # BIGINT (SQLite INTEGER): a larger number is no alert, not an OverflowError


def find(session: Session, ref: int | str) -> Alert:
    """An alert by id (an int) or by a reference a person typed: its code (case-insensitive), or
    its id. Codes can be all digits (their alphabet holds 2-9), so a digit string that is one
    alert's id and another alert's code is refused as ambiguous (AlertError) rather than guessed."""
    by_id = None
    if isinstance(ref, int) or (ref.isascii() and ref.isdigit()):
        by_id = session.get(Alert, int(ref)) if 0 <= int(ref) <= _MAX_ID else None
        if isinstance(ref, int):
            if by_id is None:
                raise AlertError(f"no alert {ref!r}")
            return by_id
    by_code = session.scalars(select(Alert).where(Alert.code == ref.strip().upper())).first()
    if by_id is not None and by_code is not None and by_id.id != by_code.id:
        raise AlertError(f"ambiguous reference {ref!r}: it is the id of alert {by_id.code} and the code of alert "
                         f"id {by_code.id}; use {by_id.code} for the first or {by_code.id} for the second")
    alert = by_code or by_id
    if alert is None:
        raise AlertError(f"no alert {ref!r}")
    return alert


def acknowledge(session: Session, ref: int | str, *, actor: str, via: str, now: dt.datetime) -> bool:
    """Take responsibility: escalation stops; the policy's ack_timeout re-pages if not resolved.

    Returns False when it was already acknowledged (idempotent); raises AlertError when resolved.
    """
    alert = find(session, ref)
    session.refresh(alert, with_for_update=True)
    if alert.state == "resolved":
        raise AlertError(f"alert {alert.code} is already resolved")
    if alert.state == "acknowledged":
        return False
    pol = _policy(alert)
    alert.state = "acknowledged"
    alert.acked_at, alert.acked_by, alert.ack_via = now, actor, via
    alert.next_escalation_at = now + pol.ack_timeout
    alert.updated_at = now
    store = SessionStore(session)
    store.cancel_pages(alert, f"acknowledged by {actor}")
    _inform(store, alert, now, "alert.acknowledged", f"ack{alert.escalation_epoch}")
    audit(session, at=now, actor=actor, action="alert.acknowledged", subject=f"alert:{alert.id}", via=via)
    return True


def resolve(session: Session, ref: int | str, *, actor: str, note: str, now: dt.datetime) -> Alert:
    """Close the alert (a clinician's decision; a note is required)."""
    if not note or not note.strip():
        raise AlertError("a resolution note is required")
    alert = find(session, ref)
    session.refresh(alert, with_for_update=True)
    if alert.state == "resolved":
        raise AlertError(f"alert {alert.code} is already resolved")
    _close(SessionStore(session), alert, now, actor=actor, note=note.strip())
    return alert


def _close(store: Store, alert: Alert, now: dt.datetime, *, actor: str, note: str) -> None:
    alert.state = "resolved"
    alert.resolved_at, alert.resolved_by, alert.resolution_note = now, actor, note
    alert.next_escalation_at = None
    alert.updated_at = now
    store.cancel_pages(alert, f"resolved by {actor}")
    _inform(store, alert, now, "alert.resolved", "resolved")
    store.audit(alert, at=now, actor=actor, action="alert.resolved")


# ---- missed check-ins ---------------------------------------------------------------------------


def check_missed(session: Session, loaded: LoadedRules, now: dt.datetime) -> list[int]:
    """Open a missed-check-in alert for every enrolled patient inside their monitoring window whose
    last check-in (its ``effective_at``, capped at its arrival; or enrollment) is older than their expected interval plus the grace period.

    A missed-check-in alert resolved in this episode restarts the wait from its resolution (no
    new alert for the same silence at the next tick).

    Monitoring window: the therapy's at-risk window from ``therapy_start``; an unknown therapy or
    start keeps the patient monitored while enrolled [design: the safer reading].
    """
    cfg = loaded.rules.missed_checkins
    if not cfg.enabled:
        return []
    opened = []
    for patient in session.scalars(select(Patient).where(Patient.checkin_interval_h.is_not(None))):
        therapy = th.lookup(patient.therapy)
        day = th.day_since(patient.therapy_start, now)
        window = th.in_window(therapy, day)
        if window is False:
            continue
        # effective_at, not recorded_at: a phone's clock set in the future must not hold off the alert
        last = session.scalar(select(EvaluationRow.effective_at).where(EvaluationRow.patient_id == patient.patient_id)
                              .order_by(EvaluationRow.effective_at.desc()).limit(1))  # fmt: skip
        since = max(last or patient.enrolled_at, patient.enrolled_at)
        wait = dt.timedelta(hours=patient.checkin_interval_h) + cfg.grace
        if now <= since + wait:
            continue
        episode = episode_of(patient)
        exists = session.scalar(select(Alert.id).where(Alert.patient_id == patient.patient_id, Alert.episode == episode,
                                                       Alert.condition == "missed_checkin", Alert.state.in_(OPEN_STATES)))  # fmt: skip
        if exists is not None:
            continue
        # A missed-check-in alert closed since (a clinician reached the patient, or a late-recorded
        # check-in arrived) starts the wait again: one alert per silent period, not one per tick.
        closed = session.scalar(select(func.max(Alert.resolved_at)).where(
            Alert.patient_id == patient.patient_id, Alert.episode == episode, Alert.condition == "missed_checkin"))  # fmt: skip
        if closed is not None and now <= closed + wait:
            continue
        hours = (now - since).total_seconds() / 3600
        content = {
            "checkin_id": None, "patient_id": patient.patient_id, "recorded_at": now.isoformat(), "condition": "missed_checkin",
            "crs_grade": None, "crs_grade_is_minimum": None, "icans_grade": None, "icans_floor": None, "news2": None,
            "red_flags": [], "urgency": "urgent", "therapy_tier": therapy.tier, "therapy_class": therapy.therapy_class,
            "in_risk_window": window, "day_since_therapy": day, "age_years": patient.age_years, "age_band": None,
            "unit": patient.unit, "labels": dict(patient.labels or {}),
            "reasons": [f"No check-in for {hours:.1f} h (expected every {patient.checkin_interval_h:g} h "
                        f"plus {cfg.grace} grace): contact the patient."],
            "advice": "Contact the patient now; a patient who cannot be reached may be too unwell to check in.",
        }  # fmt: skip
        subj = subject_of(content)
        decision = routing.decide(loaded.rules.routes, subj)
        outcome = open_alert(session, content, subj, decision, loaded, now, episode=episode, condition="missed_checkin", actor=SYSTEM)
        opened.append(outcome.alert_id)
    return opened
