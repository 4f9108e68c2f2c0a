"""Red flags (clinical.md 5.3), age-band thresholds (5.4), NEWS2 (5.5) and urgency (evaluate.md)."""

import pytest

from tests.factories import DROP, baseline, ev
from worker.domain import RED_FLAG_TIERS, RED_FLAGS
from worker.grading.vitals import band_for

# (age, field, value, flag expected): each side of every age-band edge of clinical.md 5.4.
AGE_BAND_EDGES = [
    # neonate < 28 days
    (0.05, "heart_rate_bpm", 205, None), (0.05, "heart_rate_bpm", 206, "tachycardia"),
    (0.05, "heart_rate_bpm", 90, None), (0.05, "heart_rate_bpm", 89, "bradycardia"),
    (0.05, "respiratory_rate", 53, None), (0.05, "respiratory_rate", 54, "tachypnea"),
    (0.05, "systolic_bp", 60, None), (0.05, "systolic_bp", 59, "hypotension"),
    # infant 1-11 months
    (0.5, "heart_rate_bpm", 190, None), (0.5, "heart_rate_bpm", 191, "tachycardia"),
    (0.5, "heart_rate_bpm", 90, None), (0.5, "heart_rate_bpm", 89, "bradycardia"),
    (0.5, "respiratory_rate", 53, None), (0.5, "respiratory_rate", 54, "tachypnea"),
    (0.5, "systolic_bp", 70, None), (0.5, "systolic_bp", 69, "hypotension"),
    # toddler 1-2 y
    (2, "heart_rate_bpm", 140, None), (2, "heart_rate_bpm", 141, "tachycardia"),
    (2, "heart_rate_bpm", 80, None), (2, "heart_rate_bpm", 79, "bradycardia"),
    (2, "respiratory_rate", 37, None), (2, "respiratory_rate", 38, "tachypnea"),
    (2, "systolic_bp", 74, None), (2, "systolic_bp", 73, "hypotension"),
    # preschool 3-5 y
    (4, "heart_rate_bpm", 120, None), (4, "heart_rate_bpm", 121, "tachycardia"),
    (4, "heart_rate_bpm", 65, None), (4, "heart_rate_bpm", 64, "bradycardia"),
    (4, "respiratory_rate", 28, None), (4, "respiratory_rate", 29, "tachypnea"),
    (4, "systolic_bp", 78, None), (4, "systolic_bp", 77, "hypotension"),
    # school 6-11 y
    (8, "heart_rate_bpm", 118, None), (8, "heart_rate_bpm", 119, "tachycardia"),
    (8, "heart_rate_bpm", 58, None), (8, "heart_rate_bpm", 57, "bradycardia"),
    (8, "respiratory_rate", 25, None), (8, "respiratory_rate", 26, "tachypnea"),
    (8, "systolic_bp", 86, None), (8, "systolic_bp", 85, "hypotension"),
    (11, "systolic_bp", 90, None), (11, "systolic_bp", 89, "hypotension"),
    # adolescent 12-15 y
    (14, "heart_rate_bpm", 100, None), (14, "heart_rate_bpm", 101, "tachycardia"),
    (14, "heart_rate_bpm", 50, None), (14, "heart_rate_bpm", 49, "bradycardia"),
    (14, "respiratory_rate", 20, None), (14, "respiratory_rate", 21, "tachypnea"),
    (14, "respiratory_rate", 5, None),  # no paediatric bradypnoea rule
    (14, "systolic_bp", 90, None), (14, "systolic_bp", 89, "hypotension"),
    # adult >= 16 y: NEWS2 red bands
    (16, "heart_rate_bpm", 130, None), (16, "heart_rate_bpm", 131, "tachycardia"),
    (16, "heart_rate_bpm", 130.5, "tachycardia"),  # between printed bands: the severe side
    (16, "heart_rate_bpm", 41, None), (16, "heart_rate_bpm", 40, "bradycardia"),
    (16, "respiratory_rate", 24, None), (16, "respiratory_rate", 25, "tachypnea"),
    (16, "respiratory_rate", 9, None), (16, "respiratory_rate", 8, "bradypnea"),
    (16, "systolic_bp", 91, None), (16, "systolic_bp", 90, "hypotension"),
    (80, "spo2_percent", 92, None), (80, "spo2_percent", 91, "hypoxemia"), (3, "spo2_percent", 91, "hypoxemia"),
    (30, "temperature_c", 39.0, None), (30, "temperature_c", 39.1, "high_fever"), (5, "temperature_c", 39.1, "high_fever"),
    (30, "temperature_c", 35.1, None), (30, "temperature_c", 35.0, "hypothermia"), (1, "temperature_c", 35.0, "hypothermia"),
]  # fmt: skip

