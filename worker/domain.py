"""Vocabulary shared by every layer: urgencies, red flags and their tiers, patient context.

Pure module: no I/O. Sources are in ../shared/spec/clinical.md (section numbers below).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import Enum


class Urgency(str, Enum):
    """Ordered from least to most urgent (evaluate.md, "Urgency")."""

    NONE = "none"
    ROUTINE = "routine"
    URGENT = "urgent"
    EMERGENCY = "emergency"

    @property
    def rank(self) -> int:
        return URGENCY_RANK[self]


URGENCY_RANK: dict[Urgency, int] = {u: i for i, u in enumerate(Urgency)}  # NONE 0 ... EMERGENCY 3


class Tier(str, Enum):
    """Red-flag tiers, clinical.md section 5.2."""

    EMERGENCY = "emergency"
    URGENT = "urgent"


# clinical.md 5.2 (tiers) and 5.3 (vocabulary): exactly 27 codes.
RED_FLAG_TIERS: dict[str, Tier] = {
    **{
        code: Tier.EMERGENCY
        for code in (
            "hypotension",
            "hypoxemia",
            "respiratory_distress",
            "altered_consciousness",
            "seizure",
            "focal_weakness",
            "cerebral_edema",
            "syncope",
            "chest_pain",
            "bleeding",
            "skin_discoloration",
            "bradycardia",
            "bradypnea",
            "hypothermia",
            "news2_emergency",
        )
    },
    **{
        code: Tier.URGENT
        for code in (
            "high_fever",
            "tachycardia",
            "tachypnea",
            "confusion",
            "aphasia",
            "hallucinations",
            "encephalopathy",
            "dizziness",
            "abdominal_pain",
            "leg_swelling",
            "supplemental_oxygen",
            "news2_urgent",
        )
    },
}
RED_FLAGS: frozenset[str] = frozenset(RED_FLAG_TIERS)
EMERGENCY_FLAGS: frozenset[str] = frozenset(c for c, t in RED_FLAG_TIERS.items() if t is Tier.EMERGENCY)


@dataclass(frozen=True, slots=True)
class PatientContext:
    """What the enrollment knows about a patient; fills gaps in a check-in (never overrides it)."""

    age_years: float | None = None
    therapy: str | None = None
    therapy_start: dt.date | None = None
