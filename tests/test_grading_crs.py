"""ASTCT 2019 CRS grading, clinical.md section 1: every rule and boundary, each side of each edge."""

import pytest

from tests.factories import DROP, baseline, ev

FEBRILE = {"vitals": {"temperature_c": 38.5}}


@pytest.mark.parametrize(
    ("temp", "grade"),
    [(37.9, 0), (37.99, 0), (38.0, 1), (38.01, 1), (39.0, 1), (39.1, 1), (41.5, 1), (35.0, 0)],
)
def test_fever_criterion_is_38_0_inclusive(temp, grade):
    """38.0 C is fever (grade 1 alone), 37.9 C is not (grade 0, exact)."""
    e = ev(vitals={"temperature_c": temp})
    assert (e.crs_grade, e.crs_grade_is_minimum) == (grade, False)


@pytest.mark.parametrize(
    ("device", "flow", "grade"),
    [
        ("room_air", DROP, 1),
        ("nasal_cannula", 0, 2),
        ("nasal_cannula", 4, 2),
        ("nasal_cannula", 6, 2),
        ("nasal_cannula", 6.01, 3),
        ("nasal_cannula", 6.5, 3),
        ("blow_by", DROP, 2),
        ("blow_by", 10, 2),
        ("high_flow_nasal_cannula", 40, 3),
        ("high_flow_nasal_cannula", DROP, 3),
        ("facemask", DROP, 3),
        ("nonrebreather", 15, 3),
        ("venturi", DROP, 3),
        ("cpap", DROP, 4),
        ("bipap", DROP, 4),
        ("mechanical_ventilation", DROP, 4),
    ],
)
def test_hypoxia_component_by_device_and_flow(device, flow, grade):
    """Device table of clinical.md 1.3 rule 5; the 6 L/min edge is low-flow, above it high-flow."""
    e = ev(**FEBRILE, oxygen={"device": device, "flow_l_min": flow})
    assert (e.crs_grade, e.crs_grade_is_minimum) == (grade, False)


def test_nasal_cannula_without_flow_is_at_least_2_and_names_the_flow():
    e = ev(**FEBRILE, oxygen={"device": "nasal_cannula"})
    assert (e.crs_grade, e.crs_grade_is_minimum, e.crs_missing) == (2, True, ("oxygen.flow_l_min",))


@pytest.mark.parametrize(
    ("pressors", "grade"),
    [
        ({"count_excluding_vasopressin": 0, "vasopressin": False}, 1),
        ({"count_excluding_vasopressin": 1, "vasopressin": False}, 3),
        ({"count_excluding_vasopressin": 0, "vasopressin": True}, 3),  # vasopressin alone is "a vasopressor"
        ({"count_excluding_vasopressin": 1, "vasopressin": True}, 3),  # vasopressin never counts toward multiple
        ({"count_excluding_vasopressin": 2, "vasopressin": False}, 4),
        ({"count_excluding_vasopressin": 2, "vasopressin": True}, 4),
        ({"count_excluding_vasopressin": 3}, 4),
        ({"vasopressin": True}, 3),
        ({}, 1),
    ],
)
def test_vasopressor_rules(pressors, grade):
    e = ev(**FEBRILE, vasopressors=pressors if pressors else DROP)
    assert (e.crs_grade, e.crs_grade_is_minimum) == (grade, False)
    assert ("hypotension" in e.red_flags) is (grade > 1)


@pytest.mark.parametrize(
    ("fluid", "sbp", "grade", "minimum", "missing"),
    [
        (True, 120, 2, False, ()),  # documented fluid-responsive episode: exactly 2
        (False, 120, 2, True, ("vasopressors",)),  # refractory, no pressor yet: at least 2
        (DROP, 90, 2, True, ("fluid_responsive_hypotension",)),  # adult SBP <= 90, untreated: at least 2
        (DROP, 91, 1, False, ()),
        (DROP, 90.5, 2, True, ("fluid_responsive_hypotension",)),  # between printed bands: the severe side
    ],
)
def test_hypotension_component(fluid, sbp, grade, minimum, missing):
    e = ev(fluid_responsive_hypotension=fluid, vitals={"temperature_c": 38.5, "systolic_bp": sbp})
    assert (e.crs_grade, e.crs_grade_is_minimum, e.crs_missing) == (grade, minimum, missing)


def test_grade_is_the_more_severe_component_worked_example():
    """Lee 2019 worked example: 39.5 C, one vasopressor, low-flow nasal cannula = grade 3."""
    e = ev(
        vitals={"temperature_c": 39.5},
        vasopressors={"count_excluding_vasopressin": 1},
        oxygen={"device": "nasal_cannula", "flow_l_min": 3},
    )
    assert (e.crs_grade, e.crs_grade_is_minimum) == (3, False)


