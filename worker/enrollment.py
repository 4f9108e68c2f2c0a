"""The enrollment input format (``crs-alert patients enroll``, config/sample-patients.jsonl).

Rules:
- As strict as a check-in (worker.checkin): unknown fields are errors; numbers are JSON numbers
  (never a string such as "8" or a boolean); ``therapy_start`` is a calendar date written
  YYYY-MM-DD (never a timestamp); labels map strings to strings. ``null`` means "not known", as
  omitting the field does (``patients list --json`` prints it, so its output can be enrolled again).
- ``patient_id`` follows the check-in's rule (a pseudonym: letters, digits and ``._:-``, never a
  name or MRN in clear).
- A file is framed by worker.jsonstream (JSON Lines split on "\\n" only, one JSON array, or one
  object); every bad document is reported with its number, and a file with any bad document is
  refused as a whole (nothing is half-applied).

Pure module: no I/O.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from worker.checkin import FieldError, Number, _parse_date
from worker.jsonstream import documents

_Text = Annotated[str, Field(max_length=256)]


def _iso_date(value: Any) -> Any:
    # the check-in's rule (a "YYYY-MM-DD" string, never a number), with null for "not known"
    return None if value is None else _parse_date(value)


class EnrollmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    patient_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
    age_years: Number(0, 120) | None = None
    therapy: Annotated[str, Field(max_length=128)] | None = None
    therapy_start: Annotated[dt.date | None, BeforeValidator(_iso_date)] = None
    unit: Annotated[str, Field(max_length=64)] | None = None
    checkin_interval_h: Annotated[float, Field(gt=0, le=24 * 14, allow_inf_nan=False)] | None = None
    labels: dict[Annotated[str, Field(max_length=64)], _Text] = Field(default_factory=dict)


class EnrollmentError(ValueError):
    def __init__(self, errors: list[FieldError], line: int | None = None):
        self.errors, self.line = errors, line
        where = f"line {line}: " if line else ""
        super().__init__(where + "; ".join(f"{e.loc or '(document)'}: {e.msg}" for e in errors))


class EnrollmentFileError(EnrollmentError):
    """Every bad document of a file (``lines``, in file order), not just the first or the last."""

    def __init__(self, lines: list[EnrollmentError]):
        self.lines = lines
        self.errors, self.line = [e for bad in lines for e in bad.errors], lines[0].line
        ValueError.__init__(self, "\n".join(map(str, lines)))


def parse_enrollment(raw: str | bytes | dict[str, Any], line: int | None = None) -> EnrollmentIn:
    try:
        if isinstance(raw, (str, bytes, bytearray)):
            return EnrollmentIn.model_validate_json(raw)
        return EnrollmentIn.model_validate(raw)
    except ValidationError as exc:
        raise EnrollmentError(_errors(exc), line) from None


def _errors(exc: ValidationError) -> list[FieldError]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):  # the input may be a name: never echoed
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "Unknown field (the enrollment format forbids fields it does not define)"
        elif err["type"] == "missing":
            msg = "Required field is missing"
        out.append(FieldError(".".join(map(str, err["loc"])), msg))
    return out


def parse_enrollments(data: bytes | str) -> list[EnrollmentIn]:
    """Every document of ``data`` (see the module rules); raises EnrollmentFileError naming every
    bad one, or jsonstream.FramingError when the input cannot be split into documents."""
    out, bad = [], []
    for doc in documents(data.encode("utf-8") if isinstance(data, str) else data):
        if doc.error is not None:
            bad.append(EnrollmentError([FieldError("(document)", doc.error)], doc.number))
            continue
        try:
            out.append(parse_enrollment(doc.value, doc.number))
        except EnrollmentError as exc:
            bad.append(exc)
    if bad:
        raise EnrollmentFileError(bad)
    return out


def as_json(e: EnrollmentIn) -> str:
    return json.dumps(e.model_dump(mode="json", exclude_none=True))
