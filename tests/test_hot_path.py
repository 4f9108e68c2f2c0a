"""The shortcuts of the parse + evaluate hot path give exactly what the general code gives."""

import dataclasses
import datetime as dt

import pytest

from tests.factories import baseline
from worker import checkin as ck
from worker.checkin import IntakeError, parse_checkin, vitals_of
from worker.domain import Urgency
from worker.evaluation import Evaluation, evaluate
from worker.grading.crs import crs_of, grade_crs
from worker.grading.red_flags import red_flags, red_flags_of
from worker.grading.vitals import ADULT, BANDS, band_for

def test_evaluate_returns_the_frozen_dataclass():
    e = evaluate(parse_checkin(baseline()))
    assert type(e) is Evaluation
    assert e == Evaluation(*(getattr(e, f.name) for f in dataclasses.fields(Evaluation)))


@pytest.mark.parametrize(
    ("usual", "general"),
    [
        ("2026-11-20T06:15:00Z", "2026-11-20T06:15:00+00:00"),
        ("2024-02-29T23:59:59Z", "2024-02-29T23:59:59+00:00"),
        ("2026-01-01T00:00:00Z", "2026-01-01t00:00:00z"),
    ],
)
def test_usual_date_time_form_parses_as_the_general_path(usual, general):
    a, b = ck._parse_datetime(usual), ck._parse_datetime(general)
    assert a == b and repr(a) == repr(b) and a.tzinfo is dt.timezone.utc


@pytest.mark.parametrize("text", ["2026-02-30T06:15:00Z", "2026-11-20T06:15:00", "2026-11-20 06:15:00Z", 20261120])
def test_bad_date_times_are_still_refused(text):
    with pytest.raises(Exception, match="RFC 3339"):
        ck._parse_datetime(text)


def test_leap_second_keeps_its_own_message():
    with pytest.raises(Exception, match="Leap seconds"):
        ck._parse_datetime("2026-12-31T23:59:60Z")


def test_cached_date_parsing_refuses_every_time():
    for _ in range(2):  # the second call would come from the cache if refusals were cached
        with pytest.raises(IntakeError, match="therapy_start: Must be a calendar date"):
            parse_checkin(baseline(therapy_start="2026-02-30"))
    with pytest.raises(Exception, match="calendar date"):
        ck._parse_date(["2026-11-15"])  # unhashable: refused, not a TypeError from the cache
    assert ck._parse_date("2026-11-15") == dt.date(2026, 11, 15)


@pytest.mark.parametrize("age", [None, 0, 0.05, 1, 9.99, 10, 11.99, 12, 15.999, 16, 16.0, 45, 120])
def test_band_for_matches_the_band_table(age):
    expected = ADULT if age is None else [band for min_age, band in BANDS if age >= min_age][-1]
    assert band_for(age) is expected


@pytest.mark.parametrize("age", [3, 14, 45])
def test_public_grading_functions_match_the_hot_path(age):
    checkin = parse_checkin(baseline(age=age, vitals={"temperature_c": 38.6, "systolic_bp": 70, "spo2_percent": 90}))
    band = band_for(age)
    limit = band.hypotension_limit(age)
    assert grade_crs(checkin, band, age) == crs_of(checkin, vitals_of(checkin), band, limit)
    assert red_flags(checkin, band, age, limit, 6) == red_flags_of(checkin, vitals_of(checkin), band, age, limit, 6)


def _python_functions(schema, path=""):
    """(path, function name) of every Python function in a pydantic-core schema."""
    if isinstance(schema, dict):
        if str(schema.get("type", "")).startswith("function") and not path.endswith("serialization"):
            fn = schema["function"]["function"] if isinstance(schema["function"], dict) else schema["function"]
            yield path, getattr(fn, "__name__", repr(fn))
        for key, value in schema.items():
            yield from _python_functions(value, f"{path}/{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            yield from _python_functions(value, f"{path}[{i}]")


def test_numeric_bounds_are_checked_by_pydantic_core_not_by_python_functions():
    """The bounds of the integer fields stay in the Rust int schema; only our own validators are
    Python (date-times, dates, the schema version, uniqueItems, integral floats)."""
    names = {name for _, name in _python_functions(ck.CheckIn.__pydantic_core_schema__)}
    assert names == {"_parse_datetime", "_parse_date", "_schema_version", "_unique", "_integral_float_to_int"}, names
