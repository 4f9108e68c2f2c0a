"""Scenario tests of the alert lifecycle against the real code with a controlled clock: timing
boundaries, catch-up, upgrades and improving check-ins, silences and quiet hours, missed check-ins.

Rules:
- Every scenario drives worker.alerting with explicit ``now`` values (no sleeping, no wall clock).
- Each runs on SQLite and PostgreSQL (the ``engine`` fixture).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.factories import baseline, ev
from worker import alerting
from worker.rules.loader import load_rules_text
from worker.store.alert_tables import Alert, Notification
from worker.store.db import session_factory
from worker.store.models import Patient

RULES_TEXT = (Path(__file__).resolve().parents[2] / "config" / "rules.yaml").read_text()
RULES = load_rules_text(RULES_TEXT)
T0 = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)  # 09:00 London (GMT): outside quiet hours
MIN = dt.timedelta(minutes=1)
SEC = dt.timedelta(seconds=1)
EMERGENCY = dict(vitals={"temperature_c": 38.6}, oxygen={"device": "facemask"})
SILENCE_P_TEST = RULES_TEXT.replace(
    "silences: []", "silences:\n  - {id: p-admitted, match: ['patient_id == P-test'], starts: 2026-11-25T00:00:00Z, "
    "ends: 2026-11-26T00:00:00Z, max_urgency: urgent, reason: admitted to ward, author: dr.lee}")  # fmt: skip


@pytest.fixture
def sessions(engine):
    return session_factory(engine)


def enroll(sessions, pid="P-test", interval_h=None, enrolled_at=T0 - dt.timedelta(days=5)):
    with sessions.begin() as s:
        s.add(Patient(patient_id=pid, age_years=50, therapy="Yescarta", therapy_start=dt.date(2026, 11, 20), unit="5B",
                      checkin_interval_h=interval_h, labels={}, enrolled_at=enrolled_at, updated_at=enrolled_at))  # fmt: skip


def apply(sessions, evaluation, now, rules=RULES, pid="P-test"):
    with sessions.begin() as s:
        patient = s.scalars(select(Patient).where(Patient.patient_id == pid)).first()
        return alerting.on_evaluation(s, evaluation, patient, rules, now, episode=alerting.episode_of(patient))


def at(now: dt.datetime) -> str:
    return now.isoformat().replace("+00:00", "Z")


def escalate(sessions, now, rules=RULES):
    with sessions.begin() as s:
        return alerting.escalate_due(s, rules, now)


def pages(sessions, alert_id, created_at=None):
    with sessions() as s:
        q = select(Notification).where(Notification.alert_id == alert_id, Notification.escalating.is_(True))
        rows = list(s.scalars(q.order_by(Notification.id)))
    return [r for r in rows if created_at is None or r.created_at == created_at]


def get(sessions, alert_id):
    with sessions() as s:
        return s.get(Alert, alert_id)


# ---- timing boundaries -------------------------------------------------------------------------


def test_each_page_goes_exactly_at_its_time_not_a_second_before(sessions):
    enroll(sessions)
    out = apply(sessions, ev(**EMERGENCY, recorded_at=at(T0)), T0)
    # emergency policy: step 1 at 0, repeats at 2m and 4m, step 2 at 5m (ack_within), repeat 7m, failsafe 10m, +5m
    for due in (2, 4, 5, 7, 10, 15):
        assert escalate(sessions, T0 + due * MIN - SEC) == 0
        assert escalate(sessions, T0 + due * MIN) > 0
        assert escalate(sessions, T0 + due * MIN + SEC) == 0  # the same page never twice
    steps = sorted({(r.step, r.repeat, r.event) for r in pages(sessions, out.alert_id)})
    assert steps == [(0, 0, "alert.triggered"), (0, 1, "alert.repeated"), (0, 2, "alert.repeated"),
                     (1, 0, "alert.escalated"), (1, 1, "alert.repeated"), (2, 0, "failsafe"), (2, 1, "failsafe")]  # fmt: skip


def test_a_scheduler_down_for_an_hour_sends_only_the_latest_due_page_then_keeps_the_timeline(sessions):
    enroll(sessions)
    out = apply(sessions, ev(**EMERGENCY, recorded_at=at(T0)), T0)
    written = escalate(sessions, T0 + 60 * MIN + 30 * SEC)
    late = pages(sessions, out.alert_id, T0 + 60 * MIN + 30 * SEC)
    assert written == len(late) and {(r.receiver, r.event, r.repeat) for r in late} == {("unit-desk", "failsafe", 10)}
    assert get(sessions, out.alert_id).next_escalation_at == T0 + 65 * MIN
    assert escalate(sessions, T0 + 64 * MIN) == 0
    assert escalate(sessions, T0 + 65 * MIN) == written


def test_an_acknowledgement_between_claim_and_delivery_cancels_the_page_and_the_ack_timeout_repages(sessions):
    enroll(sessions)
    out = apply(sessions, ev(**EMERGENCY, recorded_at=at(T0)), T0)
    assert escalate(sessions, T0 + 2 * MIN) == 4
    with sessions.begin() as s:
        assert alerting.acknowledge(s, out.alert_id, actor="dr.lee", via="cli", now=T0 + 2 * MIN)
    assert {r.status for r in pages(sessions, out.alert_id)} == {"cancelled"}
    assert escalate(sessions, T0 + 32 * MIN - SEC) == 0
    assert escalate(sessions, T0 + 32 * MIN) == 4  # ack_timeout 30m: step 1 again
    assert get(sessions, out.alert_id).state == "triggered"


# ---- improving check-ins never weaken an open emergency ----------------------------------------


def test_a_better_checkin_neither_closes_an_emergency_alert_nor_lets_a_silence_mute_its_escalation(sessions):
    rules = load_rules_text(SILENCE_P_TEST)
    enroll(sessions)
    out = apply(sessions, ev(**EMERGENCY, recorded_at=at(T0)), T0, rules)
    assert {r.status for r in pages(sessions, out.alert_id)} == {"pending"}  # an emergency is never silenced
    better = apply(sessions, ev(recorded_at=at(T0 + MIN)), T0 + MIN, rules)  # a normal check-in: urgency none
    assert (better.action, get(sessions, out.alert_id).state) == ("annotated", "triggered")
    assert escalate(sessions, T0 + 2 * MIN, rules) == 4
    assert {(r.status, r.urgency) for r in pages(sessions, out.alert_id, T0 + 2 * MIN)} == {("pending", "emergency")}


def test_a_better_checkin_does_not_let_quiet_hours_defer_an_emergency_escalation(sessions):
    night = dt.datetime(2026, 11, 25, 21, 58, tzinfo=dt.UTC)  # 21:58 London; quiet hours from 22:00
    enroll(sessions)
    out = apply(sessions, ev(**EMERGENCY, recorded_at=at(night)), night)
    routine = apply(sessions, ev(symptoms=["fatigue"], recorded_at=at(night + MIN)), night + MIN)
    assert routine.action == "annotated"
    assert escalate(sessions, night + 2 * MIN) == 4  # the first repeat, at 22:00
    rows = pages(sessions, out.alert_id, night + 2 * MIN)
    assert {(r.status, r.next_attempt_at) for r in rows} == {("pending", night + 2 * MIN)}


# ---- missed check-ins -----------------------------------------------------------------------------


def test_a_missed_checkin_alert_a_clinician_resolved_is_not_reopened_for_the_same_silence(sessions):
    enroll(sessions, interval_h=12)  # enrolled 5 days ago, never checked in
    with sessions.begin() as s:
        [first] = alerting.check_missed(s, RULES, T0)
    with sessions.begin() as s:
        alerting.resolve(s, first, actor="nurse.kay", note="phoned: patient well, app broken", now=T0 + 10 * MIN)
    with sessions.begin() as s:
        assert alerting.check_missed(s, RULES, T0 + 11 * MIN) == []  # no second alert a minute later
    again = T0 + 10 * MIN + dt.timedelta(hours=12, minutes=30)  # resolution + interval + grace
    with sessions.begin() as s:
        assert alerting.check_missed(s, RULES, again) == []
    with sessions.begin() as s:
        assert len(alerting.check_missed(s, RULES, again + SEC)) == 1  # still silent a whole interval later


def test_missed_checkins_for_many_patients_open_one_alert_each_once(sessions):
    for i in range(30):
        enroll(sessions, f"P-{i:02d}", interval_h=6)
    enroll(sessions, "P-none")  # enrolled with no interval: never a missed-check-in alert
    with sessions.begin() as s:
        opened = alerting.check_missed(s, RULES, T0)
    with sessions.begin() as s:
        assert alerting.check_missed(s, RULES, T0 + MIN) == []
    assert len(opened) == len(set(opened)) == 30
    with sessions() as s:
        assert "P-none" not in set(s.scalars(select(Alert.patient_id)))


# ---- quiet hours ----------------------------------------------------------------------------------


def released(sessions, alert_id, until):
    """(receiver, step, repeat) of the pages that may go out by ``until`` (pending or deferred)."""
    return sorted({(r.receiver, r.step, r.repeat) for r in pages(sessions, alert_id)
                   if r.status in ("pending", "deferred") and r.next_attempt_at <= until})  # fmt: skip


def test_a_routine_alert_opened_in_quiet_hours_starts_its_escalation_when_they_end(sessions):
    night = dt.datetime(2026, 11, 25, 22, 30, tzinfo=dt.UTC)  # 22:30 London: routine waits until 07:00
    morning = dt.datetime(2026, 11, 26, 7, 0, tzinfo=dt.UTC)
    enroll(sessions)
    out = apply(sessions, ev(symptoms=["fatigue"], recorded_at=at(night)), night)
    for minute in range(0, 9 * 60, 5):
        escalate(sessions, night + minute * MIN)
    # routine-review: cart-coordinator, 4h to acknowledge, then the failsafe hourly. Released at
    # 07:00: the step-1 page alone, not it and the failsafe pages the night would have sent
    assert released(sessions, out.alert_id, morning) == [("cart-coordinator", 0, 0)]
    assert get(sessions, out.alert_id).next_escalation_at == morning + dt.timedelta(hours=4)
    assert escalate(sessions, morning + dt.timedelta(hours=4)) > 0
    assert released(sessions, out.alert_id, morning + dt.timedelta(hours=4))[-1] == ("charge-nurse", 1, 0)


def test_a_routine_escalation_running_into_quiet_hours_sends_one_page_when_they_end(sessions):
    evening = dt.datetime(2026, 11, 25, 19, 0, tzinfo=dt.UTC)  # failsafe due 23:00, then hourly
    morning = dt.datetime(2026, 11, 26, 7, 0, tzinfo=dt.UTC)
    enroll(sessions)
    out = apply(sessions, ev(symptoms=["fatigue"], recorded_at=at(evening)), evening)
    for minute in range(0, 12 * 60 + 1, 5):
        escalate(sessions, evening + minute * MIN)
    night_pages = [r for r in pages(sessions, out.alert_id) if r.created_at > evening]
    assert len({(r.step, r.repeat) for r in night_pages}) == 1  # one failsafe page at 07:00, not nine
    assert {(r.receiver, r.status, r.next_attempt_at) for r in night_pages} == {("charge-nurse", "pending", morning)}


def test_urgent_traffic_never_waits_for_quiet_hours(sessions):
    night = dt.datetime(2026, 11, 25, 23, 0, tzinfo=dt.UTC)
    enroll(sessions)
    out = apply(sessions, ev(vitals={"temperature_c": 38.2}, recorded_at=at(night)), night)
    assert escalate(sessions, night + 5 * MIN) > 0
    assert {(r.status, r.next_attempt_at) for r in pages(sessions, out.alert_id, night + 5 * MIN)} == {("pending", night + 5 * MIN)}


@pytest.mark.parametrize(("now", "until"), [
    (dt.datetime(2026, 3, 28, 23, 30, tzinfo=dt.UTC), dt.datetime(2026, 3, 29, 6, 0, tzinfo=dt.UTC)),  # spring forward: 07:00 BST
    (dt.datetime(2026, 10, 24, 22, 30, tzinfo=dt.UTC), dt.datetime(2026, 10, 25, 7, 0, tzinfo=dt.UTC)),  # fall back: 07:00 GMT
    (dt.datetime(2026, 11, 26, 1, 30, tzinfo=dt.UTC), dt.datetime(2026, 11, 26, 7, 0, tzinfo=dt.UTC)),  # after midnight
    (dt.datetime(2026, 7, 1, 21, 30, tzinfo=dt.UTC), dt.datetime(2026, 7, 2, 6, 0, tzinfo=dt.UTC)),  # 22:30 BST
    (dt.datetime(2026, 7, 1, 20, 59, 59, tzinfo=dt.UTC), None),  # 21:59:59 BST: not yet
    (dt.datetime(2026, 7, 2, 6, 0, tzinfo=dt.UTC), None),  # 07:00 BST: over
])  # fmt: skip
def test_quiet_hours_are_read_in_the_rules_time_zone_across_dst(now, until):
    from worker.rules import policy

    subj = {"urgency": "routine", "patient_id": "P-test"}
    assert policy.quiet_until(subj, now, RULES.rules.timezone, RULES.rules.quiet_hours) == until


# ---- silences, upgrades, acknowledgements ----------------------------------------------------------


def test_a_silence_holds_until_its_end_exactly_and_pages_from_then(sessions):
    rules = load_rules_text(SILENCE_P_TEST)  # ends 2026-11-26T00:00:00Z
    ends = dt.datetime(2026, 11, 26, tzinfo=dt.UTC)
    enroll(sessions)
    out = apply(sessions, ev(vitals={"temperature_c": 38.2}, recorded_at=at(ends - 5 * MIN - SEC)), ends - 5 * MIN - SEC, rules)
    assert {r.status for r in pages(sessions, out.alert_id)} == {"suppressed"}
    assert escalate(sessions, ends - SEC, rules) > 0  # the first repeat, a second before the end: still held
    assert {r.status for r in pages(sessions, out.alert_id, ends - SEC)} == {"suppressed"}
    assert escalate(sessions, ends + 5 * MIN - SEC, rules) > 0  # the next repeat, after the end
    assert {r.status for r in pages(sessions, out.alert_id, ends + 5 * MIN - SEC)} == {"pending"}


def test_an_emergency_on_an_acknowledged_alert_pages_again_and_supersedes_its_pages(sessions):
    enroll(sessions)
    out = apply(sessions, ev(vitals={"temperature_c": 38.2}, recorded_at=at(T0)), T0)  # urgent: charge-nurse
    escalate(sessions, T0 + 5 * MIN)
    with sessions.begin() as s:
        alerting.acknowledge(s, out.alert_id, actor="nurse.kay", via="cli", now=T0 + 6 * MIN)
    up = apply(sessions, ev(**EMERGENCY, recorded_at=at(T0 + 7 * MIN)), T0 + 7 * MIN)
    assert (up.action, up.alert_id) == ("upgraded", out.alert_id)
    a = get(sessions, out.alert_id)
    assert (a.state, a.policy_name, a.acked_by) == ("triggered", "emergency", None)
    fresh = pages(sessions, out.alert_id, T0 + 7 * MIN)
    assert {(r.receiver, r.status, r.event) for r in fresh} == {
        ("oncall-fellow", "pending", "alert.upgraded"), ("charge-nurse", "pending", "alert.upgraded")}
    assert {r.status for r in pages(sessions, out.alert_id) if r.created_at < T0 + 7 * MIN} == {"cancelled"}
    assert escalate(sessions, T0 + 9 * MIN) > 0  # the emergency policy's first repeat


def test_a_better_checkin_on_an_acknowledged_alert_changes_nothing_but_the_record(sessions):
    enroll(sessions)
    out = apply(sessions, ev(**EMERGENCY, recorded_at=at(T0)), T0)
    with sessions.begin() as s:
        alerting.acknowledge(s, out.alert_id, actor="dr.lee", via="cli", now=T0 + MIN)
    before = len(pages(sessions, out.alert_id))
    assert apply(sessions, ev(recorded_at=at(T0 + 2 * MIN)), T0 + 2 * MIN).action == "annotated"
    a = get(sessions, out.alert_id)
    assert (a.state, a.next_escalation_at, len(pages(sessions, out.alert_id))) == ("acknowledged", T0 + 31 * MIN, before)


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)  # row locks: SQLite serialises writers instead
def test_an_acknowledgement_waiting_on_an_escalation_run_cancels_the_page_it_wrote(sessions, backend):
    import threading

    enroll(sessions)
    out = apply(sessions, ev(**EMERGENCY, recorded_at=at(T0)), T0)
    s1 = sessions()
    s1.begin()
    assert alerting.escalate_due(s1, RULES, T0 + 2 * MIN) == 4  # claimed and written, not committed

    def ack():
        with sessions.begin() as s:
            alerting.acknowledge(s, out.alert_id, actor="dr.lee", via="link", now=T0 + 2 * MIN)

    t = threading.Thread(target=ack)
    t.start()
    t.join(0.5)
    assert t.is_alive()  # waits for the escalation's lock
    s1.commit()
    s1.close()
    t.join(10)
    assert get(sessions, out.alert_id).state == "acknowledged"
    assert {r.status for r in pages(sessions, out.alert_id)} == {"cancelled"}


def test_a_checkin_from_a_clock_set_in_the_future_does_not_stop_missed_checkin_alerts(sessions):
    from worker.store.models import CheckinRow, EvaluationRow

    enroll(sessions, interval_h=12)
    received = T0 - dt.timedelta(hours=20)
    future = dt.datetime(2027, 6, 1, tzinfo=dt.UTC)  # the phone's clock; the pipeline caps it at receipt
    with sessions.begin() as s:
        row = CheckinRow(checkin_id="chk-future", patient_id="P-test", recorded_at=future, received_at=received,
                         stream_id="1-0", payload={})  # fmt: skip
        s.add(row)
        s.flush()
        s.add(EvaluationRow(checkin_row_id=row.id, checkin_id=row.checkin_id, patient_id="P-test", recorded_at=future,
                            effective_at=received, evaluated_at=received, crs_grade=0, crs_grade_is_minimum=False,
                            icans_grade=0, icans_floor=0, red_flags=[], news2=None, urgency="none", out_of_order=False,
                            result={}))  # fmt: skip
    with sessions.begin() as s:  # 20 h since it arrived: past 12 h + 30 min
        assert len(alerting.check_missed(s, RULES, T0)) == 1


def test_a_routine_alert_held_by_quiet_hours_that_turns_urgent_pages_at_once(sessions):
    night = dt.datetime(2026, 11, 25, 23, 0, tzinfo=dt.UTC)
    enroll(sessions)
    out = apply(sessions, ev(symptoms=["fatigue"], recorded_at=at(night)), night)
    assert {r.status for r in pages(sessions, out.alert_id)} == {"deferred"}
    up = apply(sessions, ev(vitals={"temperature_c": 38.2}, recorded_at=at(night + 10 * MIN)), night + 10 * MIN)
    assert up.action == "upgraded"
    fresh = pages(sessions, out.alert_id, night + 10 * MIN)
    assert {(r.receiver, r.status, r.next_attempt_at) for r in fresh} == {("charge-nurse", "pending", night + 10 * MIN)}
    assert {r.status for r in pages(sessions, out.alert_id, night)} == {"cancelled"}
    assert get(sessions, out.alert_id).next_escalation_at == night + 15 * MIN  # urgent: repeat in 5m, at night too


def test_an_inhibition_rule_aimed_at_emergencies_never_mutes_one(sessions):
    rules = load_rules_text(RULES_TEXT.replace('target: ["urgency in [urgent, routine]"]', 'target: ["crs_grade >= 0"]')
                            .replace('source: ["urgency == emergency"]', 'source: ["condition == missed_checkin"]'))  # fmt: skip
    enroll(sessions, interval_h=1)
    out = apply(sessions, ev(**EMERGENCY, recorded_at=at(T0)), T0, rules)
    with sessions.begin() as s:  # no evaluation row here: the patient still counts as silent since enrollment
        [missed] = alerting.check_missed(s, rules, T0 + MIN)
    assert escalate(sessions, T0 + 2 * MIN, rules) == 4  # the emergency's repeat, with the source alert open
    assert {r.status for r in pages(sessions, out.alert_id, T0 + 2 * MIN)} == {"pending"}
    assert get(sessions, missed).state == "triggered"
