"""ASTCT 2019 ICANS grade (Lee et al. 2019), clinical.md section 2.

Rules:
- Grade = the most severe domain: cognition (ICE from age 12, CAPD under 12), depressed level of
  consciousness, seizure, motor findings, raised ICP / cerebral oedema.
- ICE 10 -> 0, 7-9 -> 1, 3-6 -> 2, 0-2 -> 3 (ICE 0 because unarousable is grade 4 through the
  consciousness domain). CAPD 0 -> 0, 1-8 -> 1, >= 9 -> 3.
- Consciousness: awake 0 (grade 1 needs ICE 7-9), awakens to voice 2, to tactile stimulus 3,
  unarousable / stupor / coma 4. Seizure: resolving clinical or EEG seizure 3, prolonged or
  repetitive 4. Deep focal motor weakness 4. Focal oedema 3; diffuse oedema, posturing, CN VI
  palsy, papilloedema or Cushing's triad 4. Tremor and myoclonus do not count.
- An unknown domain could raise the grade: cognition up to 3 (grade 4 needs unarousability, which
  is the consciousness domain), every other domain up to 4. If an unknown domain could make the
  grade higher than the known domains prove, the grade is null and ``floor`` carries what is proven.
- `neuro.sedated`: consciousness and cognition cannot be attributed, so they count as unknown.
- No `neuro` object: ICANS not assessed (null, floor 0).
- A seizure reported as a symptom proves at least grade 3 in the seizure domain [design: safer].
- Age >= 12 or unknown: ICE, else CAPD (developmental delay); both present: the worse. Under 12:
  CAPD only (ICE is not validated there).
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.checkin import CheckIn

ICE_FROM_AGE = 12
COGNITION_MAX = 3
OTHER_MAX = 4

CONSCIOUSNESS = {
    "awake": (0, ""),
    "awakens_to_voice": (2, "Awakens only to voice: ICANS grade 2 (depressed level of consciousness, ASTCT 2019)."),
    "awakens_to_tactile": (3, "Awakens only to tactile stimulus: ICANS grade 3 (ASTCT 2019)."),
    "unarousable_or_stupor": (4, "Unarousable or stuporous: ICANS grade 4 (ASTCT 2019)."),
    "coma": (4, "Coma: ICANS grade 4 (ASTCT 2019)."),
}
SEIZURE = {
    "none": (0, ""),
    "focal_or_generalized_resolving": (3, "Clinical seizure that resolved rapidly: ICANS grade 3 (ASTCT 2019)."),
    "nonconvulsive_on_eeg_resolving": (3, "Non-convulsive seizure on EEG resolving with intervention: ICANS grade 3 (ASTCT 2019)."),
    "prolonged_or_repetitive": (4, "Prolonged (> 5 min) or repetitive seizures: ICANS grade 4 (ASTCT 2019)."),
}
MOTOR = {
    "none": (0, ""),
    "deep_focal": (4, "Deep focal motor weakness (hemiparesis or paraparesis): ICANS grade 4 (ASTCT 2019)."),
}
EDEMA = {
    "none": (0, ""),
    "focal_local": (3, "Focal/local cerebral oedema on neuroimaging: ICANS grade 3 (ASTCT 2019)."),
    "diffuse_or_posturing_or_cn6_or_papilledema_or_cushing": (
        4,
        "Diffuse cerebral oedema, posturing, CN VI palsy, papilloedema or Cushing's triad: ICANS grade 4 (ASTCT 2019).",
    ),
}


def ice_grade(score: int) -> int:
    return 0 if score >= 10 else 1 if score >= 7 else 2 if score >= 3 else 3


def capd_grade(score: int) -> int:
    return 0 if score == 0 else 1 if score <= 8 else 3


@dataclass(slots=True)
class IcansResult:
    grade: int | None
    floor: int
    missing: tuple[str, ...]
    reasons: tuple[str, ...]


# A domain is (floor, ceiling, missing path or None). The tables above as value -> (domain,
# sentence or ""), with None (not assessed: floor 0, could be up to OTHER_MAX) included, so that
# grade_icans does one lookup per domain and builds no tuples.
def _domains(table: dict[str, tuple[int, str]], path: str) -> dict[str | None, tuple[tuple[int, int, str | None], str]]:
    out: dict[str | None, tuple[tuple[int, int, str | None], str]] = {None: ((0, OTHER_MAX, path), "")}
    for value, (grade, text) in table.items():
        out[value] = ((grade, grade, None), text if grade else "")
    return out


_CONSCIOUSNESS = _domains(CONSCIOUSNESS, "neuro.consciousness")
_SEIZURE = _domains(SEIZURE, "neuro.seizure")
_MOTOR = _domains(MOTOR, "neuro.motor_weakness")
_EDEMA = _domains(EDEMA, "neuro.cerebral_edema")
_SEDATED = (0, COGNITION_MAX, None), (0, OTHER_MAX, None)  # cognition, consciousness
_KNOWN = tuple((grade, grade, None) for grade in range(OTHER_MAX + 1))  # a proven grade: floor = ceiling


def _cognition(neuro, age_years: float | None, reasons: list[str]) -> tuple[int, int, str | None]:
    """(floor, ceiling, missing path) of the ICE/CAPD domain."""
    ice, capd = neuro.ice_score, neuro.capd_score
    child = age_years is not None and age_years < ICE_FROM_AGE
    if child:
        if ice is not None:
            reasons.append("ICE is not used under 12 years (ASTCT 2019): the CAPD score grades cognition.")
        if capd is None:
            return 0, COGNITION_MAX, "neuro.capd_score"
        grade, by_ice = capd_grade(capd), False
    elif ice is None:
        if capd is None:
            return 0, COGNITION_MAX, "neuro.ice_score"
        grade, by_ice = capd_grade(capd), False
    else:
        # Both scores: the worse grade; on a tie the ICE score is named.
        grade, by_ice = ice_grade(ice), True
        if capd is not None and capd_grade(capd) > grade:
            grade, by_ice = capd_grade(capd), False
    if grade:
        what = f"ICE {ice}/10" if by_ice else f"CAPD {capd}"
        reasons.append(f"{what}: ICANS grade {grade} (ASTCT 2019 encephalopathy score).")
    return _KNOWN[grade]


def _domain(table: dict, value: str | None, reasons: list[str]) -> tuple[int, int, str | None]:
    """The domain of ``value`` in one of the tables above; its sentence, if any, added to ``reasons``."""
    domain, text = table[value]
    if text:
        reasons.append(text)
    return domain


def grade_icans(checkin: CheckIn, age_years: float | None) -> IcansResult:
    """ASTCT 2019 ICANS grade, or None with a floor when a missing or sedated domain could change it."""
    neuro = checkin.neuro
    reported_seizure = bool(checkin.symptoms) and "seizure" in checkin.symptoms
    reasons: list[str] = []
    if neuro is None:
        floor = 3 if reported_seizure else 0
        reasons.append("ICANS not assessed: no neurological assessment in this check-in"
                       + ("." if reported_seizure else " (at least grade 0)."))
        if reported_seizure:
            reasons.append("A seizure was reported: ICANS at least grade 3 (ASTCT 2019); assess now.")
        return IcansResult(None, floor, ("neuro",), tuple(reasons))

    if neuro.sedated:
        reasons.append(
            "Sedated: depressed consciousness and ICE/CAPD cannot be attributed to ICANS (ASTCT 2019), "
            "so those domains are not assessable."
        )
        cognition, consciousness = _SEDATED
    else:
        cognition = _cognition(neuro, age_years, reasons)
        consciousness = _domain(_CONSCIOUSNESS, neuro.consciousness, reasons)
    seizure = _domain(_SEIZURE, neuro.seizure, reasons)
    if reported_seizure and seizure[0] < 3:
        reasons.append("A seizure was reported: ICANS at least grade 3 (ASTCT 2019).")
        seizure = (3, max(seizure[1], 3), seizure[2])
    motor = _domain(_MOTOR, neuro.motor_weakness, reasons)
    edema = _domain(_EDEMA, neuro.cerebral_edema, reasons)

    floor = max(cognition[0], consciousness[0], seizure[0], motor[0], edema[0])
    ceiling = max(cognition[1], consciousness[1], seizure[1], motor[1], edema[1])
    if ceiling == floor:
        return IcansResult(floor, floor, (), tuple(reasons))
    domains = (cognition, consciousness, seizure, motor, edema)
    missing = tuple(d[2] for d in domains if d[2] and d[1] > floor)
    if missing:
        why = f"without {', '.join(missing)}" + (" and while sedated" if neuro.sedated else "")
    else:
        why = "while sedated"
    reasons.append(f"ICANS at least grade {floor}; not gradable {why}.")
    return IcansResult(None, floor, missing, tuple(reasons))

