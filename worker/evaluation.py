"""evaluate(checkin, context) -> Evaluation: the one place the grading modules are combined.

Pure module: no I/O. The contract is ../shared/spec/evaluate.md; the rules are
../shared/spec/clinical.md.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from worker.advice import advise, infection_pointer
from worker.checkin import CheckIn, Vitals, vitals_of
from worker.domain import EMERGENCY_FLAGS, URGENCY_RANK, PatientContext, Urgency
from worker.grading import news2 as n2
from worker.grading import therapy as th
from worker.grading.crs import CrsResult, crs_of
from worker.grading.icans import IcansResult, grade_icans
from worker.grading.red_flags import red_flags_of
from worker.grading.vitals import band_for

_NO_CONTEXT = PatientContext()


@dataclass(frozen=True, slots=True)
class Evaluation:
    """What a check-in means. Grades are provisional decision support, never a diagnosis."""

    checkin_id: str
    patient_id: str
    recorded_at: dt.datetime
    crs_grade: int
    crs_grade_is_minimum: bool
    crs_missing: tuple[str, ...]
    icans_grade: int | None
    icans_floor: int
    red_flags: tuple[str, ...]
    news2: int | None
    urgency: Urgency
    reasons: tuple[str, ...]
    advice: str
    age_years: float | None
    age_band: str | None
    therapy_tier: str
    therapy_class: str
    day_since_therapy: int | None
    in_risk_window: bool | None
    valid: bool = True  # evaluate.md's "valid": an Evaluation is only ever made of a valid check-in

    def as_dict(self) -> dict[str, Any]:
        """The JSON object of evaluate.md (plus the therapy/age context fields). ``orjson.dumps``
        of the Evaluation writes the same object (its fields in their order) without this dict."""
        return {
            "checkin_id": self.checkin_id,
            "patient_id": self.patient_id,
            "valid": True,
            "recorded_at": self.recorded_at.isoformat(),
            "crs_grade": self.crs_grade,
            "crs_grade_is_minimum": self.crs_grade_is_minimum,
            "crs_missing": list(self.crs_missing),
            "icans_grade": self.icans_grade,
            "icans_floor": self.icans_floor,
            "red_flags": list(self.red_flags),
            "news2": self.news2,
            "urgency": self.urgency.value,
            "reasons": list(self.reasons),
            "advice": self.advice,
            "age_years": self.age_years,
            "age_band": self.age_band,
            "therapy_tier": self.therapy_tier,
            "therapy_class": self.therapy_class,
            "day_since_therapy": self.day_since_therapy,
            "in_risk_window": self.in_risk_window,
        }


def evaluate(checkin: CheckIn, context: PatientContext | None = None) -> Evaluation:
    """Grade one check-in. The enrollment context fills age/therapy/start only where the check-in is silent."""
    ctx = context or _NO_CONTEXT
    age = checkin.age_years if checkin.age_years is not None else ctx.age_years
    therapy = th.lookup(checkin.therapy or ctx.therapy)
    start = checkin.therapy_start or ctx.therapy_start
    day = th.day_since(start, checkin.recorded_at)
    window = th.in_window(therapy, day)

    # This is the worker's hot path: the vitals, the band's hypotension limit and the symptoms are
    # read once here and handed to the grading functions.
    band = band_for(age)
    sbp_limit = band.hypotension_limit(age)
    v = vitals_of(checkin)
    symptoms = checkin.symptoms or ()
    crs = crs_of(checkin, v, band, sbp_limit)
    icans = grade_icans(checkin, age)
    news = _news2(checkin, v, age, symptoms)
    news_score = news.score if news else None
    flags = red_flags_of(checkin, v, band, age, sbp_limit, news_score)
    codes = tuple(sorted(flags)) if flags else ()
    reported_fever_unmeasured = "fever" in symptoms and v.temperature_c is None

    reasons = [*crs.reasons, *icans.reasons]
    if codes:
        reasons += [flags[c] for c in codes]
    if news is not None and news.single_parameter_3 and news_score < n2.URGENT_AGGREGATE:
        reasons.append(f"NEWS2 {news_score} with a single parameter scoring 3: urgent ward-based review (RCP 2017).")
    if reported_fever_unmeasured:
        reasons.append("Fever reported without a measured temperature: any fever after immune effector therapy needs a reading now.")
    if age is None:
        reasons.append("Age unknown: adult (>= 16 y) thresholds and NEWS2 were applied; record the age (children have lower limits).")
    if therapy is th.UNKNOWN and (checkin.therapy or ctx.therapy):
        reasons.append("Therapy not in the catalogue (clinical.md 4.7): risk tier unknown.")
    if day is not None and day < 0:
        reasons.append(
            f"Therapy start {start.isoformat()} is after this check-in (day {day}): the at-risk window is not "
            "applied before the infusion/first dose; check the date if the therapy was already given."
        )
    if window and codes:
        reasons.append(
            f"Day {day} after {therapy.generic}, inside the at-risk window: every red flag means immediate contact."
        )

    urgency = _urgency(codes, crs, icans, checkin, news, reported_fever_unmeasured)
    return Evaluation(
        checkin_id=checkin.checkin_id,
        patient_id=checkin.patient_id,
        recorded_at=checkin.recorded_at,
        crs_grade=crs.grade,
        crs_grade_is_minimum=crs.is_minimum,
        crs_missing=crs.missing,
        icans_grade=icans.grade,
        icans_floor=icans.floor,
        red_flags=codes,
        news2=news_score,
        urgency=urgency,
        reasons=tuple(reasons),
        advice=advise(crs, icans, reported_fever_unmeasured, infection_pointer(
            crs.febrile, "hypothermia" in flags, therapy.therapy_class, therapy.generic, day)),
        age_years=age,
        age_band=band.name if age is not None else None,
        therapy_tier=therapy.tier,
        therapy_class=therapy.therapy_class,
        day_since_therapy=day,
        in_risk_window=window,
    )


def _news2(checkin: CheckIn, v: Vitals, age: float | None, symptoms: Collection[str]) -> n2.News2 | None:
    """NEWS2 for age >= 16 (or unknown age, see the reasons) when every parameter is present."""
    if age is not None and age < n2.NEWS2_MIN_AGE:
        return None
    neuro = checkin.neuro
    if neuro is None or neuro.consciousness is None:
        return None
    rr, spo2, sbp, hr, temp = v.respiratory_rate, v.spo2_percent, v.systolic_bp, v.heart_rate_bpm, v.temperature_c
    if rr is None or spo2 is None or sbp is None or hr is None or temp is None:
        return None
    oxygen = checkin.oxygen
    return n2.news2(
        respiratory_rate=rr,
        spo2=spo2,
        on_oxygen=oxygen is not None and oxygen.device != "room_air",
        systolic_bp=sbp,
        heart_rate=hr,
        alert=neuro.consciousness == "awake" and "confusion" not in symptoms,
        temperature_c=temp,
    )


def _urgency(
    codes: tuple[str, ...],
    crs: CrsResult,
    icans: IcansResult,
    checkin: CheckIn,
    news: n2.News2 | None,
    reported_fever_unmeasured: bool,
) -> Urgency:
    """evaluate.md "Urgency".

    - emergency: an EMERGENCY-tier red flag, CRS grade >= 3, or ICANS >= 3 (a proven floor of 3
      counts: an ungradable ICANS that is at least 3 is an emergency).
    - urgent: an URGENT-tier red flag, CRS grade >= 1, a reported fever without a reading, a CRS
      minimum of 2 or more, ICANS 1-2 (or a floor of 1-2), or a NEWS2 single parameter scoring 3.
    - routine: only non-red-flag symptoms reported.
    - none otherwise.
    """
    if crs.grade >= 3 or icans.floor >= 3 or not EMERGENCY_FLAGS.isdisjoint(codes):
        return Urgency.EMERGENCY
    if codes or crs.grade >= 1 or icans.floor >= 1 or reported_fever_unmeasured or (news and news.single_parameter_3):
        return Urgency.URGENT
    if checkin.symptoms:
        return Urgency.ROUTINE
    return Urgency.NONE


@dataclass(frozen=True, slots=True)
class Transition:
    """How a patient's state moved between two evaluations (input to alerting, issue 4)."""

    kinds: tuple[str, ...]  # subset of: first, crs_worse, icans_worse, new_red_flags, urgency_worse
    previous_crs_grade: int | None
    crs_grade: int
    previous_icans_level: int | None
    icans_level: int
    new_red_flags: tuple[str, ...]
    previous_urgency: str | None
    urgency: str

    def as_dict(self) -> dict[str, Any]:
        """transitions.detail. ``orjson.dumps`` of the Transition writes the same object (the
        pipeline stores it so, without this dict)."""
        return {
            "kinds": list(self.kinds),
            "previous_crs_grade": self.previous_crs_grade,
            "crs_grade": self.crs_grade,
            "previous_icans_level": self.previous_icans_level,
            "icans_level": self.icans_level,
            "new_red_flags": list(self.new_red_flags),
            "previous_urgency": self.previous_urgency,
            "urgency": self.urgency,
        }


