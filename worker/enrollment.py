"""The enrollment input format (``crs-alert patients enroll``, config/sample-patients.jsonl).

Pure module: no I/O. Unknown fields are errors; ``patient_id`` follows the check-in's rule (a
pseudonym: letters, digits and ``._:-``, never a name or MRN in clear).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from worker.checkin import FieldError


class EnrollmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    patient_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
    age_years: Annotated[float | None, Field(ge=0, le=120)] = None
    therapy: Annotated[str | None, Field(max_length=128)] = None
    therapy_start: dt.date | None = None
    unit: Annotated[str | None, Field(max_length=64)] = None
    checkin_interval_h: Annotated[float | None, Field(gt=0, le=24 * 14)] = None
    labels: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=256)]] = Field(default_factory=dict)


class EnrollmentError(ValueError):
    def __init__(self, errors: list[FieldError], line: int | None = None):
        self.errors, self.line = errors, line
        where = f"line {line}: " if line else ""
        super().__init__(where + "; ".join(f"{e.loc or '(document)'}: {e.msg}" for e in errors))


def parse_enrollment(raw: str | bytes | dict[str, Any], line: int | None = None) -> EnrollmentIn:
    try:
        if isinstance(raw, dict):
            return EnrollmentIn.model_validate(raw)
        return EnrollmentIn.model_validate_json(raw)
    except ValidationError as exc:
        errors = [FieldError(".".join(map(str, e["loc"])), e["msg"]) for e in exc.errors(include_url=False)]
        raise EnrollmentError(errors, line) from None


def parse_enrollments(text: str) -> list[EnrollmentIn]:
    """Every non-blank line; raises EnrollmentError for the first bad line (nothing is half-applied)."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            out.append(parse_enrollment(line, n))
    return out


def as_json(e: EnrollmentIn) -> str:
    return json.dumps(e.model_dump(mode="json", exclude_none=True))
