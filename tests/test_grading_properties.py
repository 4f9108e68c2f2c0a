"""Properties of evaluate() over generated, schema-valid check-ins (hypothesis).

- evaluation never raises on any schema-valid check-in;
- outputs stay inside their ranges and vocabularies (grades 0-4, red flags from clinical.md 5.3);
- worsening one finding never lowers the CRS grade, the ICANS level, NEWS2, the urgency, or removes a
  (non-NEWS2) red flag.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.schema_strategy import from_schema
from worker.checkin import parse_checkin
from worker.domain import EMERGENCY_FLAGS, RED_FLAGS, Urgency
from worker.evaluation import evaluate

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "shared" / "spec" / "checkin.schema.json").read_text())
PROPS = SCHEMA["properties"]
SYMPTOMS = PROPS["symptoms"]["items"]["enum"]
DEVICES = PROPS["oxygen"]["properties"]["device"]["enum"]
NEURO = PROPS["neuro"]["properties"]
THERAPIES = ["Kymriah", "axi-cel", "teclistamab-cqyv", "rituximab", "nivolumab", "unknown drug", "Breyanzi"]
CONSCIOUSNESS_ORDER = ["awake", "awakens_to_voice", "awakens_to_tactile", "unarousable_or_stupor", "coma"]
SEIZURE_ORDER = ["none", "focal_or_generalized_resolving", "prolonged_or_repetitive"]
EDEMA_ORDER = NEURO["cerebral_edema"]["enum"]
DEVICE_RANK = {"room_air": 0, "blow_by": 2, "high_flow_nasal_cannula": 3, "facemask": 3, "nonrebreather": 3,
               "venturi": 3, "cpap": 4, "bipap": 4, "mechanical_ventilation": 4}  # fmt: skip


def num(lo, hi):
    return st.floats(lo, hi, allow_nan=False).map(lambda x: round(x, 1))


def optional(d: dict, strategies: dict) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({}, optional=strategies).map(lambda extra: {**d, **extra})


def mostly(strategies: dict) -> st.SearchStrategy[dict]:
    """Every key present except up to two dropped: dense documents where each finding can interact."""
    full = st.fixed_dictionaries(strategies)
    return st.builds(lambda d, drop: {k: v for k, v in d.items() if k not in drop}, full,
                     st.sets(st.sampled_from(sorted(strategies)), max_size=2))  # fmt: skip


VITAL_FIELDS = {
    # mostly clinical ranges (where the thresholds are), sometimes the whole schema range
    "temperature_c": st.one_of(num(36.5, 40), num(25, 45)), "heart_rate_bpm": st.one_of(num(40, 180), num(10, 300)),
    "respiratory_rate": st.one_of(num(6, 40), num(0, 100)), "systolic_bp": st.one_of(num(50, 140), num(30, 300)),
    "diastolic_bp": num(20, 120), "spo2_percent": st.one_of(num(85, 100), num(40, 100)),
}  # fmt: skip
VITALS = st.one_of(optional({}, VITAL_FIELDS), mostly(VITAL_FIELDS))
OXYGEN = st.builds(lambda d, f: {"device": d, **({"flow_l_min": f} if f is not None else {})},
                   st.sampled_from(DEVICES), st.none() | num(0, 15))  # fmt: skip
NEURO_FIELDS = {
    "ice_score": st.integers(0, 10), "capd_score": st.integers(0, 32),
    "consciousness": st.sampled_from(CONSCIOUSNESS_ORDER), "sedated": st.booleans(),
    "seizure": st.sampled_from(NEURO["seizure"]["enum"]), "motor_weakness": st.sampled_from(["none", "deep_focal"]),
    "cerebral_edema": st.sampled_from(EDEMA_ORDER),
}  # fmt: skip
NEURO_ST = st.one_of(optional({}, NEURO_FIELDS), mostly(NEURO_FIELDS))
CHECKINS = optional(
    {"checkin_id": "chk-prop", "patient_id": "P-prop", "recorded_at": "2026-11-20T08:00:00+01:00"},
    {
        "age_years": st.one_of(num(0, 100), st.sampled_from([0.5, 2, 5, 11.9, 12, 15.9, 16])),
        "therapy": st.sampled_from(THERAPIES),
        "therapy_start": st.sampled_from(["2026-11-01", "2026-11-18", "2026-11-25"]),
        "vitals": VITALS,
        "oxygen": OXYGEN,
        "vasopressors": optional({}, {"count_excluding_vasopressin": st.sampled_from([0, 0, 0, 1, 2]),
                                      "vasopressin": st.sampled_from([False, False, True])}),
        "fluid_responsive_hypotension": st.booleans(),
        "fever_masked_by": st.sampled_from(PROPS["fever_masked_by"]["enum"]),
        "premedication": st.lists(st.sampled_from(["corticosteroids", "antipyretic"]), unique=True),
        "symptoms": st.lists(st.sampled_from(SYMPTOMS), unique=True, max_size=6),
        "neuro": NEURO_ST,
    },
)
FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def icans_level(e):
    return e.icans_grade if e.icans_grade is not None else e.icans_floor


def check_invariants(e):
    assert 0 <= e.crs_grade <= 4
    assert e.icans_grade is None or (0 <= e.icans_grade <= 4 and e.icans_floor == e.icans_grade)
    assert 0 <= e.icans_floor <= 4
    assert set(e.red_flags) <= RED_FLAGS and list(e.red_flags) == sorted(set(e.red_flags))
    assert e.crs_missing == () or e.crs_grade_is_minimum
    if e.age_years is not None and e.age_years < 16:
        assert e.news2 is None
    if not EMERGENCY_FLAGS.isdisjoint(e.red_flags) or e.crs_grade >= 3:
        assert e.urgency is Urgency.EMERGENCY
    assert "Infection cannot be excluded by this assessment" in e.advice
    json.dumps(e.as_dict())


@FAST
@given(CHECKINS)
def test_evaluation_never_raises_and_stays_in_range(doc):
    check_invariants(evaluate(parse_checkin(doc)))


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(from_schema(SCHEMA))
def test_any_schema_valid_document_evaluates(doc):
    """Documents generated from the shared JSON Schema itself (any field combination, any value in range)."""
    check_invariants(evaluate(parse_checkin(doc)))


# ---- monotonicity ---------------------------------------------------------------------------
# Each edit makes the clinical picture worse (never better). (applies to doc?, edit(doc, x in [0, 1])).


def _set(path, value_fn):
    def edit(d, x):
        target = d
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = value_fn(target.get(path[-1]), x)

    return edit


def _has(*path):
    def applies(d):
        for key in path:
            if not isinstance(d, dict) or key not in d:
                return False
            d = d[key]
        return True

    return applies


def _next_symptom(d, x):
    missing = [s for s in SYMPTOMS if s not in d.get("symptoms", [])]
    if missing:
        d.setdefault("symptoms", []).append(missing[int(x * len(missing)) % len(missing)])


def _escalate(order):
    return lambda cur, x: order[max(order.index(cur), min(len(order) - 1, int(x * len(order))))]


def _device(d, x):
    cur = d.get("oxygen", {}).get("device", "room_air")
    if cur == "nasal_cannula":
        return
    better = sorted(k for k, r in DEVICE_RANK.items() if r >= DEVICE_RANK[cur])
    d["oxygen"] = {"device": better[int(x * len(better)) % len(better)]}


WORSENINGS = {
    "temperature_up": (lambda d: d.get("vitals", {}).get("temperature_c", 0) >= 36.1,
                       _set(("vitals", "temperature_c"), lambda t, x: max(t, round(36.1 + x * 8.9, 1)))),
    "sbp_down": (lambda d: d.get("vitals", {}).get("systolic_bp", 999) <= 219, _set(("vitals", "systolic_bp"), lambda v, x: max(30, round(v * x, 1)))),
    "spo2_down": (_has("vitals", "spo2_percent"), _set(("vitals", "spo2_percent"), lambda v, x: max(40, round(v * x, 1)))),
    "heart_rate_up": (lambda d: d.get("vitals", {}).get("heart_rate_bpm", 0) >= 91,
                      _set(("vitals", "heart_rate_bpm"), lambda v, x: min(300, v + x * 150))),
    "resp_rate_up": (lambda d: d.get("vitals", {}).get("respiratory_rate", 0) >= 12,
                     _set(("vitals", "respiratory_rate"), lambda v, x: min(100, v + x * 60))),
    "oxygen_device_up": (lambda d: True, _device),
    "nasal_flow_up": (lambda d: d.get("oxygen", {}).get("device") == "nasal_cannula" and "flow_l_min" in d["oxygen"],
                      _set(("oxygen", "flow_l_min"), lambda v, x: min(80, v + x * 10))),
    "pressor_added": (lambda d: True, _set(("vasopressors", "count_excluding_vasopressin"), lambda v, x: min(10, (v or 0) + 1))),
    "vasopressin_added": (lambda d: True, _set(("vasopressors", "vasopressin"), lambda v, x: True)),
    "symptom_added": (lambda d: True, _next_symptom),
    "ice_down": (_has("neuro", "ice_score"), _set(("neuro", "ice_score"), lambda v, x: int(v * x))),
    "capd_up": (_has("neuro", "capd_score"), _set(("neuro", "capd_score"), lambda v, x: min(32, v + int(x * 10)))),
    "consciousness_down": (_has("neuro", "consciousness"), _set(("neuro", "consciousness"), _escalate(CONSCIOUSNESS_ORDER))),
    "seizure_worse": (lambda d: d.get("neuro", {}).get("seizure") in SEIZURE_ORDER,
                      _set(("neuro", "seizure"), _escalate(SEIZURE_ORDER))),
    "edema_worse": (_has("neuro", "cerebral_edema"), _set(("neuro", "cerebral_edema"), _escalate(EDEMA_ORDER))),
    "motor_weakness": (_has("neuro"), _set(("neuro", "motor_weakness"), lambda v, x: "deep_focal")),
    "hypotension_documented": (lambda d: d.get("fluid_responsive_hypotension") is not False,
                               _set(("fluid_responsive_hypotension",), lambda v, x: x < 0.5)),
}  # fmt: skip

URGENCY_RANK = {u: u.rank for u in Urgency}
NEWS2_FLAG_RANK = {"news2_urgent": 1, "news2_emergency": 2}


@pytest.mark.parametrize("name", sorted(WORSENINGS))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(doc=CHECKINS, x=st.floats(0, 1))
def test_worsening_a_finding_never_lowers_a_grade(name, doc, x):
    applies, edit = WORSENINGS[name]
    assume(applies(doc))
    before = evaluate(parse_checkin(doc))
    worse_doc = copy.deepcopy(doc)
    edit(worse_doc, x)
    after = evaluate(parse_checkin(worse_doc))
    assert after.crs_grade >= before.crs_grade
    assert icans_level(after) >= icans_level(before)
    assert URGENCY_RANK[after.urgency] >= URGENCY_RANK[before.urgency]
    if before.news2 is not None and after.news2 is not None:
        assert after.news2 >= before.news2
    plain = lambda flags: {f for f in flags if f not in NEWS2_FLAG_RANK}  # noqa: E731
    assert plain(after.red_flags) >= plain(before.red_flags)
    news_rank = lambda flags: max((NEWS2_FLAG_RANK.get(f, 0) for f in flags), default=0)  # noqa: E731
    assert news_rank(after.red_flags) >= news_rank(before.red_flags)
