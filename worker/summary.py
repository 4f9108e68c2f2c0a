"""What has been recorded, as a dict (``status --json``) and as readable text (``status``, ``demo``).

Reads the store only (and the stream backlog when a Redis client is given). Free text (``note``)
is never included.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from worker.store import repo


def status(session: Session, backlog: dict[str, int | None] | None, *, latest: int = 20) -> dict[str, Any]:
    counts = repo.counts(session)
    if backlog is not None:
        counts["pending"] = (backlog.get("pending") or 0) + (backlog.get("lag") or 0)
    else:
        counts["pending"] = None
    return {
        "counts": counts,
        "backlog": backlog,
        "latest": [_evaluation(e) for e in repo.latest_evaluations(session, latest)],
    }


def _evaluation(e: Any) -> dict[str, Any]:
    return {
        "checkin_id": e.checkin_id,
        "patient_id": e.patient_id,
        "recorded_at": e.recorded_at.isoformat(),
        "crs_grade": e.crs_grade,
        "crs_grade_is_minimum": e.crs_grade_is_minimum,
        "icans_grade": e.icans_grade,
        "icans_floor": e.icans_floor,
        "urgency": e.urgency,
        "red_flags": list(e.red_flags),
        "news2": e.news2,
        "out_of_order": e.out_of_order,
    }


def grade_text(crs: int, is_min: bool) -> str:
    return f">={crs}" if is_min else str(crs)


def icans_text(grade: int | None, floor: int) -> str:
    """The ICANS grade; when a domain is missing or sedated, "?" or the proven floor ">=N"."""
    if grade is not None:
        return str(grade)
    return f">={floor}" if floor else "?"


def render_records(session: Session) -> str:
    """Every evaluation, rejection and duplicate, for people (the demo's summary)."""
    lines = []
    evals = repo.evaluations(session)
    lines.append(f"Evaluations ({len(evals)}); CRS >=N: a minimum (missing data could raise it); "
                 "ICANS ?: not assessable from what was sent:")
    lines.append(f"  {'check-in':<12} {'patient':<10} {'recorded':<17} {'CRS':>4} {'ICANS':>6}  {'urgency':<9} red flags")
    for e in sorted(evals, key=lambda e: (-_rank(e.urgency), e.effective_at)):
        flags = ", ".join(e.red_flags) or "-"
        extra = "  (out of order)" if e.out_of_order else ""
        lines.append(f"  {e.checkin_id:<12} {e.patient_id:<10} {e.recorded_at:%Y-%m-%d %H:%M} "
                     f"{grade_text(e.crs_grade, e.crs_grade_is_minimum):>4} {icans_text(e.icans_grade, e.icans_floor):>6}  "
                     f"{e.urgency:<9} {flags}{extra}")
        missing = e.result.get("crs_missing") or []
        if missing:
            lines.append(f"  {'':<12} missing data that could raise the grade: {', '.join(missing)}")
    trans = repo.transitions(session)
    lines.append(f"\nTransitions ({len(trans)}):")
    for t in trans:
        lines.append(f"  {t.patient_id:<10} {t.checkin_id:<12} {', '.join(t.kinds)} -> {t.urgency}")
    rejected = repo.rejected_inputs(session)
    lines.append(f"\nRejected inputs ({len(rejected)}), stored with their raw payload:")
    for rej in rejected:
        lines.append(f"  stream {rej.stream_id}  check-in {rej.checkin_id or '(unreadable)'}  reason {rej.reason}")
        for err in rej.errors:
            lines.append(f"    - {err['loc'] or '(document)'}: {_short(err['msg'])}")
    c = repo.counts(session)
    lines.append(f"\nDuplicates (same checkin_id submitted again, not re-evaluated): {c['duplicates']}")
    lines.append(f"Totals: received {c['received']}, evaluated {c['evaluated']}, rejected {c['rejected']}, "
                 f"duplicates {c['duplicates']}, transitions {c['transitions']}")
    return "\n".join(lines)


def render_status(st: dict[str, Any]) -> str:
    c = st["counts"]
    lines = [f"received {c['received']}  evaluated {c['evaluated']}  rejected {c['rejected']}  "
             f"duplicates {c['duplicates']}  pending {c['pending'] if c['pending'] is not None else '?'}"]
    if st["latest"]:
        lines.append("latest state per patient (most urgent first):")
        for e in st["latest"]:
            lines.append(f"  {e['patient_id']:<10} CRS {grade_text(e['crs_grade'], e['crs_grade_is_minimum']):>3}  "
                         f"ICANS {icans_text(e['icans_grade'], e['icans_floor']):>4}  {e['urgency']:<9} "
                         f"{', '.join(e['red_flags']) or '-'}  ({e['checkin_id']}, {e['recorded_at']})")
    return "\n".join(lines)


def _rank(urgency: str) -> int:
    from worker.domain import Urgency

    return Urgency(urgency).rank


def _short(msg: str, limit: int = 140) -> str:
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."
