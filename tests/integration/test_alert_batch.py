"""The batched alert hook (worker.alert_batch) against the per-evaluation path it replaces, on both
databases: the same batches applied both ways into two databases leave the same rows (alerts,
notifications, audit log: every column, ids included); a failure of the batched path falls back to
the per-evaluation path with the same result; a database error propagates; the statements a batch
costs do not grow with its size."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import DBAPIError, OperationalError

from tests.factories import baseline, merge
from worker import alert_batch, alert_jobs, alerting
from worker.checkin import parse_checkin
from worker.domain import PatientContext
from worker.evaluation import evaluate
from worker.rules.loader import load_rules_text
from worker.store.alert_tables import OPEN_STATES, Alert, Notification
from worker.store.db import session_factory
from worker.store.models import AuditEntry, Patient

T0 = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)  # 09:00 London
MIN = dt.timedelta(minutes=1)
RULES = load_rules_text((Path(__file__).resolve().parents[2] / "config" / "rules.yaml").read_text().replace(
    "silences: []",
    "silences:\n"
    "  - {id: ward-7c, match: ['unit == 7C'], starts: 2026-11-25T09:30:00Z, ends: 2026-11-26T00:00:00Z,"
    " max_urgency: urgent, reason: on the ward, author: dr.lee}\n"
    "  - {id: p03-routine, match: ['patient_id == P-03'], starts: 2026-11-20T00:00:00Z, ends: 2026-11-27T00:00:00Z,"
    " max_urgency: routine, reason: seen daily, author: dr.lee}").replace(
    '- {start: "22:00", end: "07:00"}', '- {start: "22:00", end: "07:00"}\n  - {start: "11:00", end: "12:00", match: ["labels.team == 5b"]}'))  # fmt: skip
PROFILES = [  # check-in changes: none, routine, urgent (CRS 1-2, ICANS 1-2, urgent flag), emergency (CRS 3, ICANS 3, flags)
    {}, {}, dict(symptoms=["fatigue"]), dict(symptoms=["fatigue"]), dict(vitals={"temperature_c": 38.2}), dict(neuro={"ice_score": 8}),
    dict(neuro={"ice_score": 5}), dict(vitals={"temperature_c": 38.6}, oxygen={"device": "nasal_cannula"}),
    dict(symptoms=["dizziness"]), dict(vitals={"temperature_c": 38.6}, oxygen={"device": "facemask"}),
    dict(vitals={"temperature_c": 38.6}, symptoms=["chest_pain"]), dict(symptoms=["bleeding"]),
    dict(neuro={"ice_score": 2, "consciousness": "awakens_to_tactile"}),
]  # fmt: skip
ENROLLED = {  # patient -> (unit, check-in interval h); P-10 and P-11 are not enrolled
    "P-00": ("5B", 6), "P-01": ("5B", None), "P-02": ("7C", None), "P-03": ("5B", None), "P-04": ("7C", 6),
    "P-05": ("5B", None), "P-06": ("5B", 6), "P-07": ("7C", None), "P-08": ("5B", None), "P-09": ("5B", None),
}  # fmt: skip
PATIENTS = [*ENROLLED, "P-10", "P-11", "P-10", "P-11"]  # the unenrolled ones (two episodes each) check in more
TIMES = [T0, T0 + 20 * MIN, T0 + 45 * MIN, T0 + 150 * MIN, T0.replace(hour=23, minute=10), T0.replace(hour=23, minute=40),
         T0 + dt.timedelta(hours=22), T0 + dt.timedelta(hours=25)]  # fmt: skip


# -- databases -----------------------------------------------------------------------------------


def dump(engine) -> dict[str, list[tuple]]:
    with engine.connect() as c:
        return {t.name: [tuple(r) for r in c.execute(select(t).order_by(t.c.id))]
                for t in (Alert.__table__, Notification.__table__, AuditEntry.__table__)}  # fmt: skip


def assert_same(seq: dict[str, list[tuple]], batch: dict[str, list[tuple]]) -> None:
    for table, rows in seq.items():
        for i, (a, b) in enumerate(zip(rows, batch[table])):
            assert a == b, f"{table} row {i}:\n  sequential {a}\n  batched    {b}"
        assert len(rows) == len(batch[table]), table


@pytest.fixture
def codes(monkeypatch):
    """Alert codes from a counter (restart it before each run) so both runs draw the same codes."""
    counter = {"n": itertools.count()}
    monkeypatch.setattr(alerting, "random_code", lambda: f"C{next(counter['n']):04d}")
    return lambda: counter.update(n=itertools.count())


# -- the scenario --------------------------------------------------------------------------------


def enroll(s, pid: str, start: dt.date = dt.date(2026, 11, 20)) -> None:
    unit, interval = ENROLLED[pid]
    s.add(Patient(patient_id=pid, age_years=50, therapy="Yescarta", therapy_start=start, unit=unit,
                  checkin_interval_h=interval, labels={"team": unit.lower()}, enrolled_at=T0 - dt.timedelta(days=5),
                  updated_at=T0 - dt.timedelta(days=5)))  # fmt: skip


def make_batch(rng: random.Random, k: int, now: dt.datetime, size: int) -> list[tuple]:
    """``size`` check-ins recorded up to 4 h before ``now`` (so some are older than what an alert
    shows already), in per-patient time order as the pipeline passes them."""
    docs = []
    for i in range(size):
        pid = rng.choice(PATIENTS)
        at = now - rng.randrange(0, 240) * MIN
        start = rng.choice(["2026-11-16", "2026-11-22"]) if pid in ("P-10", "P-11") else "2026-11-16"
        docs.append(merge(baseline(patient_id=pid, checkin_id=f"c{k}-{i}", therapy_start=start,
                                   recorded_at=at.isoformat().replace("+00:00", "Z")), rng.choice(PROFILES)))  # fmt: skip
    if now.hour == 23:  # a patient with nothing open reports something routine at night: deferred
        docs.append(baseline(patient_id=f"P-N{k}", checkin_id=f"c{k}-night", symptoms=["fatigue"],
                             recorded_at=(now - 5 * MIN).isoformat().replace("+00:00", "Z")))  # fmt: skip
    docs.sort(key=lambda d: (d["recorded_at"], d["checkin_id"]))
    out = []
    for doc in docs:
        checkin = parse_checkin(doc)
        context = PatientContext(50, "Yescarta", dt.date(2026, 11, 20)) if doc["patient_id"] in ENROLLED else None
        out.append((evaluate(checkin, context), checkin))
    return out


def scenario(seed: int, batches: int = len(TIMES), size: int = 24) -> list[tuple[dt.datetime, list[tuple]]]:
    rng = random.Random(seed)
    return [(TIMES[k], make_batch(rng, k, TIMES[k], size)) for k in range(batches)]


def between(s, rng: random.Random, now: dt.datetime, k: int) -> None:
    """What happens between batches, the same in both runs: escalation, acknowledgements,
    resolutions, missed check-ins, a re-enrollment (a new episode)."""
    alerting.escalate_due(s, RULES, now)
    for alert in s.scalars(select(Alert).where(Alert.state.in_(OPEN_STATES)).order_by(Alert.id)).all():
        roll = rng.random()
        if roll < 0.3 and alert.state == "triggered":
            alerting.acknowledge(s, alert.id, actor="dr.lee", via="cli", now=now)
        elif roll < 0.38:
            alerting.resolve(s, alert.id, actor="dr.lee", note="seen", now=now)
    if k in (1, 3, 6):
        alerting.check_missed(s, RULES, now)
    if k == 4:
        s.scalars(select(Patient).where(Patient.patient_id == "P-01")).one().therapy_start = dt.date(2026, 11, 23)


def prefetch(s, stored) -> dict[str, Patient]:  # what on_batch reads before either path
    pids = {e.patient_id for e, _ in stored}
    return {p.patient_id: p for p in s.scalars(select(Patient).where(Patient.patient_id.in_(pids)))}


def play(engine, batches, path, before=None) -> list:
    """Apply every batch with ``path`` (alert_jobs.each or alert_jobs.apply_batch), each after
    ``before(session, time, batch index)`` (default: ``between``); the outcomes."""
    sessions = session_factory(engine)
    rng = random.Random(7)
    before = before or (lambda s, now, k: between(s, rng, now, k))
    with sessions.begin() as s:
        for pid in ENROLLED:
            enroll(s, pid)
    outcomes = []
    for k, (now, stored) in enumerate(batches):
        with sessions.begin() as s:
            before(s, now - MIN, k)
        with sessions.begin() as s:
            outcomes.append(path(s, stored, prefetch(s, stored), RULES, now))
    return outcomes


def must_not_fall_back(*_args, **_kwargs):
    raise AssertionError("the batched path failed and fell back to the per-evaluation path")


# -- tests ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2])
def test_batched_path_writes_what_the_sequential_path_writes(twins, codes, monkeypatch, seed):
    batches = scenario(seed)
    codes()
    seq_out = play(twins[0], batches, alert_jobs.each)
    codes()
    monkeypatch.setattr(alert_jobs, "each", must_not_fall_back)
    batch_out = play(twins[1], batches, alert_jobs.apply_batch)
    seq, batch = dump(twins[0]), dump(twins[1])
    assert_same(seq, batch)
    assert seq_out == batch_out
    covered(seq, seq_out)


def checkins(*docs: dict) -> list[tuple]:
    out = []
    for doc in docs:
        checkin = parse_checkin(doc)
        out.append((evaluate(checkin, PatientContext(50, "Yescarta", dt.date(2026, 11, 20))
                             if doc["patient_id"] in ENROLLED else None), checkin))  # fmt: skip
    return out


def report(pid: str, cid: str, at: str, change: int, **more) -> dict:
    """A check-in of ``pid`` recorded at ``at`` (HH:MM on the 25th) with PROFILES[change]."""
    return merge(baseline(patient_id=pid, checkin_id=cid, recorded_at=f"2026-11-25T{at}:00Z", **more), PROFILES[change])


NORMAL, ROUTINE, FEVER, DIZZY, CRS3, BLEEDING, ICANS3 = 0, 2, 4, 8, 9, 11, 12


def explicit_before(s, now: dt.datetime, k: int) -> None:
    if k == 1:
        alerting.escalate_due(s, RULES, now)
        alerting.acknowledge(s, s.scalars(select(Alert.id).where(Alert.patient_id == "P-02")).one(),
                             actor="dr.lee", via="cli", now=now)  # fmt: skip
        alerting.check_missed(s, RULES, now)  # P-00, P-04, P-06: no check-in stored, ever


EXPLICIT = [
    (T0, checkins(
        report("P-00", "a1", "08:30", ROUTINE), report("P-00", "a2", "08:40", FEVER),  # open, upgrade (new policy)
        report("P-00", "a3", "08:50", DIZZY), report("P-00", "a4", "08:55", BLEEDING),  # annotate, upgrade
        report("P-02", "b1", "08:50", FEVER), report("P-05", "c1", "08:50", NORMAL),  # open; skipped
        report("U-1", "d1", "08:51", CRS3), report("U-1", "d2", "08:52", FEVER, therapy_start="2026-11-22"),  # inhibited
    )),
    (T0 + 45 * MIN, checkins(
        report("P-02", "b2", "09:40", CRS3),  # upgrade while acknowledged
        report("P-04", "e1", "09:40", NORMAL),  # closes the missed check-in alert, pages nothing
        report("P-06", "f1", "09:41", FEVER),  # closes the missed check-in alert, opens
        report("P-00", "a5", "08:00", ICANS3),  # a late, worse report; closes the missed check-in alert
        report("P-07", "g1", "09:42", FEVER),  # ward 7C: silenced
        report("U-1", "d3", "09:43", ICANS3, therapy_start="2026-11-22"),  # upgrade in the second episode
    )),
    (T0.replace(hour=23, minute=10), checkins(
        report("P-08", "h1", "23:00", ROUTINE), report("P-08", "h2", "23:05", FEVER),  # deferred, then cancelled
        report("P-09", "i1", "23:01", ROUTINE),  # deferred
    )),
]  # fmt: skip


def test_batched_path_on_every_case_in_turn(twins, codes, monkeypatch):
    codes()
    seq_out = play(twins[0], EXPLICIT, alert_jobs.each, explicit_before)
    codes()
    monkeypatch.setattr(alert_jobs, "each", must_not_fall_back)
    batch_out = play(twins[1], EXPLICIT, alert_jobs.apply_batch, explicit_before)
    seq, batch = dump(twins[0]), dump(twins[1])
    assert_same(seq, batch)
    assert seq_out == batch_out
    actions = [[o and o.action for o in out] for out in seq_out]
    assert actions == [["opened", "upgraded", "annotated", "upgraded", "opened", None, "opened", "opened"],
                       ["upgraded", "not_paged", "opened", "upgraded", "opened", "upgraded"],
                       ["opened", "upgraded", "opened"]]  # fmt: skip
    statuses = {(r[3], r[11], r[12]) for r in seq["notifications"]}  # event, status, reason
    for row in [("alert.triggered", "suppressed", "inhibited: urgency == emergency"),
                ("alert.triggered", "suppressed", "silenced by ward-7c"),
                ("alert.triggered", "cancelled", "superseded by an upgrade"),
                ("alert.triggered", "deferred", "quiet hours"),
                ("alert.resolved", "pending", None)]:  # fmt: skip
        assert row in statuses, row
    missed = [r for r in seq["alerts"] if r[4] == "missed_checkin"]
    assert len(missed) == 3 and {(r[5], r[27]) for r in missed} == {("resolved", "system:checkin-received")}


def covered(tables, outcomes) -> None:
    """The scenario went through the cases the batched path must reproduce."""
    actions = {o.action for batch in outcomes for o in batch if o is not None}
    assert {"opened", "annotated", "upgraded"} <= actions
    reasons = {r[12] for r in tables["notifications"]}  # status_reason
    for needed in ("inhibited: urgency == emergency", "silenced by ward-7c", "superseded by an upgrade",
                   "resolved by system:checkin-received"):  # fmt: skip
        assert needed in reasons, needed
    assert any(r[15] > r[14] for r in tables["notifications"])  # deferred by quiet hours (next_attempt_at > created_at)
    audit = [(r[4], r[3], r[5]) for r in tables["audit_log"]]  # subject, action, detail
    assert any(a == "alert.annotated" and d["newer"] is False for _, a, d in audit)  # a late report
    history: dict[str, list[tuple[str, dict]]] = {}
    for subject, action, detail in audit:
        history.setdefault(subject, []).append((action, detail))
    assert any(["alert.acknowledged", "alert.upgraded"] == [a for a, _ in h][i:i + 2] for h in history.values()
               for i in range(len(h)))  # an upgrade while acknowledged  # fmt: skip
    assert any(h[0][0] == "alert.opened" and any(a == "alert.upgraded" and d["policy"] != h[0][1]["policy"] for a, d in h)
               for h in history.values())  # an upgrade that changed the policy  # fmt: skip
    episodes = {(r[2], r[3]) for r in tables["alerts"] if r[4] == "clinical"}  # (patient, episode)
    assert len({e for p, e in episodes if p == "P-10"}) == 2 and ("P-01", "2026-11-23") in episodes
    assert any(r[4] == "missed_checkin" and r[5] == "resolved" for r in tables["alerts"])


def canonical(tables: dict[str, list[tuple]]) -> dict[str, list[tuple]]:
    """The rows with every id and alert code renumbered in order (a rolled-back PostgreSQL insert
    leaves gaps; codes drawn by the failed attempt are not drawn again)."""
    alert_ids = {r[0]: i for i, r in enumerate(tables["alerts"], 1)}
    alerts = [(alert_ids[r[0]], f"K{alert_ids[r[0]]}", *r[2:]) for r in tables["alerts"]]
    notes = []
    for i, r in enumerate(tables["notifications"], 1):
        new = alert_ids[r[2]]
        key = f"{new}:{r[1].split(':', 1)[1]}"
        notes.append((i, key, new, *r[3:13], dict(r[13], alert_id=new, alert_code=f"K{new}"), *r[14:]))
    audit = [(i, *r[1:4], f"alert:{alert_ids[int(r[4].split(':')[1])]}" if r[4].startswith("alert:") else r[4], r[5])
             for i, r in enumerate(tables["audit_log"], 1)]  # fmt: skip
    return {"alerts": alerts, "notifications": notes, "audit_log": audit}


@pytest.mark.parametrize("where", ["reading", "writing"])
def test_a_failure_of_the_batched_path_falls_back_to_the_sequential_path(twins, codes, monkeypatch, where):
    batches = scenario(3, batches=4)
    codes()
    play(twins[0], batches, alert_jobs.each)
    errors = []
    monkeypatch.setattr(alert_jobs, "log", SimpleNamespace(error=lambda event, **kw: errors.append((event, kw))))
    if where == "reading":  # in the middle of the batch, after some alerts changed in memory
        calls = itertools.count()
        original = alert_batch.Batch.clinical_alert

        def clinical_alert(self, *args):
            if next(calls) == 5:
                raise KeyError("bug")
            return original(self, *args)

        monkeypatch.setattr(alert_batch.Batch, "clinical_alert", clinical_alert)
    else:  # after every alert and notification row is written
        def insert_many(session, table, rows, returning=()):
            if table.name == "audit_log":
                raise KeyError("bug")
            return alert_repo_insert_many(session, table, rows, returning)

        alert_repo_insert_many = alert_batch.insert_many
        monkeypatch.setattr(alert_batch, "insert_many", insert_many)
    codes()
    runtime = SimpleNamespace(rules=SimpleNamespace(get=lambda: RULES))
    play(twins[1], batches, lambda s, stored, _patients, _rules, now: alert_jobs.on_batch(s, stored, now, runtime))
    assert errors and {e for e, _ in errors} == {"alert_batch_failed"}
    assert {kw["error_type"] for _, kw in errors} == {"KeyError"}
    seq, batch = dump(twins[0]), dump(twins[1])
    assert_same(canonical(seq), canonical(batch))
    if where == "reading":  # nothing was written before the failure: the very same ids
        assert {t: [r[0] for r in rows] for t, rows in seq.items()} == {t: [r[0] for r in rows] for t, rows in batch.items()}


def test_a_database_error_in_the_batched_path_propagates(twins, codes, monkeypatch):
    engine = twins[1]
    batches = scenario(4, batches=1)
    sessions = session_factory(engine)
    with sessions.begin() as s:
        for pid in ENROLLED:
            enroll(s, pid)

    def broken(self):
        raise OperationalError("INSERT ...", {}, Exception("server closed the connection"))

    monkeypatch.setattr(alert_batch.Batch, "_write_all", broken)
    monkeypatch.setattr(alert_jobs, "each", must_not_fall_back)
    runtime = SimpleNamespace(rules=SimpleNamespace(get=lambda: RULES))
    now, stored = batches[0]
    with pytest.raises(DBAPIError), sessions.begin() as s:
        alert_jobs.on_batch(s, stored, now, runtime)
    assert dump(engine) == {"alerts": [], "notifications": [], "audit_log": []}


def paging_batch(k: int, pids: list[str], start: int) -> list[tuple]:
    """One paging check-in per patient: an emergency, or urgent for every third patient."""
    out = []
    for i, pid in enumerate(pids):
        change = dict(vitals={"temperature_c": 38.2}) if (i + start) % 3 == 0 else dict(symptoms=["bleeding"])
        doc = baseline(patient_id=pid, checkin_id=f"n{k}-{i}", recorded_at=f"2026-11-25T{8 + k:02d}:00:00Z", **change)
        checkin = parse_checkin(doc)
        out.append((evaluate(checkin), checkin))
    return out


def test_statements_per_batch_do_not_grow_with_the_batch(sessions, engine):
    """Per batch: opens, annotations, upgrades and missed-check-in closures for 20 or 200 patients
    cost the same handful of statements."""
    runtime = SimpleNamespace(rules=SimpleNamespace(get=lambda: RULES))
    counts = {}
    for n in (20, 200):
        pids = [f"S{n}-{i:03d}" for i in range(n)]
        with sessions.begin() as s:
            for i, pid in enumerate(pids):
                if i % 4 == 0:  # a missed check-in alert open before the batch
                    s.add(Patient(patient_id=pid, age_years=50, therapy="Yescarta", therapy_start=dt.date(2026, 11, 20),
                                  unit="5B", checkin_interval_h=1, labels={}, enrolled_at=T0 - dt.timedelta(days=5),
                                  updated_at=T0 - dt.timedelta(days=5)))  # fmt: skip
        with sessions.begin() as s:
            alerting.check_missed(s, RULES, T0)
        with sessions.begin() as s:  # opens half of them (every other patient) with urgent or emergency
            alert_jobs.on_batch(s, paging_batch(0, pids[::2], 0), T0, runtime)
        seen: list[str] = []

        def count(conn, cursor, statement, *args):
            seen.append(statement.split(None, 1)[0])

        event.listen(engine, "before_cursor_execute", count)
        try:
            with sessions.begin() as s:  # every patient: opened, upgraded, annotated; the missed ones close
                alert_jobs.on_batch(s, paging_batch(1, pids, 1), T0 + 5 * MIN, runtime)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        with sessions() as s:
            assert s.scalar(select(Alert.id).where(Alert.patient_id == pids[-1], Alert.condition == "clinical")) is not None
        counts[n] = [x for x in seen if x not in ("BEGIN", "COMMIT")]
    assert len(counts[200]) <= 12, counts[200]
    assert counts[200] == counts[20]
