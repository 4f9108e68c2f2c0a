"""Every public clinical vignette (../shared/vignettes/public.jsonl), in-process and through the shared tool."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from worker.checkin import parse_checkin
from worker.evaluation import evaluate

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
VIGNETTES = SHARED / "vignettes" / "public.jsonl"
CASES = [json.loads(line) for line in VIGNETTES.read_text().splitlines() if line.strip()]


def test_the_public_vignettes_are_there():
    assert len(CASES) >= 37


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_vignette(case):
    expected = case["expected"]
    got = evaluate(parse_checkin(case["checkin"]))
    for key in ("crs_grade", "crs_grade_is_minimum", "icans_grade", "news2"):
        if key in expected:
            assert getattr(got, key) == expected[key], f"{key}: {expected.get('rationale', '')}"
    assert set(got.red_flags) == set(expected["red_flags"]), expected.get("rationale", "")


def test_check_vignettes_tool_passes_through_the_cli():
    cli = Path(sys.executable).with_name("crs-alert")
    proc = subprocess.run(
        [sys.executable, str(SHARED / "tools" / "check-vignettes"), "--cmd", f"{cli} evaluate"],
        capture_output=True, text=True, timeout=120, env=os.environ,
    )  # fmt: skip
    assert proc.stdout.strip().splitlines()[-1] == f"{len(CASES)} passed, 0 failed", proc.stdout + proc.stderr
    assert proc.returncode == 0
