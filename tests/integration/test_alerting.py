"""Alerts on the real databases (SQLite and PostgreSQL): whole escalation timelines with a
controlled clock, upgrades, acknowledgement and its timeout, resolution, failsafe, inhibition,
silences, quiet hours, missed check-ins, and concurrent escalate_due runs."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from tests.factories import baseline, ev
from worker import alerting
from worker.rules.loader import load_rules_text
from worker.store.alert_tables import AckToken, Alert, Notification
from worker.store.db import session_factory
from worker.store.models import AuditEntry, EvaluationRow, Patient

RULES = load_rules_text((Path(__file__).resolve().parents[2] / "config" / "rules.yaml").read_text())
T0 = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)  # 09:00 London: outside quiet hours
MIN = dt.timedelta(minutes=1)


@pytest.fixture
def sessions(engine):  # the engine fixture has run every migration
    return session_factory(engine)


def enroll(s, pid="P-test", unit="5B", interval_h=None, therapy="Yescarta", start=dt.date(2026, 11, 20)):
    s.add(Patient(patient_id=pid, age_years=50, therapy=therapy, therapy_start=start, unit=unit,
                  checkin_interval_h=interval_h, labels={}, enrolled_at=T0 - dt.timedelta(days=5),
                  updated_at=T0 - dt.timedelta(days=5)))  # fmt: skip


def apply(sessions, evaluation, now, pid="P-test"):
    with sessions.begin() as s:
        patient = s.scalars(select(Patient).where(Patient.patient_id == pid)).first()
        return alerting.on_evaluation(s, evaluation, patient, RULES, now, episode=alerting.episode_of(patient))


def pages(sessions, alert_id=None, escalating=True):
    with sessions() as s:
        q = select(Notification).where(Notification.escalating.is_(escalating)).order_by(Notification.id)
        if alert_id is not None:
            q = q.where(Notification.alert_id == alert_id)
        return list(s.scalars(q))


def receivers(rows):
    return sorted({(r.event, r.receiver) for r in rows})


def escalate(sessions, now):
    with sessions.begin() as s:
        return alerting.escalate_due(s, RULES, now)


def alert(sessions, alert_id):
    with sessions() as s:
        return s.get(Alert, alert_id)


EMERGENCY = dict(vitals={"temperature_c": 38.6}, oxygen={"device": "facemask"}, recorded_at="2026-11-25T08:55:00Z")
URGENT = dict(vitals={"temperature_c": 38.2}, recorded_at="2026-11-25T08:55:00Z")


def test_nobody_acks_the_whole_timeline_reaches_the_failsafe(sessions):
    with sessions.begin() as s:
        enroll(s)
    out = apply(sessions, ev(**EMERGENCY), T0)
    assert out.action == "opened"
    a = alert(sessions, out.alert_id)
    assert (a.state, a.policy_name, a.route, len(a.code)) == ("triggered", "emergency", "emergency", 5)
    # step 1 paged at once: 2 receivers x 2 contacts each
    first = pages(sessions)
    assert receivers(first) == [("alert.triggered", "charge-nurse"), ("alert.triggered", "oncall-fellow")]
    assert len(first) == 4 and {r.status for r in first} == {"pending"}
    assert receivers(pages(sessions, escalating=False)) == [("alert.triggered", "ehr-inbox")]

    timeline = []
    for minute in range(0, 21):
        now = T0 + minute * MIN
        if escalate(sessions, now):
            new = [r for r in pages(sessions) if r.created_at == now]
            timeline.append((minute, sorted({(r.event, r.receiver, r.step, r.repeat) for r in new})))
    assert timeline == [
        (2, [("alert.repeated", "charge-nurse", 0, 1), ("alert.repeated", "oncall-fellow", 0, 1)]),
        (4, [("alert.repeated", "charge-nurse", 0, 2), ("alert.repeated", "oncall-fellow", 0, 2)]),
        (5, [("alert.escalated", "attending", 1, 0), ("alert.escalated", "charge-nurse", 1, 0)]),
        (7, [("alert.repeated", "attending", 1, 1), ("alert.repeated", "charge-nurse", 1, 1)]),
        (10, [("failsafe", "unit-desk", 2, 0)]),
        (15, [("failsafe", "unit-desk", 2, 1)]),
        (20, [("failsafe", "unit-desk", 2, 2)]),
    ]
    with sessions() as s:
        actions = [a.action for a in s.scalars(select(AuditEntry).where(AuditEntry.subject == f"alert:{out.alert_id}")
                                               .order_by(AuditEntry.id))]  # fmt: skip
    assert actions[0] == "alert.opened" and actions.count("alert.failsafe") == 3


def test_ack_at_step_2_stops_escalation_and_the_ack_timeout_pages_again(sessions):
    with sessions.begin() as s:
        enroll(s)
    out = apply(sessions, ev(**EMERGENCY), T0)
    for minute in range(1, 7):
        escalate(sessions, T0 + minute * MIN)
    with sessions.begin() as s:
        assert alerting.acknowledge(s, out.alert_id, actor="dr.lee", via="cli", now=T0 + 6 * MIN) is True
    with sessions.begin() as s:  # idempotent
        assert alerting.acknowledge(s, out.alert_id, actor="dr.lee", via="cli", now=T0 + 6 * MIN + MIN) is False
    before = len(pages(sessions))
    for minute in range(7, 36):
        escalate(sessions, T0 + minute * MIN)
    assert len(pages(sessions)) == before  # acknowledged: silence until the ack timeout (30 min)
    cancelled = [r for r in pages(sessions) if r.status == "cancelled"]
    assert {r.status_reason for r in cancelled} <= {"acknowledged by dr.lee"}
    assert escalate(sessions, T0 + 36 * MIN) == 4  # 06 + 30: step 1 again, unacknowledged
    a = alert(sessions, out.alert_id)
    assert (a.state, a.acked_by) == ("triggered", None)
    assert receivers([r for r in pages(sessions) if r.created_at == T0 + 36 * MIN]) == [
        ("alert.repeated", "charge-nurse"), ("alert.repeated", "oncall-fellow")]
    assert receivers(pages(sessions, escalating=False)) == [("alert.acknowledged", "ehr-inbox"), ("alert.triggered", "ehr-inbox")]


def test_upgrade_during_escalation_pages_again_with_fresh_content_from_the_step_reached(sessions):
    with sessions.begin() as s:
        enroll(s)
    out = apply(sessions, ev(**URGENT), T0)
    a = alert(sessions, out.alert_id)
    assert a.policy_name == "urgent"
    escalate(sessions, T0 + 16 * MIN)  # urgent policy: step 2 (oncall-fellow) at 15 min
    assert alert(sessions, out.alert_id).escalation_seq == 4
    # an improving or equal check-in is an annotation, never a page
    n = len(pages(sessions))
    assert apply(sessions, ev(recorded_at="2026-11-25T09:10:00Z"), T0 + 17 * MIN).action == "annotated"
    assert len(pages(sessions)) == n
    # worse: CRS 3 -> emergency policy, restarted at step 1 of the new policy with fresh content
    up = apply(sessions, ev(**{**EMERGENCY, "recorded_at": "2026-11-25T09:12:00Z"}), T0 + 18 * MIN)
    assert (up.action, up.alert_id) == ("upgraded", out.alert_id)
    a = alert(sessions, out.alert_id)
    assert (a.policy_name, a.upgrades, a.worst["crs_grade"], a.content["crs_grade"]) == ("emergency", 1, 3, 3)
    fresh = [r for r in pages(sessions) if r.created_at == T0 + 18 * MIN]
    assert receivers(fresh) == [("alert.upgraded", "charge-nurse"), ("alert.upgraded", "oncall-fellow")]
    assert {r.content["crs_grade"] for r in fresh} == {3}
    # same grade again: annotation
    assert apply(sessions, ev(**{**EMERGENCY, "recorded_at": "2026-11-25T09:20:00Z"}), T0 + 20 * MIN).action == "annotated"


def test_upgrade_with_the_same_policy_keeps_the_step_reached(sessions):
    with sessions.begin() as s:
        enroll(s)
    out = apply(sessions, ev(vitals={"temperature_c": 38.6}, symptoms=["chest_pain"], recorded_at="2026-11-25T08:55:00Z"), T0)
    escalate(sessions, T0 + 6 * MIN)  # emergency policy step 2 reached
    up = apply(sessions, ev(**{**EMERGENCY, "symptoms": ["chest_pain"], "recorded_at": "2026-11-25T09:05:00Z"}), T0 + 7 * MIN)
    assert up.action == "upgraded"
    fresh = [r for r in pages(sessions) if r.created_at == T0 + 7 * MIN]
    assert receivers(fresh) == [("alert.upgraded", "attending"), ("alert.upgraded", "charge-nurse")]


def test_resolve_ends_everything_and_a_new_trigger_opens_a_new_alert(sessions):
    with sessions.begin() as s:
        enroll(s)
    out = apply(sessions, ev(**EMERGENCY), T0)
    with sessions.begin() as s:
        with pytest.raises(alerting.AlertError, match="note is required"):
            alerting.resolve(s, out.alert_id, actor="dr.lee", note="  ", now=T0 + MIN)
    with sessions.begin() as s:
        code = s.get(Alert, out.alert_id).code
        alerting.resolve(s, code.lower(), actor="dr.lee", note="treated: tocilizumab given", now=T0 + MIN)
    assert escalate(sessions, T0 + 60 * MIN) == 0
    with sessions.begin() as s, pytest.raises(alerting.AlertError, match="already resolved"):
        alerting.acknowledge(s, out.alert_id, actor="x", via="cli", now=T0 + 61 * MIN)
    again = apply(sessions, ev(**{**EMERGENCY, "recorded_at": "2026-11-25T10:30:00Z"}), T0 + 90 * MIN)
    assert again.action == "opened" and again.alert_id != out.alert_id


def test_normal_checkins_open_nothing(sessions):
    with sessions.begin() as s:
        enroll(s)
    assert apply(sessions, ev(), T0).action == "not_paged"
    assert pages(sessions) == [] and pages(sessions, escalating=False) == []


def test_inhibition_silence_and_quiet_hours_are_recorded_never_dropped(sessions, tmp_path):
    global RULES
    original = RULES
    text = (Path(__file__).resolve().parents[2] / "config" / "rules.yaml").read_text().replace(
        "silences: []", "silences:\n  - {id: p2-admitted, match: ['patient_id == P-2'], starts: 2026-11-25T00:00:00Z, "
        "ends: 2026-11-26T00:00:00Z, max_urgency: urgent, reason: admitted to ward, author: dr.lee}")  # fmt: skip
    RULES = load_rules_text(text)
    try:
        with sessions.begin() as s:
            enroll(s, "P-1", interval_h=1)
            enroll(s, "P-2")
            enroll(s, "P-3")
        # P-1: an open emergency inhibits the urgent missed-check-in page for the same patient
        apply(sessions, ev(baseline(patient_id="P-1"), **EMERGENCY), T0, pid="P-1")
        with sessions.begin() as s:
            opened = alerting.check_missed(s, RULES, T0 + 10 * MIN)
        assert len(opened) == 1
        missed = pages(sessions, opened[0])
        assert {(r.status, r.status_reason) for r in missed} == {("suppressed", "inhibited: urgency == emergency")}
        # P-2: silenced up to urgent; an emergency still pages
        out = apply(sessions, ev(baseline(patient_id="P-2"), **URGENT), T0, pid="P-2")
        assert {(r.status, r.status_reason) for r in pages(sessions, out.alert_id)} == {("suppressed", "silenced by p2-admitted")}
        up = apply(sessions, ev(baseline(patient_id="P-2"), **{**EMERGENCY, "recorded_at": "2026-11-25T09:01:00Z"}),
                   T0 + 2 * MIN, pid="P-2")  # fmt: skip
        assert {r.status for r in pages(sessions, up.alert_id) if r.created_at == T0 + 2 * MIN} == {"pending"}
        # P-3: routine at 23:30 London is deferred to 07:00; urgent is not
        night = dt.datetime(2026, 11, 25, 23, 30, tzinfo=dt.UTC)
        out = apply(sessions, ev(baseline(patient_id="P-3"), symptoms=["fatigue"], recorded_at="2026-11-25T23:29:00Z"), night, pid="P-3")
        rows = pages(sessions, out.alert_id)
        assert {(r.status, r.next_attempt_at) for r in rows} == {("deferred", dt.datetime(2026, 11, 26, 7, 0, tzinfo=dt.UTC))}
    finally:
        RULES = original


def test_missed_checkin_opens_once_and_closes_when_the_patient_checks_in(sessions):
    with sessions.begin() as s:
        enroll(s, interval_h=12)  # enrolled at T0 - 5 days, never checked in
    with sessions.begin() as s:
        opened = alerting.check_missed(s, RULES, T0)
        assert alerting.check_missed(s, RULES, T0 + MIN) == []  # one open alert per patient/episode
    a = alert(sessions, opened[0])
    assert (a.condition, a.route, a.policy_name) == ("missed_checkin", "missed-checkin-in-window", "urgent")
    apply(sessions, ev(recorded_at="2026-11-25T09:30:00Z"), T0 + 30 * MIN)
    a = alert(sessions, opened[0])
    assert (a.state, a.resolved_by) == ("resolved", "system:checkin-received")


def test_missed_checkin_respects_interval_grace_and_window(sessions):
    with sessions.begin() as s:
        enroll(s, "P-in", interval_h=24)
        enroll(s, "P-out", interval_h=1, start=dt.date(2026, 9, 1))  # day 85: outside the CAR-T window
        s.flush()
        p = s.scalars(select(Patient).where(Patient.patient_id == "P-in")).one()
        p.enrolled_at = T0 - dt.timedelta(hours=24, minutes=30)
    with sessions.begin() as s:
        assert alerting.check_missed(s, RULES, T0) == []  # 24 h 30 min: inside interval + 30 min grace
    with sessions.begin() as s:
        assert len(alerting.check_missed(s, RULES, T0 + MIN)) == 1  # past it (P-out never: no window)


def test_concurrent_escalate_due_writes_each_page_once(sessions, backend):
    with sessions.begin() as s:
        for i in range(20):
            enroll(s, f"P-{i}")
    for i in range(20):
        apply(sessions, ev(baseline(patient_id=f"P-{i}"), **EMERGENCY), T0, pid=f"P-{i}")
    errors = []

    def run(now):
        try:
            for _ in range(3):
                escalate(sessions, now)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(T0 + 5 * MIN,)) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    with sessions() as s:
        counts = dict(s.execute(select(Notification.event, func.count()).where(Notification.escalating.is_(True))
                                .group_by(Notification.event)).all())  # fmt: skip
    # per alert: 4 triggered rows, then at minute 5 only the latest due page (step 2: 2 receivers x 2 contacts)
    assert counts == {"alert.triggered": 80, "alert.escalated": 80}


@pytest.mark.parametrize("backend", ["postgresql"])  # row locks: SQLite serialises whole writers instead
def test_escalate_due_skips_an_alert_another_transaction_holds(sessions, backend):
    """An alert locked by a pipeline batch is not waited for (so the two never deadlock); the next
    run pages it."""
    with sessions.begin() as s:
        enroll(s)
    out = apply(sessions, ev(**EMERGENCY), T0)
    holder = sessions()
    holder.begin()
    holder.execute(select(Alert).where(Alert.id == out.alert_id).with_for_update()).all()  # as on_batch does
    try:
        with sessions.begin() as s:
            s.execute(text("SET LOCAL lock_timeout = '2s'"))  # a wait would fail the test, not hang it
            assert alerting.escalate_due(s, RULES, T0 + 5 * MIN) == 0
    finally:
        holder.rollback()
        holder.close()
    assert escalate(sessions, T0 + 5 * MIN) > 0  # released: paged at the next run


def test_a_bug_in_the_alert_rules_still_pages_through_a_system_alert(sessions, monkeypatch):
    """If applying the rules to one evaluation raises (a bug), both the batched and the
    one-at-a-time paths give up on it; a system alert carrying the evaluation is opened through the
    routes instead, so an emergency still pages. The batch's other evaluations are unaffected."""
    from types import SimpleNamespace

    from worker import alert_jobs
    from worker.checkin import parse_checkin

    with sessions.begin() as s:
        enroll(s, "P-bug")
        enroll(s, "P-ok")
    original = alerting.apply_evaluation

    def buggy(store, evaluation, *args, **kwargs):
        if evaluation.patient_id == "P-bug":
            raise ZeroDivisionError("bug")
        return original(store, evaluation, *args, **kwargs)

    monkeypatch.setattr(alerting, "apply_evaluation", buggy)
    stored = []
    for pid in ("P-bug", "P-ok"):
        e = ev(patient_id=pid, checkin_id=f"c-{pid}", **EMERGENCY)
        stored.append((e, parse_checkin(baseline(patient_id=pid, checkin_id=f"c-{pid}", **EMERGENCY))))
    runtime = SimpleNamespace(rules=SimpleNamespace(get=lambda: RULES))
    with sessions.begin() as s:
        alert_jobs.on_batch(s, stored, T0, runtime)
    with sessions() as s:
        by_patient = {(a.patient_id, a.condition): a for a in s.scalars(select(Alert))}
        assert set(by_patient) == {("P-ok", "clinical"), ("P-bug", "system")}
        fallback = by_patient[("P-bug", "system")]
        assert fallback.urgency == "emergency" and fallback.policy_name == "emergency"
        assert fallback.content["reasons"][0].startswith("Alerting failed on this check-in (ZeroDivisionError)")
        assert {n.status for n in s.scalars(select(Notification).where(Notification.alert_id == fallback.id))} == {"pending"}
        failed = s.scalars(select(AuditEntry).where(AuditEntry.action == "alerting.failed")).one()
        assert failed.subject == "c-P-bug"
