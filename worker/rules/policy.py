"""Pure alerting decisions: what an evaluation means for the patient's open alert, inhibition,
silences and quiet hours.

Rules:
- The alert subject is the evaluation plus the patient's unit and labels and the alert condition
  ("clinical" for check-ins, "missed_checkin"); matchers read it.
- One open alert per patient episode and condition. Against it, a new evaluation is:
  * an upgrade (page again with fresh content) when the CRS grade or the ICANS level rises above
    the worst seen on the alert, or an EMERGENCY-tier red flag appears that the alert has not had;
  * otherwise an annotation (recorded, never paged): an improving check-in does not page.
- Inhibition: a target is inhibited when an open alert of the same patient (or unit, per
  ``equal``) matches the rule's source matchers and the target matches its target matchers.
  An emergency target is never inhibited.
- Silences mute traffic up to their ``max_urgency`` (routine or urgent) inside their window;
  quiet hours defer routine traffic to the end of the window. Neither ever touches an emergency.
Pure module: no I/O.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from worker.domain import EMERGENCY_FLAGS
from worker.rules.matchers import URGENCY_ORDER, all_match
from worker.rules.models import Inhibit, QuietHours, Silence


def subject_from_content(content: dict[str, Any]) -> dict[str, Any]:
    """The fields matchers read, from an evaluation's JSON (Evaluation.as_dict(), as stored on an
    alert) plus ``condition``, ``unit`` and ``labels``. The one place this mapping is written.

    ``icans_grade`` is the ICANS level: the grade, or its proven floor when the grade is null.
    """
    level = content.get("icans_grade")
    if level is None:
        level = content.get("icans_floor")
    subj = {
        "condition": content.get("condition", "clinical"),
        "patient_id": content["patient_id"],
        "crs_grade": content.get("crs_grade"),
        "crs_grade_is_minimum": content.get("crs_grade_is_minimum"),
        "icans_grade": level,
        "news2": content.get("news2"),
        "urgency": content["urgency"],
        "red_flags": tuple(content.get("red_flags") or ()),
        "risk_tier": content.get("therapy_tier"),
        "therapy_class": content.get("therapy_class"),
        "in_risk_window": content.get("in_risk_window"),
        "age_band": content.get("age_band"),
        "age_years": content.get("age_years"),
        "day_since_therapy": content.get("day_since_therapy"),
        "unit": content.get("unit"),
    }
    for key, value in (content.get("labels") or {}).items():
        subj[f"labels.{key}"] = value
    return subj


def subject(evaluation: Any, *, condition: str = "clinical", unit: str | None = None,
            labels: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """The matcher fields of an Evaluation for a patient of ``unit`` with ``labels``."""
    return subject_from_content({**evaluation.as_dict(), "condition": condition, "unit": unit, "labels": labels or {}})


@dataclass(frozen=True, slots=True)
class Worst:
    """The worst state an open alert has seen (what an upgrade must exceed)."""

    crs_grade: int
    icans_level: int
    red_flags: frozenset[str]
    urgency: str


def assess(worst: Worst, subj: dict[str, Any]) -> tuple[str, list[str]]:
    """("upgrade", why) when the subject is worse than the alert has seen, else ("annotate", [])."""
    why = []
    if subj["crs_grade"] > worst.crs_grade:
        why.append(f"CRS grade {worst.crs_grade} -> {subj['crs_grade']}")
    if subj["icans_grade"] > worst.icans_level:
        why.append(f"ICANS {worst.icans_level} -> {subj['icans_grade']}")
    new_emergency = sorted(EMERGENCY_FLAGS.intersection(subj["red_flags"]) - worst.red_flags)
    if new_emergency:
        why.append("new emergency red flag: " + ", ".join(new_emergency))
    return ("upgrade", why) if why else ("annotate", [])


def merge_worst(worst: Worst | None, subj: dict[str, Any]) -> Worst:
    if worst is None:
        return Worst(subj["crs_grade"], subj["icans_grade"], frozenset(subj["red_flags"]), subj["urgency"])
    urgency = max(worst.urgency, subj["urgency"], key=URGENCY_ORDER.__getitem__)
    return Worst(
        max(worst.crs_grade, subj["crs_grade"]),
        max(worst.icans_level, subj["icans_grade"]),
        worst.red_flags | frozenset(subj["red_flags"]),
        urgency,
    )


def inhibited_by(target: dict[str, Any], sources: list[dict[str, Any]], rules: list[Inhibit]) -> Inhibit | None:
    """The inhibition rule that mutes ``target``, given the subjects of the open alerts; never an emergency."""
    if target["urgency"] == "emergency":
        return None
    for rule in rules:
        if not all_match(tuple(rule.target), target):
            continue
        for src in sources:
            if all(src.get(k) == target.get(k) for k in rule.equal) and all_match(tuple(rule.source), src):
                return rule
    return None


def silenced_by(subj: dict[str, Any], now: dt.datetime, silences: list[Silence]) -> Silence | None:
    """The active silence muting this traffic, if any; an emergency is never silenced."""
    rank = URGENCY_ORDER[subj["urgency"]]
    if subj["urgency"] == "emergency":
        return None
    for s in silences:
        if s.starts <= now < s.ends and rank <= URGENCY_ORDER[s.max_urgency] and all_match(tuple(s.match), subj):
            return s
    return None


def quiet_until(subj: dict[str, Any], now: dt.datetime, timezone: str, windows: list[QuietHours]) -> dt.datetime | None:
    """When deferred routine traffic may go out (the end of the current quiet window), else None."""
    if subj["urgency"] != "routine":
        return None
    local = now.astimezone(ZoneInfo(timezone))
    for w in windows:
        if w.match and not all_match(tuple(w.match), subj):
            continue
        end = _window_end(local, w.start, w.end)
        if end is not None:
            return end.astimezone(dt.timezone.utc)
    return None


def _window_end(local: dt.datetime, start: dt.time, end: dt.time) -> dt.datetime | None:
    t = local.timetz().replace(tzinfo=None)
    if start == end:
        return None
    if start < end:  # same-day window, e.g. 12:00-14:00
        inside = start <= t < end
        end_day = local.date()
    else:  # crosses midnight, e.g. 22:00-07:00
        inside = t >= start or t < end
        end_day = local.date() + dt.timedelta(days=1) if t >= start else local.date()
    if not inside:
        return None
    return dt.datetime.combine(end_day, end, tzinfo=local.tzinfo)
