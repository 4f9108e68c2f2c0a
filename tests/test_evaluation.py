"""Evaluation as a whole: therapy tiers and windows, enrollment context, advice wording, transitions."""

import datetime as dt
import re

import pytest

from tests.factories import DROP, baseline, ev
from worker.domain import PatientContext, Urgency
from worker.evaluation import compare
from worker.grading import therapy as th


@pytest.mark.parametrize(
    ("name", "generic", "tier", "cls"),
    [
        ("axicabtagene ciloleucel", "axicabtagene ciloleucel", "high", "car_t"),
        ("Yescarta", "axicabtagene ciloleucel", "high", "car_t"),
        ("YESCARTA®", "axicabtagene ciloleucel", "high", "car_t"),
        ("axi-cel", "axicabtagene ciloleucel", "high", "car_t"),
        ("  Tisagenlecleucel ", "tisagenlecleucel", "high", "car_t"),  # B-ALL vs lymphoma unknown: the safer tier
        ("Breyanzi", "lisocabtagene maraleucel", "medium", "car_t"),
        ("teclistamab-cqyv", "teclistamab", "high", "bispecific"),
        ("Tecvayli", "teclistamab", "high", "bispecific"),
        ("EPKINLY", "epcoritamab", "high", "bispecific"),
        ("Blincyto", "blinatumomab", "high", "bispecific"),
        ("rituximab-abbs", "rituximab", "medium", "antibody"),
        ("Anti-thymocyte globulin", "anti-thymocyte globulin", "medium", "antibody"),
        ("Opdivo", "nivolumab", "low", "antibody"),
        ("lenalidomide", "lenalidomide", "low", "other"),
        ("TGN1412", "tgn1412", "high", "antibody"),
        ("aspirin", "unknown", "unknown", "unknown"),
        ("", "unknown", "unknown", "unknown"),
    ],
)
def test_therapy_lookup(name, generic, tier, cls):
    t = th.lookup(name)
    assert (t.generic, t.tier, t.therapy_class) == (generic, tier, cls)


def test_unknown_therapy_is_not_an_error_and_says_so():
    e = ev(therapy="investigational-xyz")
    assert (e.therapy_tier, e.in_risk_window) == ("unknown", None)
    assert any("not in the catalogue" in r for r in e.reasons)


@pytest.mark.parametrize(
    ("therapy", "recorded_at", "day", "window"),
    [
        ("Kymriah", "2026-11-16T00:30:00+01:00", 0, True),  # infusion day, in the check-in's own offset
        ("Kymriah", "2026-11-15T23:30:00Z", -1, False),  # before the infusion
        ("Kymriah", "2026-12-14T10:00:00Z", 28, True),
        ("Kymriah", "2026-12-15T10:00:00Z", 29, False),
        ("teclistamab", "2026-12-14T10:00:00Z", 28, True),
        ("rituximab", "2026-11-17T10:00:00Z", 1, True),
        ("rituximab", "2026-11-18T10:00:00Z", 2, False),
        ("nivolumab", "2026-11-16T10:00:00Z", 0, False),  # low tier: no window
    ],
)
def test_day_since_therapy_and_window(therapy, recorded_at, day, window):
    e = ev(therapy=therapy, therapy_start="2026-11-16", recorded_at=recorded_at)
    assert (e.day_since_therapy, e.in_risk_window) == (day, window)


def test_enrollment_context_fills_gaps_but_never_overrides():
    ctx = PatientContext(age_years=8, therapy="Kymriah", therapy_start=dt.date(2026, 11, 18))
    doc = baseline(age_years=DROP, therapy=DROP, therapy_start=DROP)
    e = ev(doc, ctx, vitals={"heart_rate_bpm": 125})
    assert (e.age_years, e.age_band, e.therapy_tier, e.day_since_therapy) == (8, "school", "high", 2)
    assert "tachycardia" in e.red_flags  # child band from the enrollment age
    e2 = ev(baseline(age=40), ctx, vitals={"heart_rate_bpm": 125})
    assert (e2.age_years, e2.day_since_therapy) == (40, 4)
    assert "tachycardia" not in e2.red_flags


