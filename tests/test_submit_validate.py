"""`crs-alert submit --validate` reports what the worker would store, in the worker's words."""

import json

import pytest

from worker.commands.submit import invalid_lines, numbered_lines
from worker.intake import PAYLOAD_FIELD, Entry
from worker.pipeline import Refusal, decode

GOOD = json.dumps({"checkin_id": "c-1", "patient_id": "P-1", "recorded_at": "2026-11-20T06:15:00Z"}).encode()
BOM = b"\xef\xbb\xbf"


def _worker(line: bytes) -> Refusal:
    refusal = decode(Entry("1-0", {PAYLOAD_FIELD: line}))
    assert isinstance(refusal, Refusal)
    return refusal


@pytest.mark.parametrize("line", [
    BOM + GOOD,
    BOM + b'{"checkin_id": "c-2", "patient_id": "P-1"}',
    GOOD[:-1] + b', "note": "caf\xe9"}',
    b'{"checkin_id": "c-3", "note": "\xff"}',
])  # fmt: skip
def test_validate_and_the_worker_give_the_same_errors_and_id(line):
    [report] = invalid_lines([(1, line)])
    refusal = _worker(line)
    assert report["errors"] == [e.as_dict() for e in refusal.errors]
    assert report["checkin_id"] == refusal.checkin_id


def test_a_byte_order_mark_is_named_as_the_problem_and_the_id_is_kept():
    refusal = _worker(BOM + GOOD)
    assert [e.msg for e in refusal.errors] == [refusal.errors[0].msg] and "byte order mark (BOM" in refusal.errors[0].msg
    assert refusal.checkin_id == "c-1"
    [report] = invalid_lines([(1, BOM + b'{"checkin_id": "c-2"}')])
    assert "BOM" in report["errors"][0]["msg"] and report["checkin_id"] == "c-2"
    assert {e["loc"] for e in report["errors"][1:]} == {"patient_id", "recorded_at"}  # the rest is still checked


def test_a_byte_that_is_not_utf8_is_named_with_its_offset():
    line = GOOD[:-1] + b', "note": "caf\xe9"}'
    [report] = invalid_lines([(1, line)])
    assert report["errors"] == [{"loc": "(document)", "msg": f"Not valid UTF-8: byte 0xe9 at offset {line.index(0xe9)}"}]


def test_line_numbers_count_blank_lines():
    data = b"\n" + GOOD + b"\n\n   \n" + b"{bad\n" + b"\r\n" + GOOD + b"\n"
    numbered = numbered_lines(data)
    assert [n for n, _ in numbered] == [2, 5, 7]
    assert [r["line"] for r in invalid_lines(numbered)] == [5]


def test_a_checkin_id_reused_for_other_content_is_reported_and_a_resend_is_not():
    other = json.dumps({"checkin_id": "c-1", "patient_id": "P-2", "recorded_at": "2026-11-20T06:15:00Z"}).encode()
    assert invalid_lines([(1, GOOD), (3, GOOD)]) == []  # the same check-in twice: the worker counts a duplicate
    [report] = invalid_lines([(1, GOOD), (4, other), (6, GOOD)])
    assert (report["line"], report["checkin_id"], [e["loc"] for e in report["errors"]]) == (4, "c-1", ["checkin_id"])
    assert "line 1" in report["errors"][0]["msg"] and "checkin_id_conflict" in report["errors"][0]["msg"]
