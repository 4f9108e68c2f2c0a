"""Check-in builders for tests: a complete, normal baseline that each test changes one thing in."""

from __future__ import annotations

import copy
from typing import Any

from worker.checkin import parse_checkin
from worker.domain import PatientContext
from worker.evaluation import Evaluation, evaluate

DROP = object()  # use as a value to remove a key from the baseline

NORMAL_NEURO = {
    "ice_score": 10,
    "consciousness": "awake",
    "seizure": "none",
    "motor_weakness": "none",
    "cerebral_edema": "none",
}


def baseline(age: float = 45, **overrides: Any) -> dict[str, Any]:
    """A normal adult (or child, by age) check-in: every vital normal for an adult, neuro complete."""
    doc: dict[str, Any] = {
        "checkin_id": "chk-test",
        "patient_id": "P-test",
        "recorded_at": "2026-11-20T08:00:00Z",
        "age_years": age,
        "therapy": "axicabtagene ciloleucel",
        "therapy_start": "2026-11-16",
        "vitals": {
            "temperature_c": 37.0,
            "heart_rate_bpm": 80,
            "respiratory_rate": 16,
            "systolic_bp": 120,
            "diastolic_bp": 75,
            "spo2_percent": 97,
        },
        "oxygen": {"device": "room_air"},
        "vasopressors": {"count_excluding_vasopressin": 0, "vasopressin": False},
        "neuro": dict(NORMAL_NEURO),
    }
    return merge(doc, overrides)


def merge(doc: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overrides`` into a copy of ``doc``; nested dicts merge, DROP removes a key."""
    out = copy.deepcopy(doc)
    for key, value in overrides.items():
        if value is DROP:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def ev(doc: dict[str, Any] | None = None, context: PatientContext | None = None, **overrides: Any) -> Evaluation:
    """Evaluate ``doc`` (default: the baseline) with ``overrides`` merged in."""
    return evaluate(parse_checkin(merge(doc if doc is not None else baseline(), overrides)), context)
