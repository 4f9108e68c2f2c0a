"""Red flags, clinical.md sections 5.3 (trigger rules) and 5.4 (age-band thresholds).

Every code returned is in worker.domain.RED_FLAGS; each comes with one sentence naming its rule.
Care-team symptoms (chills, headache, fatigue, tremor, rash, nausea, vomiting, diarrhoea, body pain,
cough, loss of appetite, malaise) are not red flags.
"""

from __future__ import annotations

from worker.checkin import CheckIn, Vitals, vitals_of
from worker.grading import news2 as n2
from worker.grading.vitals import AgeBand

HIGH_FEVER_ABOVE = n2.TEMPERATURE.high[-1][0]  # > 39.0, i.e. >= 39.1 C (NEWS2 2-point band)
HYPOTHERMIA_BELOW = n2.TEMPERATURE.low[-1][0]  # < 35.1, i.e. <= 35.0 C (NEWS2 3-point band)
HYPOXAEMIA_BELOW = n2.SPO2_SCALE1.low[-1][0]  # < 92, i.e. <= 91 %
ENCEPHALOPATHY_ICE_MAX = 9
ICE_FROM_AGE = 12
POSITIVE_PRESSURE = frozenset({"cpap", "bipap", "mechanical_ventilation"})
DEPRESSED_CONSCIOUSNESS = frozenset({"awakens_to_voice", "awakens_to_tactile", "unarousable_or_stupor", "coma"})

# Symptom -> (flag, sentence): flags raised by a symptom alone.
SYMPTOM_FLAGS: dict[str, tuple[str, str]] = {
    "rapid_heartbeat": ("tachycardia", "Rapid heartbeat reported: tachycardia red flag."),
    "rapid_breathing": ("tachypnea", "Rapid breathing reported: tachypnoea red flag."),
    "difficulty_breathing": ("respiratory_distress", "Difficulty breathing reported: respiratory distress red flag."),
    "sleepiness": ("altered_consciousness", "Sleepiness reported: altered consciousness red flag."),
    "confusion": ("confusion", "Confusion reported: confusion red flag."),
    "difficulty_speaking": ("aphasia", "Difficulty speaking reported: aphasia red flag."),
    "hallucinations": ("hallucinations", "Hallucinations reported: hallucinations red flag."),
    "seizure": ("seizure", "Seizure reported: seizure red flag."),
    "fainting": ("syncope", "Fainting reported: syncope red flag."),
    "dizziness": ("dizziness", "Dizziness reported: dizziness red flag."),
    "chest_pain": ("chest_pain", "Chest pain reported: chest pain red flag."),
    "stomach_pain": ("abdominal_pain", "Stomach pain reported: abdominal pain red flag."),
    "leg_swelling": ("leg_swelling", "Leg swelling reported: leg swelling red flag."),
    "bleeding": ("bleeding", "Bleeding reported: bleeding red flag."),
    "skin_discoloration": ("skin_discoloration", "Skin discoloration reported: skin discoloration red flag."),
}


def red_flags(
    checkin: CheckIn, band: AgeBand, age_years: float | None, sbp_limit: float, news2_score: int | None
) -> dict[str, str]:
    """Red flag code -> the sentence that explains it (first trigger wins the sentence)."""
    return red_flags_of(checkin, vitals_of(checkin), band, age_years, sbp_limit, news2_score)