@pytest.mark.parametrize(
    "changes",
    [
        {"vasopressors": {"count_excluding_vasopressin": 2}},
        {"oxygen": {"device": "bipap"}},
        {"vasopressors": {"count_excluding_vasopressin": 1}, "oxygen": {"device": "cpap"}},
    ],
)
def test_no_fever_no_masking_is_never_crs(changes):
    """Rule 3: afebrile and unmasked is grade 0 (exact) whatever the BP or oxygen need; flags still fire."""
    e = ev(vitals={"temperature_c": 37.2}, **changes)
    assert (e.crs_grade, e.crs_grade_is_minimum) == (0, False)
    assert e.urgency.value == "emergency"
    assert "Does not meet ASTCT fever criterion" in e.advice


@pytest.mark.parametrize(
    ("masking", "changes", "grade", "minimum"),
    [
        ("tocilizumab", {"vasopressors": {"count_excluding_vasopressin": 1}}, 3, False),
        ("corticosteroids", {"oxygen": {"device": "nasal_cannula", "flow_l_min": 4}}, 2, False),
        ("antipyretic", {"oxygen": {"device": "bipap"}}, 4, False),
        ("tocilizumab", {"vitals": {"systolic_bp": 85}}, 2, True),
        ("tocilizumab", {"vitals": {"temperature_c": DROP}, "vasopressors": {"count_excluding_vasopressin": 1}}, 3, False),
        # clinical.md 8.3: masked, no hypotension or hypoxia -> left to the clinician (0, at least).
        ("tocilizumab", {}, 0, True),
        ("tocilizumab", {"vitals": {"temperature_c": 38.4}}, 1, False),
    ],
)
def test_masked_fever_grades_by_components(masking, changes, grade, minimum):
    e = ev(fever_masked_by=masking, **changes)
    assert (e.crs_grade, e.crs_grade_is_minimum) == (grade, minimum)


@pytest.mark.parametrize(
    ("temp", "changes", "grade", "minimum"),
    [
        (37.2, {}, 0, True),
        (37.2, {"vasopressors": {"count_excluding_vasopressin": 1}}, 0, True),
        (38.3, {}, 1, False),
        (38.3, {"oxygen": {"device": "facemask"}}, 3, False),
    ],
)
def test_premedication_may_mask_fever(temp, changes, grade, minimum):
    """Rule 2a: premedicated and afebrile is 0 'at least' (neither asserted nor excluded); febrile grades as usual."""
    e = ev(premedication=["corticosteroids", "antipyretic"], vitals={"temperature_c": temp}, **changes)
    assert (e.crs_grade, e.crs_grade_is_minimum) == (grade, minimum)
    if minimum:
        assert any("premedication" in r for r in e.reasons)


@pytest.mark.parametrize(
    ("vitals", "oxygen", "grade", "minimum", "missing"),
    [
        ({"temperature_c": DROP}, {"device": "room_air"}, 0, True, ("vitals.temperature_c",)),
        ({"systolic_bp": DROP}, {"device": "room_air"}, 1, True, ("vitals.systolic_bp",)),
        ({"spo2_percent": DROP}, DROP, 1, True, ("vitals.spo2_percent",)),
        ({"spo2_percent": DROP}, {"device": "room_air"}, 1, True, ("vitals.spo2_percent",)),
        ({"spo2_percent": DROP}, {"device": "nasal_cannula", "flow_l_min": 2}, 2, False, ()),
        ({"spo2_percent": 91}, DROP, 2, True, ("oxygen",)),
        ({"spo2_percent": 92}, DROP, 1, False, ()),
        ({"systolic_bp": DROP, "spo2_percent": DROP}, DROP, 1, True, ("vitals.systolic_bp", "vitals.spo2_percent")),
        ({"systolic_bp": DROP}, {"device": "cpap"}, 4, False, ()),  # any component already 4
    ],
)
def test_missing_data_minimums(vitals, oxygen, grade, minimum, missing):
    """clinical.md 1.5, with the missing fields named."""
    temp = {} if vitals.get("temperature_c") is DROP else {"temperature_c": 38.6}
    e = ev(vitals=temp | vitals, oxygen=oxygen)
    assert (e.crs_grade, e.crs_grade_is_minimum, e.crs_missing) == (grade, minimum, missing)


def test_reported_fever_without_reading_is_at_least_0_and_urgent():
    e = ev(vitals={"temperature_c": DROP}, symptoms=["fever"])
    assert (e.crs_grade, e.crs_grade_is_minimum) == (0, True)
    assert e.urgency.value == "urgent"
    assert "obtain a measured temperature" in e.advice.lower()


def test_temperature_unknown_with_pressor_says_what_it_would_be():
    e = ev(vitals={"temperature_c": DROP}, vasopressors={"count_excluding_vasopressin": 1})
    assert (e.crs_grade, e.crs_grade_is_minimum) == (0, True)
    assert any("would make it grade 3" in r for r in e.reasons)