VITAL_FLAGS = {"tachycardia", "bradycardia", "tachypnea", "bradypnea", "hypotension", "hypoxemia", "high_fever", "hypothermia"}


def child_normal_vitals(age):
    """Vitals inside every band's normal range for this age, so only the tested value can flag."""
    band = band_for(age)
    return {
        "temperature_c": 37.0,
        "heart_rate_bpm": (band.tachycardia_above + band.bradycardia_below) / 2,
        "respiratory_rate": band.tachypnea_above - 2,
        "systolic_bp": 120,
        "spo2_percent": 97,
    }


@pytest.mark.parametrize(("age", "field", "value", "flag"), AGE_BAND_EDGES)
def test_age_band_vital_thresholds(age, field, value, flag):
    doc = baseline(age=age, neuro=DROP, vitals=child_normal_vitals(age) | {field: value})
    flags = set(ev(doc).red_flags) & VITAL_FLAGS
    assert flags == ({flag} if flag else set())


@pytest.mark.parametrize(
    ("age", "band"),
    [(0, "neonate"), (27 / 365.25, "neonate"), (28 / 365.25, "infant"), (0.99, "infant"), (1, "toddler"),
     (2.99, "toddler"), (3, "preschool"), (5.99, "preschool"), (6, "school"), (11.99, "school"),
     (12, "adolescent"), (15.99, "adolescent"), (16, "adult"), (120, "adult"), (None, "adult")],
)  # fmt: skip
def test_age_band_edges(age, band):
    assert band_for(age).name == band


def test_unknown_age_uses_adult_thresholds_and_says_so():
    e = ev(age_years=DROP, vitals={"heart_rate_bpm": 125})
    assert "tachycardia" not in e.red_flags
    assert e.age_band is None
    assert any("Age unknown" in r for r in e.reasons)


@pytest.mark.parametrize(
    ("changes", "flag"),
    [
        ({"vasopressors": {"vasopressin": True}}, "hypotension"),
        ({"vasopressors": {"count_excluding_vasopressin": 1}}, "hypotension"),
        ({"fluid_responsive_hypotension": True}, "hypotension"),
        ({"fluid_responsive_hypotension": False}, "hypotension"),
        ({"oxygen": {"device": "nasal_cannula", "flow_l_min": 2}}, "supplemental_oxygen"),
        ({"oxygen": {"device": "cpap"}}, "respiratory_distress"),
        ({"oxygen": {"device": "bipap"}}, "respiratory_distress"),
        ({"oxygen": {"device": "mechanical_ventilation"}}, "respiratory_distress"),
        ({"neuro": {"consciousness": "awakens_to_voice"}}, "altered_consciousness"),
        ({"neuro": {"consciousness": "coma"}}, "altered_consciousness"),
        ({"neuro": {"seizure": "nonconvulsive_on_eeg_resolving"}}, "seizure"),
        ({"neuro": {"motor_weakness": "deep_focal"}}, "focal_weakness"),
        ({"neuro": {"cerebral_edema": "focal_local"}}, "cerebral_edema"),
        ({"neuro": {"ice_score": 9}}, "encephalopathy"),
    ],
)
def test_non_vital_flag_triggers(changes, flag):
    assert flag in ev(**changes).red_flags


def test_room_air_is_not_supplemental_oxygen_and_ice_10_is_not_encephalopathy():
    flags = ev().red_flags
    assert flags == ()


def test_encephalopathy_needs_age_12():
    assert "encephalopathy" not in ev(baseline(age=11.9), neuro={"ice_score": 5}).red_flags
    assert "encephalopathy" in ev(baseline(age=12), neuro={"ice_score": 9}).red_flags


