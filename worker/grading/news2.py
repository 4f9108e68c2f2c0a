"""NEWS2 (Royal College of Physicians 2017), clinical.md section 5.5. Adults >= 16 y only.

Rules:
- Computable only when respiration rate, SpO2, systolic BP, heart rate, temperature and
  `neuro.consciousness` are all present (and age >= 16); otherwise ``None``.
- SpO2 scale 1 only (the check-in has no hypercapnia field).
- Oxygen omitted = air; any device other than ``room_air`` scores 2.
- Consciousness: Alert (``awake`` and no ``confusion`` symptom) scores 0; new confusion or
  V/P/U (awakens_to_voice, awakens_to_tactile, unarousable_or_stupor, coma) score 3.
- The chart prints integer bands (RR 12-20, 21-24, ...). A value between two printed bands
  (RR 20.5, SBP 90.5, temperature 39.05) takes the band farther from normal: the safer reading.
"""

from __future__ import annotations

from dataclasses import dataclass

INF = float("inf")


@dataclass(frozen=True, slots=True)
class Scale:
    """One NEWS2 parameter: the printed normal band and the bands on either side of it.

    ``low``: (printed lower edge, score) from the nearest-to-normal band outwards; a value below
    every edge gets ``low_extreme``. ``high``: (printed upper edge, score), likewise upwards.
    """

    normal_low: float
    normal_high: float
    low: tuple[tuple[float, int], ...]
    low_extreme: int
    high: tuple[tuple[float, int], ...]
    high_extreme: int

    def score(self, value: float) -> int:
        if value < self.normal_low:
            for edge, points in self.low:
                if value >= edge:
                    return points
            return self.low_extreme
        if value > self.normal_high:
            for edge, points in self.high:
                if value <= edge:
                    return points
            return self.high_extreme
        return 0


# RCP 2017 chart (clinical.md 5.5 table).
RESPIRATION = Scale(12, 20, ((9, 1),), 3, ((24, 2),), 3)  # <=8:3  9-11:1  12-20:0  21-24:2  >=25:3
SPO2_SCALE1 = Scale(96, INF, ((94, 1), (92, 2)), 3, (), 0)  # <=91:3  92-93:2  94-95:1  >=96:0
SYSTOLIC = Scale(111, 219, ((101, 1), (91, 2)), 3, (), 3)  # <=90:3  91-100:2  101-110:1  111-219:0  >=220:3
PULSE = Scale(51, 90, ((41, 1),), 3, ((110, 1), (130, 2)), 3)  # <=40:3  41-50:1  51-90:0  91-110:1  111-130:2  >=131:3
TEMPERATURE = Scale(36.1, 38.0, ((35.1, 1),), 3, ((39.0, 1),), 2)  # <=35.0:3  35.1-36.0:1  36.1-38.0:0  38.1-39.0:1  >=39.1:2
OXYGEN_POINTS = 2
CONSCIOUSNESS_POINTS = 3

NEWS2_MIN_AGE = 16
URGENT_AGGREGATE = 5  # 5-6: urgent response
EMERGENCY_AGGREGATE = 7  # >= 7: emergency response


@dataclass(slots=True)
class News2:
    score: int
    single_parameter_3: bool  # "3 in any single parameter": urgent ward-based response


def news2(
    *,
    respiratory_rate: float,
    spo2: float,
    on_oxygen: bool,
    systolic_bp: float,
    heart_rate: float,
    alert: bool,
    temperature_c: float,
) -> News2:
    """Aggregate NEWS2 from complete observations (the caller checks completeness and age)."""
    parts = (
        RESPIRATION.score(respiratory_rate),
        SPO2_SCALE1.score(spo2),
        OXYGEN_POINTS if on_oxygen else 0,
        SYSTOLIC.score(systolic_bp),
        PULSE.score(heart_rate),
        0 if alert else CONSCIOUSNESS_POINTS,
        TEMPERATURE.score(temperature_c),
    )
    return News2(sum(parts), 3 in parts)