@pytest.mark.parametrize(
    ("age", "sbp", "hypotensive"),
    [
        (0.01, 59, True), (0.01, 60, False),  # neonate < 60
        (0.5, 69, True), (0.5, 70, False),  # infant < 70
        (1, 71, True), (1, 72, False),  # 70 + 2 x 1
        (2.9, 73, True), (2.9, 74, False),  # floor(2.9) = 2 -> 74
        (5, 79, True), (5, 80, False),
        (9, 87, True), (9, 88, False),
        (10, 89, True), (10, 90, False),  # < 90 from age 10
        (11.9, 89, True), (11.9, 90, False),
        (15, 89, True), (15, 90, False),  # adolescent < 90
        (16, 90, True), (16, 91, False),  # adult <= 90
    ],
)  # fmt: skip
def test_hypotension_threshold_by_age_drives_crs(age, sbp, hypotensive):
    doc = baseline(age=age, neuro=DROP)
    e = ev(doc, vitals={"temperature_c": 38.5, "systolic_bp": sbp, "heart_rate_bpm": 100, "respiratory_rate": 20})
    assert ("hypotension" in e.red_flags) is hypotensive
    assert e.crs_grade == (2 if hypotensive else 1)
    assert e.crs_grade_is_minimum is hypotensive


def test_grade_5_is_never_produced():
    e = ev(
        vitals={"temperature_c": 41},
        vasopressors={"count_excluding_vasopressin": 10, "vasopressin": True},
        oxygen={"device": "mechanical_ventilation"},
    )
    assert e.crs_grade == 4


NC_NO_FLOW = {"oxygen": {"device": "nasal_cannula"}}


@pytest.mark.parametrize(
    ("changes", "grade", "minimum", "missing"),
    [
        ({}, 2, True, ("oxygen.flow_l_min",)),  # 2, could be 3 above 6 L/min
        ({"vasopressors": {"count_excluding_vasopressin": 1}}, 3, False, ()),  # a cannula cannot exceed 3
        ({"vasopressors": {"vasopressin": True}}, 3, False, ()),
        ({"vasopressors": {"count_excluding_vasopressin": 2}}, 4, False, ()),
        # the hypotension component is still open (could need a vasopressor, 3 or 4)
        ({"fluid_responsive_hypotension": False}, 2, True, ("vasopressors", "oxygen.flow_l_min")),
        ({"vitals": {"systolic_bp": DROP}, "vasopressors": {"count_excluding_vasopressin": 1}}, 3, False, ()),
    ],
)
def test_a_minimum_only_when_the_missing_data_could_raise_the_grade(changes, grade, minimum, missing):
    """evaluate.md: is_minimum is "true when missing data could make the grade higher". A nasal
    cannula without a flow is 2 or 3, so beside a vasopressor (3) the grade is exact."""
    vitals = {"temperature_c": 38.5} | changes.pop("vitals", {})
    e = ev(vitals=vitals, **NC_NO_FLOW, **changes)
    assert (e.crs_grade, e.crs_grade_is_minimum, e.crs_missing) == (grade, minimum, missing)


@pytest.mark.parametrize(
    ("changes", "grade", "minimum", "missing"),
    [
        ({}, 0, True, ("vitals.temperature_c",)),  # a reading could still add fever (grade 1)
        ({"oxygen": {"device": "facemask"}}, 3, False, ()),
        (NC_NO_FLOW, 2, True, ("oxygen.flow_l_min",)),  # fever could not raise a 2
    ],
)
def test_masked_with_the_temperature_unknown_names_it_while_it_could_raise_the_grade(changes, grade, minimum, missing):
    e = ev(fever_masked_by="tocilizumab", vitals={"temperature_c": DROP}, **changes)
    assert (e.crs_grade, e.crs_grade_is_minimum, e.crs_missing) == (grade, minimum, missing)
    under_treatment = any("CRS under treatment" in r for r in e.reasons)
    assert under_treatment == (grade == 0)  # clinical.md 8.3 still applies without a reading


def test_premedication_with_findings_says_what_they_would_make_it_once():
    e = ev(premedication=["corticosteroids"], vitals={"temperature_c": 37.2, "spo2_percent": 90})
    assert (e.crs_grade, e.crs_grade_is_minimum) == (0, True)
    would = [r for r in e.reasons if "would make it grade" in r]
    assert would == ["If this is CRS, the hypotension/hypoxia findings would make it grade 2 or more."]
    plain = ev(premedication=["corticosteroids"], vitals={"temperature_c": 37.2})
    assert [r for r in plain.reasons if "would make it grade" in r] == [
        "Temperature 37.2 C is below 38.0 C, but premedication (corticosteroids) in the last 24 h may mask fever: CRS "
        "neither asserted nor excluded; if this is CRS, hypotension or hypoxia would make it grade 2 or more."]
