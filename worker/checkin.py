"""The check-in wire format (../shared/spec/checkin.schema.json, version 1) as a pydantic model.

The model accepts and rejects exactly what the JSON Schema does (tests/test_checkin_schema.py
proves it on a corpus): unknown fields are errors, an explicit ``null`` is an error (the schema
has no nullable field; omit the field instead), numbers are numbers (never strings or booleans),
"integer" also admits an integral float such as ``5.0`` as JSON Schema does, date-times need
an RFC 3339 offset, and arrays declared ``uniqueItems`` reject duplicates instead of folding them.

Pure module: no I/O.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, ValidationError
from pydantic_core import PydanticCustomError

Device = Literal[
    "room_air",
    "nasal_cannula",
    "blow_by",
    "high_flow_nasal_cannula",
    "facemask",
    "nonrebreather",
    "venturi",
    "cpap",
    "bipap",
    "mechanical_ventilation",
]
Symptom = Literal[
    "fever", "fatigue", "cough", "headache", "loss_of_appetite", "rash", "body_pain", "malaise",
    "nausea", "rapid_heartbeat", "difficulty_breathing", "rapid_breathing", "chest_pain",
    "stomach_pain", "leg_swelling", "confusion", "difficulty_speaking", "seizure", "hallucinations",
    "sleepiness", "fainting", "skin_discoloration", "bleeding", "chills", "dizziness", "tremor",
    "diarrhea", "vomiting",
]  # fmt: skip
Consciousness = Literal["awake", "awakens_to_voice", "awakens_to_tactile", "unarousable_or_stupor", "coma"]
Seizure = Literal["none", "focal_or_generalized_resolving", "nonconvulsive_on_eeg_resolving", "prolonged_or_repetitive"]
Motor = Literal["none", "deep_focal"]
Edema = Literal["none", "focal_local", "diffuse_or_posturing_or_cn6_or_papilledema_or_cushing"]
MaskingTherapy = Literal["tocilizumab", "corticosteroids", "antipyretic"]
Premedication = Literal["corticosteroids", "antipyretic"]
Source = Literal["patient", "caregiver", "clinician", "device"]


def _integral_float_to_int(value: Any) -> Any:
    # JSON Schema's "integer" admits 5.0 (a number with a zero fraction); pydantic's strict int does not.
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def Number(lo: float, hi: float) -> Any:  # noqa: N802 - reads like a type in the models below
    return Annotated[float, Field(ge=lo, le=hi, allow_inf_nan=False)]


def Integer(lo: int, hi: int) -> Any:  # noqa: N802
    # The bounds first: so they stay part of pydantic-core's int schema (checked in Rust). Placed
    # after the BeforeValidator, they became two Python functions per field (the same errors).
    return Annotated[int, Field(ge=lo, le=hi), BeforeValidator(_integral_float_to_int)]


_STR = {str}


def _unique(value: Any) -> Any:
    if not isinstance(value, list):
        return value
    if set(map(type, value)) <= _STR:  # the usual case: equal strings are equal items
        repeated = len(set(value)) != len(value)
    else:
        repeated = len(set(map(repr, value))) != len(value)
    if repeated:
        raise PydanticCustomError("unique_items", "Items must be unique (uniqueItems); remove the repeated entry")
    return value


# RFC 3339 section 5.6; the offset is mandatory (a naive time is an error). Days per month and
# leap years are checked by the parser below; a leap second (:60) is matched only to be refused
# with its own message (as rfc3339-validator refuses it). Groups: seconds, fraction, offset.
_RFC3339 = re.compile(
    r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])[Tt](?:[01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?"
    r"([Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)",
    re.ASCII,
)
_FULL_DATE = re.compile(r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])", re.ASCII)


def _parse_datetime(value: Any) -> dt.datetime:
    if type(value) is str and (m := _RFC3339.fullmatch(value)):
        seconds, frac, offset = m.groups()
        if seconds == "60":  # RFC 3339 allows a leap second; datetime cannot hold one
            raise PydanticCustomError(
                "rfc3339_leap_second", "Leap seconds (:60) are not accepted; send :59 or the next minute's :00"
            )
        if frac is None and offset == "Z" and value[10] == "T":
            # The usual form (2026-11-20T06:15:00Z) as it is: Python 3.11 reads "Z" as +00:00.
            text = value
        else:
            frac = (frac or "")[:7]  # Python keeps microseconds: 6 digits after the dot
            offset = offset.upper()
            text = f"{value[:10]}T{value[11:19]}{frac}{'+00:00' if offset == 'Z' else offset}"
        try:
            return dt.datetime.fromisoformat(text)
        except ValueError:
            pass
    raise PydanticCustomError(
        "rfc3339_datetime",
        "Must be an RFC 3339 date-time with a UTC offset, e.g. 2026-11-20T06:15:00Z (a naive time is an error)",
    )


def _parse_date(value: Any) -> dt.date:
    if type(value) is str:
        return _parse_date_text(value)
    raise PydanticCustomError("full_date", "Must be a calendar date YYYY-MM-DD")


@lru_cache(maxsize=4096)  # therapy_start: a patient sends the same date with every check-in
def _parse_date_text(value: str) -> dt.date:
    if _FULL_DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise PydanticCustomError("full_date", "Must be a calendar date YYYY-MM-DD")


def _schema_version(value: Any) -> int:
    if type(value) in (int, float) and value == 1:
        return 1
    raise PydanticCustomError("const", "Must be 1 (the only check-in schema version)")


DateTime = Annotated[dt.datetime, PlainValidator(_parse_datetime)]
Date = Annotated[dt.date, PlainValidator(_parse_date)]

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)

# Fields default to None, but an explicit null is rejected: pydantic does not validate defaults,
# and the strict types below refuse None. "Omitted" means "not known" (clinical.md 0.2).


class Vitals(BaseModel):
    model_config = _STRICT
    temperature_c: Number(25, 45) = None
    heart_rate_bpm: Number(10, 300) = None
    respiratory_rate: Number(0, 100) = None
    systolic_bp: Number(30, 300) = None
    diastolic_bp: Number(10, 200) = None
    spo2_percent: Number(40, 100) = None


class Oxygen(BaseModel):
    model_config = _STRICT
    device: Device
    flow_l_min: Number(0, 80) = None


class Vasopressors(BaseModel):
    model_config = _STRICT
    count_excluding_vasopressin: Integer(0, 10) = None
    vasopressin: bool = None


class Neuro(BaseModel):
    model_config = _STRICT
    ice_score: Integer(0, 10) = None
    capd_score: Integer(0, 32) = None
    consciousness: Consciousness = None
    sedated: bool = None
    seizure: Seizure = None
    motor_weakness: Motor = None
    cerebral_edema: Edema = None


class CheckIn(BaseModel):
    """One symptom check-in, version 1. Omitted fields mean "not known", never "normal"."""

    model_config = _STRICT
    schema_version: Annotated[int, PlainValidator(_schema_version)] = None
    checkin_id: Annotated[str, Field(min_length=1, max_length=128)]
    patient_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]
    recorded_at: DateTime
    source: Source = "patient"
    age_years: Number(0, 120) = None
    therapy: Annotated[str, Field(max_length=128)] = None
    therapy_start: Date = None
    vitals: Vitals = None
    oxygen: Oxygen = None
    vasopressors: Vasopressors = None
    fluid_responsive_hypotension: bool = None
    fever_masked_by: MaskingTherapy = None
    premedication: Annotated[list[Premedication], BeforeValidator(_unique)] = None
    symptoms: Annotated[list[Symptom], BeforeValidator(_unique)] = None
    neuro: Neuro = None
    note: Annotated[str, Field(max_length=2000)] = None


_EMPTY_VITALS = Vitals()


@dataclass(frozen=True, slots=True)
class FieldError:
    """One reason an input was refused: where (a dotted wire-format path) and which rule."""

    loc: str
    msg: str

    def as_dict(self) -> dict[str, str]:
        return {"loc": self.loc, "msg": self.msg}


UNKNOWN_FIELD = "Unknown field (the check-in format forbids fields it does not define)"


class IntakeError(ValueError):
    """A check-in that does not match the wire format, with every field error (not just the first)."""

    def __init__(self, errors: list[FieldError], checkin_id: str | None = None):
        self.errors = errors
        self.checkin_id = checkin_id
        super().__init__("; ".join(f"{e.loc or '(document)'}: {e.msg}" for e in errors))


def _field_errors(exc: ValidationError) -> list[FieldError]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = UNKNOWN_FIELD
        elif err["type"] == "missing":
            msg = "Required field is missing"
        out.append(FieldError(loc, msg))
    return out


def _readable_id(raw: Any) -> str | None:
    if isinstance(raw, dict):
        cid = raw.get("checkin_id")
        if isinstance(cid, str) and 0 < len(cid) <= 128:
            return cid
    return None


def not_utf8(raw: bytes, exc: UnicodeDecodeError) -> FieldError:
    """The one wording of "these bytes are not UTF-8" (the worker's rejection, ``submit --validate``)."""
    return FieldError("(document)", f"Not valid UTF-8: byte 0x{raw[exc.start]:02x} at offset {exc.start}")


BOM = FieldError("(document)", "Starts with a UTF-8 byte order mark (BOM, bytes EF BB BF), which JSON text must not "
                               "begin with: save or send it as UTF-8 without a BOM")


def parse_checkin(raw: str | bytes | dict[str, Any]) -> CheckIn:
    """Validate one check-in given as JSON text/bytes or as an already-decoded object.

    Raises IntakeError listing every field error; never returns a partial check-in. Bytes that are
    not UTF-8 get the one error ``not_utf8``; a leading byte order mark gets ``BOM`` followed by
    the errors, if any, of the document after it (and its id when readable).
    """
    try:
        # The model's validator itself, as model_validate(_json) call it with no options: one
        # Python frame less per check-in.
        if not isinstance(raw, (str, bytes, bytearray)):  # decoded JSON (a non-object is refused)
            return CheckIn.__pydantic_validator__.validate_python(raw)
        return CheckIn.__pydantic_validator__.validate_json(raw)
    except ValidationError as exc:
        if not isinstance(raw, (str, bytes, bytearray)):
            raise IntakeError(_field_errors(exc), _readable_id(raw)) from None
        error = exc
    # Only on the error path, to name the problem plainly and recover the id for the report.
    try:
        text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8")
    except UnicodeDecodeError as bad:
        raise IntakeError([not_utf8(bytes(raw), bad)]) from None
    if text.startswith("\ufeff"):
        rest = text.lstrip("\ufeff")
        try:
            parse_checkin(rest)
        except IntakeError as more:
            raise IntakeError([BOM, *more.errors], more.checkin_id) from None
        raise IntakeError([BOM], _readable_id(json.loads(rest))) from None  # the mark is the only error
    try:
        decoded = json.loads(text)
    except ValueError:
        decoded = None
    raise IntakeError(_field_errors(error), _readable_id(decoded)) from None


def vitals_of(checkin: CheckIn) -> Vitals:
    """The check-in's vitals, or an all-unknown Vitals when none were sent."""
    return checkin.vitals if checkin.vitals is not None else _EMPTY_VITALS
