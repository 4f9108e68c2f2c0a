"""`crs-alert evaluate`: the contract of ../shared/spec/evaluate.md, run as a real subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import baseline

CLI = [str(Path(sys.executable).with_name("crs-alert")), "evaluate"]


def run(*args, stdin: bytes = b""):
    proc = subprocess.run([*CLI, *args], input=stdin, capture_output=True, timeout=60)
    lines = [json.loads(x) for x in proc.stdout.decode().splitlines() if x.strip()]
    return proc.returncode, lines, proc.stderr.decode()


def doc(cid, **kw):
    return baseline(checkin_id=cid, **kw)


def jsonl(*docs):
    return "".join(json.dumps(d) + "\n" for d in docs).encode()


def test_json_lines_in_order_exit_0():
    code, out, _ = run(stdin=jsonl(doc("a"), doc("b", vitals={"temperature_c": 38.4}), doc("c")))
    assert code == 0
    assert [o["checkin_id"] for o in out] == ["a", "b", "c"]
    assert [o["crs_grade"] for o in out] == [0, 1, 0]
    assert all(o["valid"] is True for o in out)


def test_invalid_lines_are_reported_and_processing_goes_on_exit_1():
    bad = doc("bad", vitals={"temperature_c": 46})
    data = jsonl(doc("a")) + b"{not json\n" + jsonl(bad) + b"\n   \n" + b"[1, 2]\n" + b"\xff\xfe\n" + jsonl(doc("z"))
    code, out, _ = run(stdin=data)
    assert code == 1
    assert [o.get("checkin_id") for o in out] == ["a", None, "bad", None, None, "z"]
    assert [o.get("line") for o in out[1:5]] == [2, 3, 6, 7]  # physical line numbers; blank lines skipped
    assert out[2]["errors"] == [{"loc": "vitals.temperature_c", "msg": "Input should be less than or equal to 45"}]
    assert out[1]["errors"][0]["msg"].startswith("Invalid JSON")
    assert "must be a JSON object" in out[3]["errors"][0]["msg"]
    assert "UTF-8" in out[4]["errors"][0]["msg"]


def test_every_error_of_a_document_is_listed():
    bad = {"checkin_id": "x", "patient_id": "has space", "recorded_at": "2026-11-20T08:00:00", "extra": 1,
           "vitals": {"spo2_percent": 101}, "symptoms": ["fever", "fever"]}  # fmt: skip
    code, out, _ = run(stdin=jsonl(bad))
    assert code == 1
    assert {e["loc"] for e in out[0]["errors"]} == {"patient_id", "recorded_at", "extra", "vitals.spo2_percent", "symptoms"}


def test_one_object_one_pretty_object_and_one_array():
    assert run(stdin=json.dumps(doc("single")).encode())[1][0]["checkin_id"] == "single"
    assert run(stdin=json.dumps(doc("pretty"), indent=2).encode())[1][0]["checkin_id"] == "pretty"
    code, out, _ = run(stdin=json.dumps([doc("x1"), doc("x2"), "nope"]).encode())
    assert code == 1
    assert [o.get("checkin_id") for o in out] == ["x1", "x2", None]
    assert out[2]["line"] == 3


def test_vignette_lines_are_evaluated_by_their_checkin():
    line = {"id": "v1", "checkin": doc("from-vignette"), "expected": {"crs_grade": 0}}
    code, out, _ = run(stdin=jsonl(line))
    assert (code, out[0]["checkin_id"]) == (0, "from-vignette")


def test_files_and_dash(tmp_path):
    f1, f2 = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    f1.write_bytes(jsonl(doc("f1")))
    f2.write_bytes(jsonl(doc("f2")) + b"oops\n")
    code, out, _ = run(str(f1), "-", str(f2), stdin=jsonl(doc("stdin")))
    assert code == 1
    assert [o.get("checkin_id") for o in out] == ["f1", "stdin", "f2", None]
    assert out[3]["file"] == str(f2)


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["/nonexistent/file.jsonl"], b"", "cannot read /nonexistent/file.jsonl"),
        ([], b"[{\"checkin_id\": 1}, ", "not one JSON array"),
    ],
)
def test_usage_errors_exit_2(args, stdin, message):
    code, out, err = run(*args, stdin=stdin)
    assert code == 2
    assert message in err
    assert out == []


def test_empty_input_is_valid_and_prints_nothing():
    assert run(stdin=b"\n\n")[:2] == (0, [])


def test_nan_is_not_json():
    code, out, _ = run(stdin=b'{"checkin_id": "n", "patient_id": "P", "recorded_at": "2026-11-20T08:00:00Z", "vitals": {"temperature_c": NaN}}\n')
    assert code == 1
    assert "NaN is not valid JSON" in out[0]["errors"][0]["msg"]


def test_table_flag_is_readable():
    proc = subprocess.run([*CLI, "--table"], input=jsonl(doc("t1", vitals={"temperature_c": 38.6, "systolic_bp": 85}), doc("t2")) + b"x\n",
                          capture_output=True, timeout=60)  # fmt: skip
    text = proc.stdout.decode()
    assert proc.returncode == 1
    assert text.splitlines()[0].split() == ["checkin", "patient", "CRS", "ICANS", "NEWS2", "urgency", "red", "flags"]
    assert "t1" in text and ">=2" in text and "emergency" in text and "INVALID" in text
    assert "Invalid JSON" in text


def test_help_lists_evaluate():
    proc = subprocess.run([CLI[0], "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "evaluate" in proc.stdout
