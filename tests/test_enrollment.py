"""The enrollment format is as strict as a check-in, and a file is checked as a whole."""

import json

import pytest

from worker.enrollment import EnrollmentError, EnrollmentFileError, as_json, parse_enrollment, parse_enrollments


@pytest.mark.parametrize(("field", "value"), [
    ("age_years", True),  # pydantic's lax mode read it as 1.0
    ("age_years", "  7  "),  # ... and this as 7
    ("age_years", "58"),
    ("age_years", float("nan")),
    ("checkin_interval_h", "8"),
    ("checkin_interval_h", False),
    ("therapy_start", 1763251200),  # a Unix time became a date
    ("therapy_start", "2026-11-16T00:00:00Z"),
    ("therapy_start", "16/11/2026"),
    ("therapy", 7),
    ("unit", ["a"]),
    ("labels", {"product": 1}),
    ("labels", ["car-t"]),
])  # fmt: skip
def test_a_wrong_type_is_refused_naming_the_field(field, value):
    """A value of the wrong type is an error naming the field, never coerced."""
    with pytest.raises(EnrollmentError) as info:
        parse_enrollment({"patient_id": "P-1", field: value})
    assert [e.loc.split(".")[0] for e in info.value.errors] == [field]


@pytest.mark.parametrize("text", [
    '{"patient_id": "P-1", "age_years": true}',
    '{"patient_id": "P-1", "age_years": "  7  "}',
    '{"patient_id": "P-1", "checkin_interval_h": "8"}',
    '{"patient_id": "P-1", "therapy_start": 1763251200}',
])  # fmt: skip
def test_a_wrong_type_in_json_text_is_refused(text):
    with pytest.raises(EnrollmentError):
        parse_enrollment(text)


def test_well_typed_values_are_accepted_and_null_means_not_known():
    e = parse_enrollment('{"patient_id": "P-1", "age_years": 58, "checkin_interval_h": 8.5, "therapy_start": "2026-11-16", '
                         '"unit": null, "labels": {"product": "car-t"}}')
    assert (e.age_years, e.checkin_interval_h, e.therapy_start.isoformat(), e.unit) == (58, 8.5, "2026-11-16", None)
    assert json.loads(as_json(e))["therapy_start"] == "2026-11-16"


def test_every_bad_line_is_reported_with_its_number():
    data = (b'{"patient_id": "OK-1"}\n'
            b'{"patient_id": "BAD-2", "age_years": "7"}\n'
            b'\n'
            b'{"patient_id": "BAD-4", "ward": "x"}\n'
            b'{"patient_id": "OK-5"}\n'
            b'{"patient_id": "BAD-6"\n')  # fmt: skip
    with pytest.raises(EnrollmentFileError) as info:
        parse_enrollments(data)
    assert [bad.line for bad in info.value.lines] == [2, 4, 6]
    text = str(info.value)
    assert "line 2: age_years" in text and "line 4: ward: Unknown field" in text and "line 6: (document): Invalid JSON" in text


def test_a_byte_that_is_not_utf8_is_a_line_error_not_a_crash():
    with pytest.raises(EnrollmentFileError) as info:
        parse_enrollments(b'{"patient_id": "OK-1"}\n{"patient_id": "P-2", "unit": "caf\xe9"}\n')
    assert [bad.line for bad in info.value.lines] == [2] and "UTF-8" in str(info.value)


def test_a_raw_line_separator_inside_a_string_does_not_split_the_line():
    """U+2028 is valid inside a JSON string; str.splitlines would cut the document in two."""
    data = '{"patient_id": "P-1", "labels": {"note": "a\u2028b\u2029c\x85d"}}\n{"patient_id": "P-2"}\n'
    items = parse_enrollments(data.encode("utf-8"))
    assert [e.patient_id for e in items] == ["P-1", "P-2"] and items[0].labels["note"] == "a\u2028b\u2029c\x85d"


def test_the_sample_file_is_valid():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "config" / "sample-patients.jsonl"
    assert len(parse_enrollments(path.read_bytes())) == 6