FORBIDDEN = re.compile(r"infection (has been |is |was )?(excluded|ruled out)|rules? out infection|not an infection", re.I)


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"vitals": {"temperature_c": 38.5}},
        {"vitals": {"temperature_c": 38.5}, "oxygen": {"device": "bipap"}},
        {"vitals": {"temperature_c": 37.0, "systolic_bp": 80}},
        {"vitals": {"temperature_c": DROP}},
        {"neuro": DROP},
        {"premedication": ["antipyretic"]},
    ],
)
def test_advice_is_provisional_and_never_excludes_infection(changes):
    e = ev(**changes)
    assert e.advice.startswith("Provisional")
    assert "Infection cannot be excluded by this assessment" in e.advice
    assert not FORBIDDEN.search(e.advice + " ".join(e.reasons))


def test_advice_wording_of_section_6():
    assert "Findings meet ASTCT criteria for CRS grade 3 (provisional - assumes findings are not due to another cause)" in ev(
        vitals={"temperature_c": 38.5}, oxygen={"device": "facemask"}
    ).advice
    afebrile_shock = ev(vitals={"temperature_c": 36.9, "systolic_bp": 80}).advice
    assert "Does not meet ASTCT fever criterion for CRS" in afebrile_shock
    assert "sepsis, adrenal insufficiency, bleeding, pulmonary embolism" in afebrile_shock
    assert "re-enter this information" in afebrile_shock
    minimum = ev(vitals={"temperature_c": 38.5, "systolic_bp": DROP}).advice
    assert "At least grade 1 - missing: vitals.systolic_bp. Obtain a blood pressure now." in minimum
    # no reading yet: not "does not meet" (unknown), but the emergency work-up all the same
    unread = ev(vitals={"temperature_c": DROP, "systolic_bp": 80}).advice
    assert "Does not meet" not in unread and "re-enter" not in unread
    assert ("Low blood pressure / low oxygen requires emergency evaluation for sepsis, adrenal insufficiency, bleeding, "
            "pulmonary embolism and other causes. At least grade 0 - missing: vitals.temperature_c") in unread
    assert "sepsis" not in ev(vitals={"temperature_c": DROP}).advice  # no finding, no work-up sentence


def test_one_reason_per_finding_naming_the_rule():
    e = ev(vitals={"temperature_c": 39.3, "heart_rate_bpm": 135}, oxygen={"device": "nasal_cannula", "flow_l_min": 4})
    joined = "\n".join(e.reasons)
    assert "ASTCT fever criterion" in joined
    assert "low-flow (<= 6 L/min): CRS grade 2 (ASTCT 2019)" in joined
    assert "high fever red flag" in joined and "tachycardia red flag" in joined
    assert all(r.endswith(".") for r in e.reasons)


def test_as_dict_is_the_contract():
    d = ev().as_dict()
    for key in ("checkin_id", "patient_id", "valid", "crs_grade", "crs_grade_is_minimum", "crs_missing", "icans_grade",
                "icans_floor", "red_flags", "news2", "urgency", "reasons", "advice"):  # fmt: skip
        assert key in d
    assert d["valid"] is True and d["urgency"] == "none" and d["red_flags"] == []


# ---- transitions ----------------------------------------------------------------------------


def test_first_evaluation_is_a_transition():
    t = compare(None, ev())
    assert t.kinds == ("first",)


def test_worse_grade_new_flags_and_urgency_are_transitions():
    before = ev()
    after = ev(vitals={"temperature_c": 38.5, "systolic_bp": 85}, neuro={"ice_score": 8})
    t = compare(before, after)
    assert t.kinds == ("crs_worse", "icans_worse", "new_red_flags", "urgency_worse")
    assert t.new_red_flags == ("encephalopathy", "hypotension")
    assert (t.previous_crs_grade, t.crs_grade, t.previous_urgency, t.urgency) == (0, 2, "none", "emergency")


def test_improvement_or_same_state_is_not_a_transition():
    sick = ev(vitals={"temperature_c": 38.5}, oxygen={"device": "facemask"})
    assert compare(sick, ev()) is None
    assert compare(sick, sick) is None


def test_icans_floor_counts_when_grade_is_null():
    before = ev(neuro={"ice_score": 10})
    after = ev(neuro={"ice_score": DROP, "consciousness": "awakens_to_voice"})  # null, floor 2
    assert compare(before, after).kinds[0] == "icans_worse"


