"""Age bands and their vital-sign red-flag thresholds, clinical.md section 5.4.

Children < 16 y: PALS 2015 edge-of-normal values (PedsCases chart,
https://www.scribd.com/document/508099272/Vital-Signs-Chart-3); PALS hypotension formula
(http://preview-www.nature.com/articles/s41571-018-0075-2/tables/2).
Adults >= 16 y: the NEWS2 single-parameter 3-point ("red") bands, taken from worker.grading.news2
so that an adult flag and a NEWS2 score of 3 can never disagree.

Rules:
- Paediatric thresholds are strict: tachycardia is HR > limit, bradycardia HR < limit, and so on.
- Age in completed years (floor) feeds the PALS formula SBP < 70 + 2 x age (1-9 y); 10-15 y: < 90.
- Neonate = under 28 days (age_years x 365.25 < 28).
- Bradypnoea exists only for adults (RR <= 8); there is no paediatric rule.
- Unknown age: the adult band is used and the reasons say so (enrollment normally supplies age).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass

from worker.grading import news2 as n2


@dataclass(frozen=True, slots=True)
class AgeBand:
    name: str
    label: str
    tachycardia_above: float  # HR > this
    bradycardia_below: float  # HR < this
    tachypnea_above: float  # RR > this
    bradypnea_below: float | None  # RR < this (adults only)
    sbp_below: float | None  # SBP < this; None = PALS formula 70 + 2 x age
    adult: bool = False

    def hypotension_limit(self, age_years: float | None) -> float:
        """SBP strictly below this value is hypotension for this band."""
        if self.sbp_below is not None:
            return self.sbp_below
        return 70 + 2 * math.floor(age_years if age_years is not None else 10)


# The adult band restates the NEWS2 red bands as strict limits; the "gap" rule of news2.py
# (a value between printed integers takes the more severe side) carries over: HR >= 131 is
# written HR > 130, SBP <= 90 is written SBP < 91.
ADULT = AgeBand(
    "adult",
    ">= 16 y (NEWS2 red band)",
    tachycardia_above=n2.PULSE.high[-1][0],  # 130 -> HR >= 131
    bradycardia_below=n2.PULSE.low[-1][0],  # 41 -> HR <= 40
    tachypnea_above=n2.RESPIRATION.high[-1][0],  # 24 -> RR >= 25
    bradypnea_below=n2.RESPIRATION.low[-1][0],  # 9 -> RR <= 8
    sbp_below=n2.SYSTOLIC.low[-1][0],  # 91 -> SBP <= 90
    adult=True,
)

# (minimum age in years, band), youngest first. clinical.md 5.4 table, row by row.
BANDS: tuple[tuple[float, AgeBand], ...] = (
    (0, AgeBand("neonate", "< 28 days (PALS)", 205, 90, 53, None, 60)),
    (28 / 365.25, AgeBand("infant", "1-11 months (PALS)", 190, 90, 53, None, 70)),
    (1, AgeBand("toddler", "1-2 y (PALS)", 140, 80, 37, None, None)),
    (3, AgeBand("preschool", "3-5 y (PALS)", 120, 65, 28, None, None)),
    (6, AgeBand("school", "6-11 y (PALS)", 118, 58, 25, None, None)),
    (10, AgeBand("school", "6-11 y (PALS)", 118, 58, 25, None, 90)),  # PALS: SBP < 90 from age 10
    (12, AgeBand("adolescent", "12-15 y (PALS)", 100, 50, 20, None, 90)),
    (16, ADULT),
)


_MIN_AGES = [min_age for min_age, _ in BANDS]
_ADULT_FROM = BANDS[-1][0]  # the last band is ADULT


def band_for(age_years: float | None) -> AgeBand:
    """The age band of clinical.md 5.4; adult when the age is unknown."""
    if age_years is None or age_years >= _ADULT_FROM:  # most patients: no search needed
        return ADULT
    return BANDS[max(bisect_right(_MIN_AGES, age_years) - 1, 0)][1]
