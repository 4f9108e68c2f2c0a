"""ASTCT 2019 ICANS grading, clinical.md section 2: ICE/CAPD bands, domains, missing data, sedation."""

import pytest

from tests.factories import DROP, NORMAL_NEURO, baseline, ev


def icans(age=45, symptoms=None, **neuro):
    doc = baseline(age=age, neuro={**NORMAL_NEURO, **neuro})
    if age < 12:
        doc["neuro"].pop("ice_score", None)
    if symptoms:
        doc["symptoms"] = symptoms
    for key in [k for k, v in neuro.items() if v is DROP]:
        doc["neuro"].pop(key, None)
    e = ev(doc)
    return e.icans_grade, e.icans_floor


@pytest.mark.parametrize(
    ("ice", "grade"), [(10, 0), (9, 1), (8, 1), (7, 1), (6, 2), (5, 2), (3, 2), (2, 3), (1, 3), (0, 3)]
)
def test_ice_bands(ice, grade):
    assert icans(ice_score=ice) == (grade, grade)


def test_ice_0_unarousable_is_grade_4_but_awake_aphasic_is_3():
    assert icans(ice_score=0, consciousness="unarousable_or_stupor") == (4, 4)
    assert icans(ice_score=0, consciousness="awake") == (3, 3)


@pytest.mark.parametrize(
    ("field", "value", "grade"),
    [
        ("consciousness", "awake", 0),
        ("consciousness", "awakens_to_voice", 2),
        ("consciousness", "awakens_to_tactile", 3),
        ("consciousness", "unarousable_or_stupor", 4),
        ("consciousness", "coma", 4),
        ("seizure", "focal_or_generalized_resolving", 3),
        ("seizure", "nonconvulsive_on_eeg_resolving", 3),
        ("seizure", "prolonged_or_repetitive", 4),
        ("motor_weakness", "deep_focal", 4),
        ("cerebral_edema", "focal_local", 3),
        ("cerebral_edema", "diffuse_or_posturing_or_cn6_or_papilledema_or_cushing", 4),
    ],
)
def test_domain_grades(field, value, grade):
    assert icans(**{field: value}) == (grade, grade)


def test_worst_domain_decides_worked_example():
    """Lee 2019: ICE 3 with a generalized seizure = grade 3."""
    assert icans(ice_score=3, seizure="focal_or_generalized_resolving") == (3, 3)


def test_tremor_does_not_count():
    assert icans(symptoms=["tremor"]) == (0, 0)


@pytest.mark.parametrize(
    ("capd", "consciousness", "grade"),
    [(0, "awake", 0), (1, "awake", 1), (8, "awake", 1), (9, "awake", 3), (32, "awake", 3), (5, "awakens_to_voice", 2)],
)
def test_capd_bands_under_12(capd, consciousness, grade):
    assert icans(age=8, capd_score=capd, consciousness=consciousness) == (grade, grade)


@pytest.mark.parametrize(
    ("age", "ice", "capd", "expected"),
    [
        (11.99, 8, DROP, (None, 0)),  # ICE is not used under 12: no CAPD -> null
        (11.99, 8, 0, (0, 0)),  # CAPD decides, ICE ignored
        (12, 8, DROP, (1, 1)),  # exactly 12: ICE applies
        (12, DROP, 10, (3, 3)),  # >= 12 without ICE: CAPD (developmental delay) is used
        (12, 9, 10, (3, 3)),  # both: the worse
        (30, DROP, DROP, (None, 0)),
    ],
)
def test_ice_from_12_capd_below(age, ice, capd, expected):
    doc = baseline(age=age, neuro={**NORMAL_NEURO, "ice_score": ice, "capd_score": capd})
    e = ev(doc)
    assert (e.icans_grade, e.icans_floor) == expected


@pytest.mark.parametrize(
    ("neuro", "expected"),
    [
        ({"consciousness": "awakens_to_voice"}, (None, 2)),  # v064: CAPD >= 9 would make it 3
        ({"seizure": "focal_or_generalized_resolving"}, (3, 3)),  # CAPD cannot exceed 3 while arousable
        ({"consciousness": "unarousable_or_stupor"}, (4, 4)),
        ({"cerebral_edema": "diffuse_or_posturing_or_cn6_or_papilledema_or_cushing"}, (4, 4)),
        ({}, (None, 0)),
    ],
)
def test_child_without_capd_is_graded_only_when_another_domain_fixes_it(neuro, expected):
    assert icans(age=9, **neuro) == expected


@pytest.mark.parametrize("domain", ["consciousness", "seizure", "motor_weakness", "cerebral_edema", "ice_score"])
def test_a_missing_domain_makes_the_grade_null_with_a_floor(domain):
    grade, floor = icans(**{domain: DROP}, **({"ice_score": 6} if domain != "ice_score" else {}))
    assert grade is None
    assert floor == (2 if domain != "ice_score" else 0)


def test_missing_ice_with_a_grade_3_finding_and_known_consciousness_is_exact():
    """ICE can add at most grade 3; consciousness is known, so a seizure already fixes grade 3."""
    assert icans(ice_score=DROP, seizure="focal_or_generalized_resolving") == (3, 3)


def test_missing_seizure_domain_with_grade_4_elsewhere_is_exact():
    assert icans(seizure=DROP, motor_weakness="deep_focal") == (4, 4)


def test_not_assessed_without_neuro():
    e = ev(neuro=DROP)
    assert (e.icans_grade, e.icans_floor) == (None, 0)
    assert any("not assessed" in r for r in e.reasons)


def test_sedated_is_not_assessable_unless_a_domain_proves_4():
    assert icans(sedated=True) == (None, 0)
    assert icans(sedated=True, seizure="focal_or_generalized_resolving") == (None, 3)
    assert icans(sedated=True, cerebral_edema="diffuse_or_posturing_or_cn6_or_papilledema_or_cushing") == (4, 4)
    assert icans(sedated=False) == (0, 0)


def test_reported_seizure_proves_at_least_3():
    assert icans(symptoms=["seizure"]) == (3, 3)
    e = ev(neuro=DROP, symptoms=["seizure"])
    assert (e.icans_grade, e.icans_floor, e.urgency.value) == (None, 3, "emergency")


def test_the_reasons_state_the_floor_when_icans_is_not_assessed_and_read_right_under_sedation():
    """clinical.md 0.3: for a null grade the rationale states the floor ("at least N")."""
    none = ev(neuro=DROP)
    assert (none.icans_grade, none.icans_floor) == (None, 0)
    assert "ICANS not assessed: no neurological assessment in this check-in (at least grade 0)." in none.reasons
    sedated = ev(neuro={"consciousness": "awake", "seizure": "none", "motor_weakness": "none",
                        "cerebral_edema": "focal_local", "sedated": True})  # fmt: skip
    assert (sedated.icans_grade, sedated.icans_floor) == (None, 3)
    assert "ICANS at least grade 3; not gradable while sedated." in sedated.reasons
    assert "ICANS at least grade 3: not assessable while sedated" in sedated.advice
    partial = ev(neuro={"sedated": True, "motor_weakness": DROP})
    assert any(r.startswith("ICANS at least grade 0; not gradable without neuro.motor_weakness") and r.endswith(
        "and while sedated.") for r in partial.reasons), partial.reasons
