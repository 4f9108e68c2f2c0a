"""The advice sentence of an evaluation: the required wording of clinical.md section 6.

Rules:
- Every advice starts "Provisional grades for clinician review." and says that infection cannot be
  excluded by this assessment; it never says infection was excluded or ruled out.
- CRS grade >= 1: "Findings meet ASTCT criteria for CRS grade N (provisional - assumes findings are
  not due to another cause)" plus the fever/neutropenia pathway.
- No fever, not masked, but hypotension or hypoxaemia: "Does not meet ASTCT fever criterion for
  CRS" plus emergency evaluation for sepsis, adrenal insufficiency, bleeding, pulmonary embolism and
  other causes, and the request to re-enter masking therapy if it was given. With no temperature
  reading, the emergency evaluation is asked for too [safer reading: the finding needs it whatever
  the temperature turns out to be].
- A minimum grade: "At least grade N - missing: <fields>. Obtain <measurement> now."
- Hypothermia, or a fever beyond day 14 after CAR-T: infection becomes the more likely cause
  (clinical.md 6, sepsis); a sepsis screen now.
- ICANS: the grade when it is 1 or more; when it cannot be graded, its floor and what to obtain
  (or, sedated, that it is not assessable).
Pure module: no I/O.
"""

from __future__ import annotations

from functools import lru_cache

from worker.grading.crs import CrsResult
from worker.grading.icans import IcansResult

INFECTION = (
    "Infection cannot be excluded by this assessment; follow your team's fever/neutropenia pathway "
    "(cultures, antibiotics if neutropenic)."
)

EMERGENCY_WORKUP = (
    "Low blood pressure / low oxygen requires emergency evaluation for sepsis, adrenal insufficiency, bleeding, "
    "pulmonary embolism and other causes."
)

# What to obtain for each missing wire-format path.
MEASUREMENTS = {
    "vitals.temperature_c": "a measured temperature",
    "vitals.systolic_bp": "a blood pressure",
    "vitals.spo2_percent": "an SpO2 reading",
    "oxygen.flow_l_min": "the oxygen flow rate",
    "oxygen": "an assessment of the oxygen support needed",
    "fluid_responsive_hypotension": "the response to a fluid bolus",
    "vasopressors": "an urgent review of vasopressor need",
    "neuro": "a neurological assessment (ICE from age 12, CAPD under 12)",
    "neuro.ice_score": "an ICE score",
    "neuro.capd_score": "a CAPD score",
    "neuro.consciousness": "the level of consciousness",
    "neuro.seizure": "a seizure assessment",
    "neuro.motor_weakness": "a motor examination",
    "neuro.cerebral_edema": "an assessment for raised intracranial pressure",
}


@lru_cache(maxsize=256)  # pure, and there are few distinct sets of missing fields
def _obtain(paths: tuple[str, ...]) -> str:
    wanted = list(dict.fromkeys(MEASUREMENTS.get(p, p) for p in paths))
    return ", ".join(wanted[:-1]) + (" and " if len(wanted) > 1 else "") + wanted[-1]


LATE_FEVER_AFTER_DAY = 14  # clinical.md 4.4 / 6: no new CRS after day 14 after CAR-T (Blood Adv 2024)


def infection_pointer(febrile: bool | None, hypothermic: bool, therapy_class: str, generic: str,
                      day: int | None) -> str | None:
    """clinical.md 6 (sepsis): late fever after CAR-T (beyond day 14) or hypothermia shifts the
    probability to infection. The sentence for the advice, or None."""
    if hypothermic:
        return "Hypothermia points to infection rather than CRS: screen for sepsis now."
    if febrile and therapy_class == "car_t" and day is not None and day > LATE_FEVER_AFTER_DAY:
        return (f"Fever on day {day} after {generic}: new CRS is rare after day {LATE_FEVER_AFTER_DAY}, so infection "
                "becomes the more likely cause; screen for sepsis now.")
    return None


def advise(crs: CrsResult, icans: IcansResult, reported_fever_unmeasured: bool, infection: str | None = None) -> str:
    """The advice; ``infection``: the sentence of ``infection_pointer``, if any."""
    parts = ["Provisional grades for clinician review."]
    if crs.grade >= 1:
        parts.append(
            f"Findings meet ASTCT criteria for CRS grade {crs.grade} (provisional - assumes findings are not due "
            "to another cause)."
        )
    elif not crs.masked and (crs.hypotension.grade or crs.hypoxia.grade):
        if crs.febrile is False:
            parts += ["Does not meet ASTCT fever criterion for CRS.", EMERGENCY_WORKUP,
                      "If tocilizumab, steroids or antipyretics were given for CRS, re-enter this information."]
        else:  # no reading yet: the finding needs the work-up whatever the temperature turns out to be
            parts.append(EMERGENCY_WORKUP)
    elif not crs.is_minimum:
        parts.append("CRS grade 0 on the data given.")
    if crs.is_minimum:
        line = f"At least grade {crs.grade}"
        if crs.missing:
            line += f" - missing: {', '.join(crs.missing)}. Obtain {_obtain(crs.missing)} now."
        else:
            line += ": fever may be masked; review the patient for CRS."
        parts.append(line)
    elif reported_fever_unmeasured:
        parts.append("Fever reported without a reading: obtain a measured temperature now.")
    if icans.grade is not None and icans.grade >= 1:
        parts.append(f"ICANS grade {icans.grade} (provisional): neurological review now.")
    elif icans.grade is None and icans.missing:
        parts.append(f"ICANS at least grade {icans.floor} - obtain {_obtain(icans.missing)}.")
    elif icans.grade is None:  # nothing missing, yet not gradable: sedated
        parts.append(f"ICANS at least grade {icans.floor}: not assessable while sedated; reassess the neurological "
                     "state when sedation allows.")
    if infection:
        parts.append(infection)
    parts.append(INFECTION)
    return " ".join(parts)