SYMPTOM_TO_FLAG = {
    "rapid_heartbeat": "tachycardia", "rapid_breathing": "tachypnea", "difficulty_breathing": "respiratory_distress",
    "sleepiness": "altered_consciousness", "confusion": "confusion", "difficulty_speaking": "aphasia",
    "hallucinations": "hallucinations", "seizure": "seizure", "fainting": "syncope", "dizziness": "dizziness",
    "chest_pain": "chest_pain", "stomach_pain": "abdominal_pain", "leg_swelling": "leg_swelling",
    "bleeding": "bleeding", "skin_discoloration": "skin_discoloration",
}  # fmt: skip
CARE_TEAM_SYMPTOMS = ["fever", "fatigue", "cough", "headache", "loss_of_appetite", "rash", "body_pain", "malaise",
                      "nausea", "chills", "tremor", "diarrhea", "vomiting"]  # fmt: skip


@pytest.mark.parametrize(("symptom", "flag"), sorted(SYMPTOM_TO_FLAG.items()))
def test_symptom_flags(symptom, flag):
    flags = set(ev(symptoms=[symptom]).red_flags)
    # confusion also makes NEWS2 consciousness non-alert (3 points) in an otherwise normal adult
    assert flags - {"news2_urgent"} == {flag}


@pytest.mark.parametrize("symptom", CARE_TEAM_SYMPTOMS)
def test_care_team_symptoms_are_not_red_flags(symptom):
    e = ev(symptoms=[symptom])
    assert e.red_flags == ()
    assert e.urgency.value == "routine"


def test_flag_vocabulary_has_27_codes_in_two_tiers():
    assert len(RED_FLAGS) == 27
    assert {t.value for t in RED_FLAG_TIERS.values()} == {"emergency", "urgent"}


# ---- NEWS2 ----------------------------------------------------------------------------------

NEWS2_PARAMETER_EDGES = [
    ("respiratory_rate", 8, 3), ("respiratory_rate", 9, 1), ("respiratory_rate", 11, 1), ("respiratory_rate", 12, 0),
    ("respiratory_rate", 20, 0), ("respiratory_rate", 21, 2), ("respiratory_rate", 24, 2), ("respiratory_rate", 25, 3),
    ("respiratory_rate", 20.5, 2), ("respiratory_rate", 8.5, 3),
    ("spo2_percent", 91, 3), ("spo2_percent", 92, 2), ("spo2_percent", 93, 2), ("spo2_percent", 94, 1),
    ("spo2_percent", 95, 1), ("spo2_percent", 96, 0), ("spo2_percent", 95.5, 1),
    ("systolic_bp", 90, 3), ("systolic_bp", 91, 2), ("systolic_bp", 100, 2), ("systolic_bp", 101, 1),
    ("systolic_bp", 110, 1), ("systolic_bp", 111, 0), ("systolic_bp", 219, 0), ("systolic_bp", 220, 3),
    ("heart_rate_bpm", 40, 3), ("heart_rate_bpm", 41, 1), ("heart_rate_bpm", 50, 1), ("heart_rate_bpm", 51, 0),
    ("heart_rate_bpm", 90, 0), ("heart_rate_bpm", 91, 1), ("heart_rate_bpm", 110, 1), ("heart_rate_bpm", 111, 2),
    ("heart_rate_bpm", 130, 2), ("heart_rate_bpm", 131, 3),
    ("temperature_c", 35.0, 3), ("temperature_c", 35.1, 1), ("temperature_c", 36.0, 1), ("temperature_c", 36.1, 0),
    ("temperature_c", 38.0, 0), ("temperature_c", 38.1, 1), ("temperature_c", 39.0, 1), ("temperature_c", 39.1, 2),
    ("temperature_c", 39.05, 2), ("temperature_c", 38.05, 1),
]  # fmt: skip


@pytest.mark.parametrize(("field", "value", "points"), NEWS2_PARAMETER_EDGES)
def test_news2_parameter_bands(field, value, points):
    """Baseline scores 0; changing one parameter adds exactly its band's points."""
    assert ev().news2 == 0
    assert ev(vitals={field: value}).news2 == points


def test_news2_oxygen_and_consciousness_points():
    assert ev(oxygen={"device": "nasal_cannula", "flow_l_min": 2}).news2 == 2
    assert ev(oxygen=DROP).news2 == 0  # omitted = air
    assert ev(neuro={"consciousness": "awakens_to_voice"}).news2 == 3
    assert ev(symptoms=["confusion"]).news2 == 3  # new confusion
    assert ev(neuro={"ice_score": 5}).news2 == 0  # ICE is not a NEWS2 parameter


