"""1,000 malformed payloads (hypothesis) through the real pipeline: no crash, nothing dropped,
every refused entry stored with its raw bytes and at least one error naming a place."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from sqlalchemy import select

from worker.intake import Consumer, backlog, submit
from worker.pipeline import drain
from worker.store.models import CheckinRow, DuplicateCheckin, RejectedInput

TRICKY = ["", "\x00", "a\x00b", "\ud800", "x\udfffy", "💉", "Ω" * 70, "P-1", "9" * 200, " ", "null"]
tricky_text = st.one_of(st.sampled_from(TRICKY), st.text(max_size=30))
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20),
                        st.floats(allow_nan=False, allow_infinity=False), tricky_text)
json_value = st.recursive(json_scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                               st.dictionaries(tricky_text, inner, max_size=4)),
                          max_leaves=10)
PATHS = ["checkin_id", "patient_id", "recorded_at", "source", "age_years", "therapy", "therapy_start", "vitals",
         "vitals.temperature_c", "vitals.heart_rate_bpm", "vitals.spo2_percent", "vitals.systolic_bp", "oxygen",
         "oxygen.device", "oxygen.flow_l_min", "vasopressors.count_excluding_vasopressin", "symptoms", "neuro",
         "neuro.ice_score", "neuro.consciousness", "premedication", "note", "schema_version", "colour"]


@st.composite
def mutated_checkin(draw) -> str:
    doc = {
        "checkin_id": draw(st.one_of(st.sampled_from([f"m-{i}" for i in range(40)]), tricky_text)),
        "patient_id": draw(st.sampled_from(["P-1", "P-2", "P-3", "bad id", "P\x00"])),
        "recorded_at": draw(st.sampled_from(["2026-11-20T06:00:00Z", "2026-11-20T07:30:00+01:00", "2026-02-30T00:00:00Z",
                                             "2026-11-20 06:00", "yesterday"])),
        "vitals": {"temperature_c": draw(st.floats(20, 50)), "spo2_percent": 95},
    }
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(PATHS)).split(".")
        if draw(st.booleans()) and path[0] in doc and len(path) == 1:
            del doc[path[0]]
            continue
        target = doc
        for part in path[:-1]:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[path[-1]] = draw(json_value)
    return json.dumps(doc, ensure_ascii=draw(st.booleans()))


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")  # an unpaired surrogate becomes invalid UTF-8


payload = st.one_of(
    st.binary(max_size=120),
    tricky_text.map(_bytes),
    json_value.map(json.dumps).map(_bytes),
    mutated_checkin().map(_bytes),
    mutated_checkin().map(lambda t: _bytes(t[: len(t) // 2])),  # truncated
    st.integers(500, 50_000).map(lambda n: b'{"checkin_id": "deep", "x": ' + b"[" * n),  # absurdly deep nesting
)


@hsettings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(batch=st.lists(payload, min_size=50, max_size=50))
def test_malformed_payloads_are_all_stored_with_errors(r, sessions, make_settings, batch):
    settings = make_settings(batch_size=25)
    ids = set(submit(r, settings.stream_name, batch, group=settings.group))
    report = drain(r=r, sessions=sessions, settings=settings, consumer=Consumer(r, settings.stream_name, settings.group, "h"),
                   budget_s=60)
    assert report.read == len(batch) and report.acked == len(batch)
    with sessions() as s:
        rejected = {row.stream_id: row for row in s.scalars(select(RejectedInput).where(RejectedInput.stream_id.in_(ids)))}
        stored = set(s.scalars(select(CheckinRow.stream_id).where(CheckinRow.stream_id.in_(ids))))
        dups = set(s.scalars(select(DuplicateCheckin.stream_id).where(DuplicateCheckin.stream_id.in_(ids))))
    assert set(rejected) | stored | dups == ids  # every entry accounted for ...
    assert len(rejected) + len(stored) + len(dups) == len(ids)  # ... exactly once
    by_id = dict(zip(sorted(ids, key=lambda i: tuple(map(int, i.split("-")))), batch))
    for sid, row in rejected.items():
        raw = by_id[sid]
        assert row.raw_payload == raw
        assert row.errors and all(isinstance(e["loc"], str) and e["msg"] for e in row.errors)
    assert backlog(r, settings.stream_name, settings.group)["pending"] == 0