def compare(previous: Any | None, current: Evaluation) -> Transition | None:
    """What got worse since ``previous`` (anything with crs_grade, icans_grade, icans_floor,
    red_flags, urgency); None when nothing did. The first evaluation of a patient is "first".

    - crs_worse: the CRS grade rose; icans_worse: the ICANS grade (or floor) rose;
    - new_red_flags: a flag not present before; urgency_worse: the urgency rank rose.
    An improvement is never a transition.

    Called once per stored check-in, so it reads each field once and looks urgencies up in a
    dict (``Urgency(value)`` costs several times more); an urgency given as its text works too.
    """
    level = current.icans_grade if current.icans_grade is not None else current.icans_floor
    urgency = _urgency_of(current.urgency)
    if previous is None:
        return Transition(("first",), None, current.crs_grade, None, level, current.red_flags, None, urgency.value)
    kinds = []
    if current.crs_grade > previous.crs_grade:
        kinds.append("crs_worse")
    prev_level = previous.icans_grade if previous.icans_grade is not None else previous.icans_floor
    if level > prev_level:
        kinds.append("icans_worse")
    flags = current.red_flags
    new_flags = tuple(sorted(set(flags).difference(previous.red_flags))) if flags else ()
    if new_flags:
        kinds.append("new_red_flags")
    prev_urgency = _urgency_of(previous.urgency)
    if URGENCY_RANK[urgency] > URGENCY_RANK[prev_urgency]:
        kinds.append("urgency_worse")
    if not kinds:
        return None
    return Transition(
        tuple(kinds), previous.crs_grade, current.crs_grade, prev_level, level, new_flags, prev_urgency.value, urgency.value
    )


def _urgency_of(value: Urgency | str) -> Urgency:
    return value if type(value) is Urgency else Urgency(value)