@pytest.mark.parametrize(
    "change",
    [{"vitals": {"respiratory_rate": DROP}}, {"vitals": {"spo2_percent": DROP}}, {"vitals": {"systolic_bp": DROP}},
     {"vitals": {"heart_rate_bpm": DROP}}, {"vitals": {"temperature_c": DROP}}, {"neuro": {"consciousness": DROP}},
     {"neuro": DROP}, {"age_years": 15.9}],
)  # fmt: skip
def test_news2_needs_every_parameter_and_age_16(change):
    assert ev(**change).news2 is None


@pytest.mark.parametrize(
    ("vitals", "score", "flag"),
    [
        ({"heart_rate_bpm": 111, "respiratory_rate": 21}, 4, None),
        ({"heart_rate_bpm": 111, "respiratory_rate": 21, "temperature_c": 38.1}, 5, "news2_urgent"),
        ({"heart_rate_bpm": 111, "respiratory_rate": 21, "temperature_c": 39.1}, 6, "news2_urgent"),
        ({"heart_rate_bpm": 111, "respiratory_rate": 21, "temperature_c": 39.1, "spo2_percent": 95}, 7, "news2_emergency"),
    ],
)
def test_news2_aggregate_flags(vitals, score, flag):
    e = ev(vitals=vitals)
    assert e.news2 == score
    assert {f for f in e.red_flags if f.startswith("news2")} == ({flag} if flag else set())


# ---- urgency --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "urgency"),
    [
        ({}, "none"),
        ({"symptoms": ["fatigue", "headache"]}, "routine"),
        ({"vitals": {"temperature_c": 38.0}}, "urgent"),  # any fever after immune effector therapy
        ({"symptoms": ["fever"], "vitals": {"temperature_c": DROP}}, "urgent"),  # reported, unmeasured
        ({"symptoms": ["dizziness"]}, "urgent"),  # URGENT-tier flag
        ({"neuro": {"ice_score": 9}}, "urgent"),  # ICANS 1 (and encephalopathy)
        ({"neuro": {"consciousness": "awakens_to_tactile"}}, "emergency"),  # ICANS 3
        ({"symptoms": ["chest_pain"]}, "emergency"),  # EMERGENCY-tier flag
        ({"vitals": {"temperature_c": 38.5}, "oxygen": {"device": "facemask"}}, "emergency"),  # CRS 3
        ({"vitals": {"temperature_c": 38.5, "systolic_bp": 85}}, "emergency"),  # hypotension flag
        ({"vitals": {"systolic_bp": 225}}, "urgent"),  # NEWS2 single parameter 3, no flag
        ({"neuro": DROP, "age_years": 9}, "none"),  # ICANS null, floor 0
        ({"vitals": {"temperature_c": DROP}}, "none"),  # CRS 0 at least, nothing else
    ],
)
def test_urgency(changes, urgency):
    assert ev(**changes).urgency.value == urgency


def test_crs_minimum_of_2_is_urgent():
    """A CRS minimum of 2 (masked fever, cannula flow unknown) is at least urgent."""
    e = ev(fever_masked_by="tocilizumab", vitals={"temperature_c": 37.0}, oxygen={"device": "nasal_cannula"})
    assert (e.crs_grade, e.crs_grade_is_minimum, e.crs_missing) == (2, True, ("oxygen.flow_l_min",))
    assert e.urgency.value == "urgent"


@pytest.mark.parametrize(("field", "value", "flag", "says"), [
    ("temperature_c", 39.05, "high_fever", "Temperature 39.05 C is above 39.0 C"),
    ("temperature_c", 39.1, "high_fever", "Temperature 39.1 C is above 39.0 C"),
    ("temperature_c", 35.05, "hypothermia", "Temperature 35.05 C is below 35.1 C"),
    ("temperature_c", 35.0, "hypothermia", "Temperature 35.0 C is below 35.1 C"),
    ("respiratory_rate", 8.5, "bradypnea", "Respiratory rate 8.5/min is below 9/min"),
    ("spo2_percent", 91.5, "hypoxemia", "SpO2 91.5 % is below 92 %"),
])  # fmt: skip
def test_a_value_between_printed_bands_is_flagged_with_a_true_sentence(field, value, flag, says):
    """Values between the printed NEWS2 bands take the severe side; the reason must not claim
    e.g. that 39.05 is >= 39.1."""
    e = ev(baseline(age=45, neuro=DROP, vitals={field: value}))
    assert flag in e.red_flags
    assert [r for r in e.reasons if r.startswith(says)], e.reasons
