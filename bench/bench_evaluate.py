#!/usr/bin/env python3
"""Parse + evaluate throughput on one core, on a realistic mix of check-ins.

Mix (per 100): 80 normal home check-ins, 12 febrile (grade 1, some missing data), 5 grade 2-3,
3 emergencies (positive pressure, neuro). Each payload is distinct JSON bytes as it arrives from the
queue; the timed loop is exactly what the worker does per check-in: parse_checkin(bytes) then
evaluate(checkin). Prints check-ins/s (best and median of the repeats) and the split between parsing
and evaluation. Goal (issue 2): >= 50,000 check-ins/s.

usage: python bench/bench_evaluate.py [--n 50000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from worker.checkin import parse_checkin  # noqa: E402
from worker.evaluation import evaluate  # noqa: E402


def make_payloads(n: int, seed: int = 7) -> list[bytes]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        kind = rnd.random()
        age = rnd.choice([rnd.uniform(18, 85), rnd.uniform(18, 85), rnd.uniform(2, 17)])
        doc = {
            "checkin_id": f"chk-{i:08d}",
            "patient_id": f"P-{rnd.randrange(5000):05d}",
            "recorded_at": f"2026-11-{rnd.randint(16, 30):02d}T{rnd.randint(0, 23):02d}:{rnd.randint(0, 59):02d}:00Z",
            "source": "patient",
            "age_years": round(age, 1),
            "therapy": rnd.choice(["axicabtagene ciloleucel", "Kymriah", "teclistamab", "Breyanzi", "epcoritamab"]),
            "therapy_start": "2026-11-15",
            "vitals": {
                "temperature_c": round(rnd.uniform(36.2, 37.6), 1),
                "heart_rate_bpm": rnd.randint(60, 95),
                "respiratory_rate": rnd.randint(12, 19),
                "systolic_bp": rnd.randint(105, 140),
                "diastolic_bp": rnd.randint(60, 85),
                "spo2_percent": rnd.randint(95, 100),
            },
            "symptoms": rnd.sample(["fatigue", "headache", "nausea", "loss_of_appetite"], rnd.randint(0, 2)),
            "neuro": {"ice_score": 10, "consciousness": "awake", "seizure": "none", "motor_weakness": "none",
                      "cerebral_edema": "none"},
        }  # fmt: skip
        v = doc["vitals"]
        if age < 16:  # children's normal ranges (PALS), so a normal child is not flagged
            v.update(heart_rate_bpm=rnd.randint(85, 100), respiratory_rate=rnd.randint(18, 20), systolic_bp=rnd.randint(100, 115))
        if kind >= 0.80:  # febrile
            v["temperature_c"] = round(rnd.uniform(38.0, 39.8), 1)
            v["heart_rate_bpm"] = rnd.randint(95, 125)
            doc["symptoms"] = ["fever", "chills"]
            if rnd.random() < 0.3:
                del v["systolic_bp"]
        if kind >= 0.92:  # grade 2-3
            doc["oxygen"] = {"device": rnd.choice(["nasal_cannula", "facemask"]), "flow_l_min": rnd.choice([2, 4, 8])}
            v["spo2_percent"] = rnd.randint(89, 94)
            v["systolic_bp"] = rnd.randint(82, 100)
        if kind >= 0.97:  # emergencies
            doc["oxygen"] = {"device": "bipap"}
            doc["vasopressors"] = {"count_excluding_vasopressin": 1, "vasopressin": True}
            doc["neuro"].update(ice_score=rnd.randint(0, 6), consciousness="awakens_to_voice")
            doc["symptoms"] = ["fever", "confusion", "difficulty_breathing"]
        out.append(json.dumps(doc).encode())
    return out


def timed(fn, items) -> float:
    t0 = time.perf_counter()
    fn(items)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    payloads = make_payloads(a.n)
    checkins = [parse_checkin(p) for p in payloads]
    urg = {}
    for c in checkins:
        u = evaluate(c).urgency.value
        urg[u] = urg.get(u, 0) + 1

    def both(items):
        for p in items:
            evaluate(parse_checkin(p))

    def parse_only(items):
        for p in items:
            parse_checkin(p)

    def eval_only(items):
        for c in items:
            evaluate(c)

    runs = {name: [a.n / timed(fn, items) for _ in range(a.repeats)]
            for name, fn, items in (("parse+evaluate", both, payloads), ("parse only", parse_only, payloads),
                                    ("evaluate only", eval_only, checkins))}  # fmt: skip
    print(f"check-ins: {a.n} per run, {a.repeats} runs, one core; urgency mix: {dict(sorted(urg.items()))}")
    for name, rates in runs.items():
        print(f"{name:15s} best {max(rates):>9,.0f}/s   median {statistics.median(rates):>9,.0f}/s   "
              f"({1e6 / statistics.median(rates):.1f} us each)")  # fmt: skip
    goal = 50_000
    best = max(runs["parse+evaluate"])
    print(f"goal >= {goal:,}/s: {'met' if best >= goal else 'NOT met'}")


if __name__ == "__main__":
    main()
