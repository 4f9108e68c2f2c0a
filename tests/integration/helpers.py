"""Small builders shared by the integration tests (synthetic, pseudonymous data only)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

T0 = dt.datetime(2026, 11, 20, 6, 0, tzinfo=dt.UTC)


def checkin(cid: str, pid: str = "P-001", minutes: float = 0, **fields: Any) -> dict[str, Any]:
    """A valid check-in recorded ``minutes`` after T0; ``fields`` are added as they are."""
    doc: dict[str, Any] = {
        "checkin_id": cid,
        "patient_id": pid,
        "recorded_at": (T0 + dt.timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z"),
    }
    doc.update(fields)
    return doc


def febrile(cid: str, pid: str = "P-001", minutes: float = 0, temp: float = 38.6, **fields: Any) -> dict[str, Any]:
    return checkin(cid, pid, minutes, vitals={"temperature_c": temp, "systolic_bp": 120, "spo2_percent": 98}, **fields)


def hypotensive(cid: str, pid: str = "P-001", minutes: float = 0, **fields: Any) -> dict[str, Any]:
    """Fever with fluid-responsive hypotension: CRS grade 2."""
    return checkin(cid, pid, minutes, vitals={"temperature_c": 39.0, "systolic_bp": 82, "spo2_percent": 97},
                   fluid_responsive_hypotension=True, **fields)


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