def test_transition_accepts_any_object_with_the_fields():
    class Row:
        crs_grade, icans_grade, icans_floor, red_flags, urgency = 1, 0, 0, ["high_fever"], "urgent"

    t = compare(Row(), ev(vitals={"temperature_c": 39.5}, oxygen={"device": "bipap"}))
    assert "crs_worse" in t.kinds and Urgency(t.urgency) is Urgency.EMERGENCY


@pytest.mark.parametrize(("start", "day", "says"), [("2026-11-25", -5, True), ("2026-11-20", 0, False), ("2026-11-21", -1, True)])
def test_a_therapy_start_after_the_checkin_is_said_not_silently_out_of_window(start, day, says):
    e = ev(therapy="axicabtagene ciloleucel", therapy_start=start, recorded_at="2026-11-20T10:00:00Z")
    assert e.day_since_therapy == day
    assert e.in_risk_window is (day >= 0)
    flagged = [r for r in e.reasons if r.startswith(f"Therapy start {start} is after this check-in (day {day})")]
    assert bool(flagged) is says


@pytest.mark.parametrize(("therapy", "start", "temp", "says"), [
    ("axicabtagene ciloleucel", "2026-11-06", 38.5, None),  # day 14: still the CRS window
    ("axicabtagene ciloleucel", "2026-11-05", 38.5, "Fever on day 15 after axicabtagene ciloleucel: new CRS is rare"),
    ("axicabtagene ciloleucel", "2026-11-05", 37.5, None),  # no fever
    ("teclistamab", "2026-10-01", 38.5, None),  # a bispecific can cause CRS again with later doses
    ("axicabtagene ciloleucel", "2026-11-18", 35.0, "Hypothermia points to infection rather than CRS"),
    (DROP, DROP, 34.0, "Hypothermia points to infection rather than CRS"),
])  # fmt: skip
def test_late_fever_after_car_t_or_hypothermia_points_to_infection(therapy, start, temp, says):
    """clinical.md 6 (sepsis): a fever beyond day 14 after CAR-T, or hypothermia, shifts the
    probability to infection; the advice says so and asks for a sepsis screen."""
    from worker.advice import INFECTION

    e = ev(therapy=therapy, therapy_start=start, recorded_at="2026-11-20T10:00:00Z", vitals={"temperature_c": temp})
    if says is None:
        assert "screen for sepsis" not in e.advice
    else:
        assert says in e.advice and "screen for sepsis now." in e.advice
        assert e.advice.endswith(INFECTION)  # infection still never excluded


# ---- the stored result --------------------------------------------------------------------------


def _stored_result_cases():
    from tests.checkin_corpus import CORPUS

    docs = [c.doc for c in CORPUS if c.valid]
    docs += [baseline(recorded_at=t) for t in ("2026-11-20T06:15:00.123456Z", "2026-11-20T08:15:00+02:00",
                                                "2026-11-20T01:15:00.5-05:00")]
    return docs


def test_orjson_writes_an_evaluation_as_its_as_dict():
    """The pipeline stores ``orjson.dumps(evaluation)`` as ``evaluations.result`` (no dict built):
    the same object as ``as_dict()``, key for key and value for value, over the whole corpus and
    for times with microseconds and other offsets."""
    import orjson

    from worker.checkin import parse_checkin
    from worker.evaluation import evaluate

    cases = _stored_result_cases()
    assert len(cases) > 50
    for doc in cases:
        e = evaluate(parse_checkin(doc), PatientContext(age_years=8.5, therapy="teclistamab"))
        stored = orjson.loads(orjson.dumps(e))
        assert stored == e.as_dict() and set(stored) == set(e.as_dict()), doc
        assert type(stored["recorded_at"]) is str and dt.datetime.fromisoformat(stored["recorded_at"]) == e.recorded_at


def test_orjson_writes_a_transition_as_its_as_dict():
    """transitions.detail is ``orjson.dumps(transition)``: the same object as ``as_dict()``."""
    import orjson

    before, after = ev(), ev(vitals={"temperature_c": 38.5, "systolic_bp": 85}, neuro={"ice_score": 8})
    for t in (compare(None, before), compare(before, after)):
        assert orjson.loads(orjson.dumps(t)) == t.as_dict() and list(orjson.loads(orjson.dumps(t))) == list(t.as_dict())