def red_flags_of(
    checkin: CheckIn, v: Vitals, band: AgeBand, age_years: float | None, sbp_limit: float, news2_score: int | None
) -> dict[str, str]:
    """red_flags for a caller that already has the check-in's vitals (evaluate)."""
    flags: dict[str, str] = {}
    temp, hr, rr, sbp, spo2 = v.temperature_c, v.heart_rate_bpm, v.respiratory_rate, v.systolic_bp, v.spo2_percent

    if temp is not None:
        if temp > HIGH_FEVER_ABOVE:
            flags["high_fever"] = f"Temperature {temp} C is above 39.0 C: high fever red flag (NEWS2 2-point band, >= 39.1 C)."
        elif temp < HYPOTHERMIA_BELOW:
            flags["hypothermia"] = f"Temperature {temp} C is below 35.1 C: hypothermia red flag (NEWS2 3-point band, <= 35.0 C)."
    if hr is not None:
        if hr > band.tachycardia_above:
            flags["tachycardia"] = f"Heart rate {hr:g}/min is above the limit for {band.label}: tachycardia red flag."
        elif hr < band.bradycardia_below:
            flags["bradycardia"] = f"Heart rate {hr:g}/min is below the limit for {band.label}: bradycardia red flag."
    if rr is not None:
        if rr > band.tachypnea_above:
            flags["tachypnea"] = f"Respiratory rate {rr:g}/min is above the limit for {band.label}: tachypnoea red flag."
        elif band.bradypnea_below is not None and rr < band.bradypnea_below:
            flags["bradypnea"] = f"Respiratory rate {rr:g}/min is below 9/min: bradypnoea red flag (NEWS2 3-point band, <= 8/min)."
    if sbp is not None and sbp < sbp_limit:
        flags["hypotension"] = f"Systolic BP {sbp:g} mmHg is below {sbp_limit:g} for {band.label}: hypotension red flag."
    pressors = checkin.vasopressors
    if "hypotension" not in flags:
        if pressors and (pressors.count_excluding_vasopressin or pressors.vasopressin):
            flags["hypotension"] = "On vasopressor support: hypotension red flag."
        elif checkin.fluid_responsive_hypotension is not None:
            flags["hypotension"] = "A hypotensive episode was documented: hypotension red flag."
    if spo2 is not None and spo2 < HYPOXAEMIA_BELOW:
        flags["hypoxemia"] = f"SpO2 {spo2:g} % is below 92 %: hypoxaemia red flag (<= 91 %)."
    device = checkin.oxygen.device if checkin.oxygen else None
    if device is not None and device != "room_air":
        flags["supplemental_oxygen"] = f"On supplemental oxygen ({device.replace('_', ' ')}): supplemental oxygen red flag."
        if device in POSITIVE_PRESSURE:
            flags["respiratory_distress"] = "On positive-pressure support: respiratory distress red flag."

    neuro = checkin.neuro
    if neuro is not None:
        if neuro.consciousness in DEPRESSED_CONSCIOUSNESS:
            level = neuro.consciousness.replace("_", " ")
            flags["altered_consciousness"] = f"Level of consciousness '{level}': altered consciousness red flag."
        if neuro.seizure is not None and neuro.seizure != "none":
            flags["seizure"] = "Seizure on the neurological assessment: seizure red flag."
        if neuro.motor_weakness == "deep_focal":
            flags["focal_weakness"] = "Deep focal motor weakness: focal weakness red flag."
        if neuro.cerebral_edema is not None and neuro.cerebral_edema != "none":
            flags["cerebral_edema"] = "Cerebral oedema or raised-ICP sign: cerebral oedema red flag."
        ice = neuro.ice_score
        if ice is not None and ice <= ENCEPHALOPATHY_ICE_MAX and (age_years is None or age_years >= ICE_FROM_AGE):
            flags["encephalopathy"] = f"ICE {ice}/10 (<= 9): encephalopathy red flag."

    for symptom in checkin.symptoms or ():
        hit = SYMPTOM_FLAGS.get(symptom)
        if hit and hit[0] not in flags:
            flags[hit[0]] = hit[1]

    if news2_score is not None:
        if news2_score >= n2.EMERGENCY_AGGREGATE:
            flags["news2_emergency"] = f"NEWS2 {news2_score} (>= 7): emergency response (RCP 2017)."
        elif news2_score >= n2.URGENT_AGGREGATE:
            flags["news2_urgent"] = f"NEWS2 {news2_score} (5-6): urgent response (RCP 2017)."
    return flags
