"""ASTCT 2019 CRS grade (Lee et al., Biol Blood Marrow Transplant 2019;25:625-638), clinical.md 1.

Rules (clinical.md 1.3-1.5):
- Fever = measured temperature >= 38.0 C (38.0 is fever, 37.9 is not). A reported fever without a
  reading cannot establish grade 1.
- Grade = max(1 if febrile, hypotension component, hypoxia component).
- No fever, no masking, no premedication: not CRS (grade 0), whatever the BP or oxygen need; the
  red flags still fire.
- `fever_masked_by` (tocilizumab, corticosteroids or an antipyretic given after CRS onset): fever
  is not required; the components decide.
- `premedication` (given before any CRS) is not masking, but may mask fever: without a fever the
  grade is 0 with is_minimum (CRS neither asserted nor excluded).
- Temperature unknown and no masking: grade 0 with is_minimum.
- Hypotension component: none 0; hypotension not requiring vasopressors 2 (fluid-responsive: exact;
  refractory to fluids or response unknown: at least 2); one vasopressor with or without vasopressin,
  or vasopressin alone, 3; two or more non-vasopressin vasopressors 4 (vasopressin never counts
  toward "multiple").
- Hypoxia component by device: room air 0; nasal cannula <= 6 L/min and blow-by 2 (low-flow);
  nasal cannula > 6 L/min, high-flow nasal cannula, facemask, non-rebreather, Venturi 3;
  CPAP, BiPAP, mechanical ventilation 4. Nasal cannula without a flow: at least 2. Room air with
  SpO2 <= 91 %: at least 2. No device and no SpO2: unknown.
- is_minimum: missing data could make the grade higher (evaluate.md), i.e. some open component
  (unknown or "at least") could reach above the grade. An open component could reach 4, except a
  nasal cannula without a flow, which is 2 or 3: with a vasopressor (grade 3) it leaves the grade
  exact. Under masking, an unknown temperature could still add fever (grade 1).
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.checkin import CheckIn, Oxygen, Vitals, vitals_of
from worker.grading import news2 as n2
from worker.grading.vitals import AgeBand

FEVER_C = 38.0
LOW_FLOW_MAX_L_MIN = 6.0  # ASTCT: low-flow nasal cannula is <= 6 L/min; > 6 L/min is high-flow
HYPOXAEMIA_BELOW = n2.SPO2_SCALE1.low[-1][0]  # SpO2 < 92, i.e. <= 91 % (NEWS2 scale-1 red band)

# Device -> (component grade, sentence). Nasal cannula depends on flow and is handled apart.
DEVICE_GRADES: dict[str, tuple[int, str]] = {
    "room_air": (0, "On room air: no oxygen requirement."),
    "blow_by": (2, "Blow-by oxygen is low-flow oxygen: CRS grade 2 (ASTCT 2019)."),
    "high_flow_nasal_cannula": (3, "High-flow nasal cannula: CRS grade 3 (ASTCT 2019)."),
    "facemask": (3, "Oxygen by facemask: CRS grade 3 (ASTCT 2019)."),
    "nonrebreather": (3, "Oxygen by non-rebreather mask: CRS grade 3 (ASTCT 2019)."),
    "venturi": (3, "Oxygen by Venturi mask: CRS grade 3 (ASTCT 2019)."),
    "cpap": (4, "CPAP is positive-pressure support: CRS grade 4 (ASTCT 2019)."),
    "bipap": (4, "BiPAP is positive-pressure support: CRS grade 4 (ASTCT 2019)."),
    "mechanical_ventilation": (4, "Mechanical ventilation is positive-pressure support: CRS grade 4 (ASTCT 2019)."),
}
MASKING_NAMES = {"tocilizumab": "tocilizumab", "corticosteroids": "corticosteroids", "antipyretic": "an antipyretic"}


@dataclass(slots=True)
class Component:
    """One CRS component: the grade the data prove, and whether it could be higher."""

    grade: int
    open: bool  # unknown or "at least"
    missing: tuple[str, ...]
    reason: str | None
    highest: int = 4  # the most it could be, when open

    @property
    def ceiling(self) -> int:
        return self.highest if self.open else self.grade


@dataclass(slots=True)
class CrsResult:
    grade: int
    is_minimum: bool
    missing: tuple[str, ...]
    reasons: tuple[str, ...]
    febrile: bool | None  # None: temperature unknown
    masked: bool
    hypotension: Component
    hypoxia: Component


def hypotension_component(checkin: CheckIn, sbp_limit: float, band: AgeBand) -> Component:
    return _hypotension(checkin, vitals_of(checkin).systolic_bp, sbp_limit, band)


def _hypotension(checkin: CheckIn, sbp: float | None, sbp_limit: float, band: AgeBand) -> Component:
    """hypotension_component, given the systolic BP (evaluate reads the vitals once)."""
    pressors = checkin.vasopressors
    count = (pressors.count_excluding_vasopressin or 0) if pressors else 0
    vasopressin = bool(pressors and pressors.vasopressin)
    if count >= 2:
        text = f"{count} vasopressors (excluding vasopressin): CRS grade 4 (ASTCT 2019)."
        return Component(4, False, (), text)
    if count == 1:
        extra = " plus vasopressin (not counted toward multiple)" if vasopressin else ""
        return Component(3, False, (), f"One vasopressor{extra}: CRS grade 3 (ASTCT 2019).")
    if vasopressin:
        return Component(3, False, (), "Vasopressin alone is a vasopressor: CRS grade 3 (ASTCT 2019).")
    fluid = checkin.fluid_responsive_hypotension
    if fluid is True:
        return Component(2, False, (), "Hypotension that responded to fluids, no vasopressor: CRS grade 2 (ASTCT 2019).")
    if fluid is False:
        return Component(
            2, True, ("vasopressors",),
            "Hypotension refractory to fluids without a vasopressor yet: CRS at least grade 2 (a vasopressor may be needed).",
        )  # fmt: skip
    if sbp is None:
        return Component(0, True, ("vitals.systolic_bp",), "Blood pressure not recorded: the hypotension component is unknown.")
    if sbp < sbp_limit:
        return Component(
            2, True, ("fluid_responsive_hypotension",),
            f"Systolic BP {sbp:g} mmHg is hypotension for {band.label} (below {sbp_limit:g}) with no "
            "treatment recorded: CRS at least grade 2 (vasopressor need unknown).",
        )  # fmt: skip
    return Component(0, False, (), None)


def hypoxia_component(checkin: CheckIn) -> Component:
    return _hypoxia(checkin.oxygen, vitals_of(checkin).spo2_percent)


def _hypoxia(oxygen: Oxygen | None, spo2: float | None) -> Component:
    """hypoxia_component, given the oxygen support and the SpO2 (evaluate reads the vitals once)."""
    device = oxygen.device if oxygen else None
    if device == "nasal_cannula":
        flow = oxygen.flow_l_min
        if flow is None:
            return Component(
                2, True, ("oxygen.flow_l_min",),
                "Nasal cannula without a recorded flow: CRS at least grade 2 (above 6 L/min would be grade 3).", 3,
            )  # fmt: skip
        if flow <= LOW_FLOW_MAX_L_MIN:
            return Component(2, False, (), f"Nasal cannula at {flow:g} L/min is low-flow (<= 6 L/min): CRS grade 2 (ASTCT 2019).")
        return Component(3, False, (), f"Nasal cannula at {flow:g} L/min is high-flow (> 6 L/min): CRS grade 3 (ASTCT 2019).")
    if device is not None and device != "room_air":
        grade, text = DEVICE_GRADES[device]
        return Component(grade, False, (), text)
    # Room air, recorded or implied (oxygen omitted = room air).
    if spo2 is None:
        return Component(0, True, ("vitals.spo2_percent",), "SpO2 not recorded and no oxygen device: the hypoxia component is unknown.")
    if spo2 < HYPOXAEMIA_BELOW:
        return Component(
            2, True, ("oxygen",),
            f"SpO2 {spo2:g} % on room air (below 92 %) with no oxygen given yet: CRS at least grade 2 "
            "(the oxygen device needed is unknown).",
        )  # fmt: skip
    return Component(0, False, (), None)


def grade_crs(checkin: CheckIn, band: AgeBand, age_years: float | None) -> CrsResult:
    """ASTCT 2019 CRS grade with the missing-data rules of clinical.md 1.5."""
    return crs_of(checkin, vitals_of(checkin), band, band.hypotension_limit(age_years))


def crs_of(checkin: CheckIn, v: Vitals, band: AgeBand, sbp_limit: float) -> CrsResult:
    """grade_crs for a caller that already has the vitals and the band's hypotension limit (evaluate)."""
    temp = v.temperature_c
    hypo = _hypotension(checkin, v.systolic_bp, sbp_limit, band)
    oxy = _hypoxia(checkin.oxygen, v.spo2_percent)
    masked_by = checkin.fever_masked_by
    masked = masked_by is not None
    febrile = None if temp is None else temp >= FEVER_C
    reasons: list[str] = []

    if masked:
        what = MASKING_NAMES[masked_by]
        reasons.append(
            f"Fever may be masked by {what} given after CRS onset: fever is not required and hypotension "
            "and hypoxia decide the grade (ASTCT 2019)."
        )
    elif febrile is None:
        reasons.append("No measured temperature: CRS can be neither asserted nor excluded (at least grade 0).")
    elif not febrile:
        if checkin.premedication:
            meds = " and ".join(checkin.premedication)
            # the findings' own sentence (below) says what they would make it, when there are any
            tail = ("." if max(hypo.grade, oxy.grade)
                    else "; if this is CRS, hypotension or hypoxia would make it grade 2 or more.")
            reasons.append(
                f"Temperature {temp} C is below 38.0 C, but premedication ({meds}) in the last 24 h may mask "
                f"fever: CRS neither asserted nor excluded{tail}"
            )
        else:
            reasons.append(f"Temperature {temp} C is below the ASTCT fever criterion (38.0 C): not CRS by ASTCT 2019.")
    if febrile:
        reasons.append(f"Temperature {temp} C meets the ASTCT fever criterion (>= 38.0 C): CRS grade 1 or more.")

    # The two components written out (hypotension, then hypoxia): this runs for every check-in.
    if masked or febrile:
        grade = max(1 if febrile else 0, hypo.grade, oxy.grade)
        if hypo.reason:
            reasons.append(hypo.reason)
        if oxy.reason:
            reasons.append(oxy.reason)
        fever = _UNKNOWN_FEVER if febrile is None else _NO_MORE  # masked: a reading could still add fever
        is_minimum = grade < max(hypo.ceiling, oxy.ceiling, fever.ceiling)
        missing = _open_missing(grade, fever, hypo, oxy)
        if masked and grade == 0 and max(hypo.ceiling, oxy.ceiling) == 0:
            # clinical.md 8.3: resolved CRS or ongoing grade 1 is the clinician's call.
            is_minimum = True
            reasons.append(
                "CRS under treatment with no current hypotension or hypoxia: the grade is left to the clinician."
            )
    else:
        grade = 0
        is_minimum = febrile is None or bool(checkin.premedication)
        missing = ("vitals.temperature_c",) if febrile is None else ()
        if is_minimum:
            missing += _open_missing(grade, hypo, oxy)
            if (would_be := max(hypo.grade, oxy.grade)) > 0:
                reasons.append(f"If this is CRS, the hypotension/hypoxia findings would make it grade {would_be} or more.")
    return CrsResult(grade, is_minimum, missing, tuple(reasons), febrile, masked, hypo, oxy)


# The fever term of a masked check-in: an unknown temperature could still be a fever (grade 1).
_UNKNOWN_FEVER = Component(0, True, ("vitals.temperature_c",), None, 1)
_NO_MORE = Component(0, False, (), None)


def _open_missing(grade: int, *components: Component) -> tuple[str, ...]:
    """The missing paths of the components that could raise ``grade``, in the order given."""
    return tuple(p for c in components if c.ceiling > grade for p in c.missing)
