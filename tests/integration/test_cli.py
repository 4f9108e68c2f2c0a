"""The `crs-alert` commands as an operator runs them: real processes, real Redis and databases."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis as redis_lib

from tests.integration.helpers import febrile, wait_for
from worker.redis_bootstrap import answers, resolve

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "config" / "sample-checkins.jsonl"
PATIENTS = ROOT / "config" / "sample-patients.jsonl"


@pytest.fixture
def make_cli(service_env):
    def make(db_url: str):
        return _cli(service_env(db_url))

    return make


@pytest.fixture
def cli(make_cli, db_url):
    return make_cli(db_url)


def _cli(env: dict):
    def run(*args: str, input: bytes | None = None, extra_env: dict | None = None, timeout: float = 120):
        return subprocess.run([sys.executable, "-m", "worker.cli", *args], env={**env, **(extra_env or {})}, cwd=ROOT,
                              input=input, capture_output=True, timeout=timeout)

    run.env = env
    return run


def _head() -> str:
    from alembic.script import ScriptDirectory

    from worker.store.db import alembic_config, make_engine

    return ScriptDirectory.from_config(alembic_config(make_engine("sqlite://"))).get_current_head()


def test_db_upgrade_then_current(cli):
    head = _head()
    done = cli("db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert f"at revision {head}".encode() in done.stdout
    assert cli("db", "current").stdout.strip() == head.encode()
    assert cli("db", "upgrade").returncode == 0  # idempotent


def test_submit_drain_status_round_trip(cli):
    assert cli("db", "upgrade").returncode == 0
    enrolled = cli("patients", "enroll", "--file", str(PATIENTS))
    assert json.loads(enrolled.stdout) == {"enrolled": 6, "updated": 0}, enrolled.stderr
    listed = [json.loads(line) for line in cli("patients", "list", "--json").stdout.splitlines()]
    assert [p["patient_id"] for p in listed][:2] == ["DEMO-A01", "DEMO-B02"] and listed[0]["unit"] == "haem-onc-4"

    sub = cli("submit", str(SAMPLES))
    assert sub.returncode == 0, sub.stderr
    assert json.loads(sub.stdout)["submitted"] == 11
    piped = cli("submit", "-", input=json.dumps(febrile("stdin-1", "DEMO-F06", minutes=120)).encode() + b"\n\n")
    assert json.loads(piped.stdout)["submitted"] == 1  # blank lines are skipped

    drained = cli("drain")  # no channel secret is set here: every page of the run dead-letters
    assert drained.returncode == 1, drained.stderr
    report = json.loads(drained.stdout)
    assert (report["evaluated"], report["rejected"], report["duplicates"], report["acked"]) == (10, 1, 1, 12)
    assert report["notifications_failed"] > 0 and report["notifications_sent"] == 0
    assert f"{report['notifications_failed']} notification(s) of this run failed permanently (dead-lettered)".encode() in drained.stderr

    status = json.loads(cli("status", "--json").stdout)
    c = status["counts"]
    assert (c["received"], c["evaluated"], c["rejected"], c["duplicates"], c["pending"]) == (12, 10, 1, 1, 0)
    latest = {e["patient_id"]: e for e in status["latest"]}
    assert latest["DEMO-C03"]["urgency"] == "emergency" and latest["DEMO-C03"]["crs_grade"] == 3
    assert latest["DEMO-B02"]["checkin_id"] == "demo-0009"  # the later check-in is the current state
    assert status["latest"][0]["urgency"] == "emergency"  # most urgent first
    human = cli("status").stdout.decode()
    assert "received 12" in human and "DEMO-C03" in human


def test_drain_exits_0_when_every_page_of_the_run_was_sent(cli, tmp_path, httpserver):
    """The counterpart of the round trip's exit 1: with a channel that works, the same command exits 0."""
    import base64

    httpserver.expect_request("/hook", method="POST").respond_with_data("{}", status=200)
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\n"
                     "receivers:\n  desk: {contacts: [{channel: hook}]}\n"
                     "escalation_policies:\n  p: {steps: [{notify: [desk], ack_within: 10m}], failsafe: desk}\n"
                     "routes: {policy: p}\n")  # fmt: skip
    channels = tmp_path / "channels.yaml"
    channels.write_text(f"channels:\n  hook:\n    kind: webhook\n    url: {httpserver.url_for('/hook')}\n"
                        "    secret_env: CRS_TEST_HOOK_SECRET\n")
    env = {"CRS_RULES_PATH": str(rules), "CRS_CHANNELS_PATH": str(channels),
           "CRS_TEST_HOOK_SECRET": "whsec_" + base64.b64encode(b"k" * 32).decode()}
    assert cli("db", "upgrade").returncode == 0
    emergency = {**febrile("hook-1", "P-hook", temp=39.6), "vitals": {"temperature_c": 39.6, "systolic_bp": 70}}
    assert cli("submit", "-", input=json.dumps(emergency).encode(), extra_env=env).returncode == 0
    drained = cli("drain", extra_env=env)
    assert drained.returncode == 0, drained.stderr
    report = json.loads(drained.stdout)
    assert report["evaluated"] == 1 and report["notifications_sent"] >= 1 and report["notifications_failed"] == 0
    assert len(httpserver.log) == report["notifications_sent"]


def test_invalid_enrollment_names_the_line_and_field(cli, tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"patient_id": "OK-1"}\n{"patient_id": "OK-2", "age_years": 300, "ward": "x"}\n')
    done = cli("patients", "enroll", "--file", str(bad))
    assert done.returncode == 2
    err = done.stderr.decode()
    assert "line 2" in err and "age_years" in err and "ward" in err


def test_a_bad_setting_stops_every_command_with_the_variable_named(cli):
    done = cli("drain", extra_env={"CRS_BATCH_SIZE": "zero"})
    assert done.returncode == 2
    assert b"CRS_BATCH_SIZE" in done.stderr and b"integer" in done.stderr


def test_submit_of_a_missing_file_is_a_clear_error(cli):
    done = cli("submit", "/nonexistent/x.jsonl")
    assert done.returncode == 2 and b"cannot read /nonexistent/x.jsonl" in done.stderr


def test_run_starts_worker_and_scheduler_and_ctrl_c_stops_both(cli, tmp_path):
    assert cli("db", "upgrade").returncode == 0
    log = open(tmp_path / "run.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "run"], env=cli.env, cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        sub = cli("submit", str(SAMPLES))
        assert sub.returncode == 0
        wait_for(lambda: json.loads(cli("status", "--json").stdout)["counts"]["received"] == 11, 60, interval=0.5,
                 what="`run` to process the samples")
        time.sleep(1)
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    text = (tmp_path / "run.log").read_text()
    assert "stopped (worker 0, scheduler 0)" in text
    children = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True).stdout
    assert children == b""  # nothing left running in the session


def test_run_starts_a_killed_worker_again_and_nothing_is_lost(cli, tmp_path):
    """kill -9 of the worker's process group under `crs-alert run`: run starts it again and the
    check-ins submitted before and after are all processed."""
    assert cli("db", "upgrade").returncode == 0
    log = open(tmp_path / "run.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "run"], env=cli.env, cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        first = wait_for(lambda: re.search(rb"worker pid (\d+)", (tmp_path / "run.log").read_bytes()), 60,
                         what="`run` to start the worker")
        worker_pid = int(first.group(1))
        assert cli("submit", str(SAMPLES)).returncode == 0
        wait_for(lambda: json.loads(cli("status", "--json").stdout)["counts"]["received"] == 11, 60, interval=0.5,
                 what="`run` to process the samples")
        os.killpg(worker_pid, signal.SIGKILL)  # the worker and its prefork children
        again = wait_for(lambda: re.search(rb"worker exited unexpectedly \(exit -9\); started again, pid (\d+)",
                                           (tmp_path / "run.log").read_bytes()), 30, what="`run` to restart the worker")
        assert int(again.group(1)) != worker_pid
        more = tmp_path / "more.jsonl"
        more.write_text(json.dumps(febrile("run-more-1", "P-run")) + "\n")
        assert cli("submit", str(more)).returncode == 0
        wait_for(lambda: json.loads(cli("status", "--json").stdout)["counts"]["evaluated"] == 10, 60, interval=0.5,
                 what="the restarted worker to process the next check-in")
        assert proc.poll() is None  # run itself carried on
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_demo_end_to_end(make_cli, sqlite_url):
    cli = make_cli(sqlite_url)  # the demo makes its own SQLite database under CRS_VAR_DIR anyway
    done = cli("demo", timeout=180)
    out = done.stdout.decode()
    assert done.returncode == 0, out + done.stderr.decode()
    assert "Totals: received 11, evaluated 9, rejected 1, duplicates 1" in out
    assert "demo-0004" in out and "emergency" in out and "vitals.temperature_c" in out
    assert "stopped worker and scheduler (exit 0, 0)" in out
    log = (Path(cli.env["CRS_VAR_DIR"]) / "demo" / "services.log").read_text()
    assert "bolus" not in log and "registrar" not in log  # the note (free text) never reaches a log
    r = redis_lib.Redis.from_url(cli.env["REDIS_URL"])
    assert not list(r.scan_iter(match=f"{cli.env['CRS_NAMESPACE']}-demo-*"))  # demo keys removed


def test_private_redis_is_started_then_reused(tmp_path):
    first = resolve(None, tmp_path, try_local=False)
    try:
        assert first.source == "private (started)" and answers(first.url)
        assert redis_lib.Redis.from_url(first.url).config_get("appendonly")["appendonly"] == "yes"
        second = resolve(None, tmp_path, try_local=False)
        assert second.source == "private (reused)" and second.url == first.url
    finally:
        first.stop()
    assert not answers(first.url)
    assert (tmp_path / "redis" / "appendonlydir").is_dir()


def test_an_unreachable_database_is_a_clear_error(make_cli):
    cli = make_cli("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    done = cli("drain")
    assert done.returncode == 2
    assert b"database postgresql+psycopg://postgres@127.0.0.1:1/nowhere is unavailable" in done.stderr


def test_submit_validate_refuses_a_file_with_an_invalid_line(cli, r):
    done = cli("submit", "--validate", str(SAMPLES))
    assert done.returncode == 1
    lines = done.stderr.decode().splitlines()
    report = json.loads(lines[0])
    assert report["line"] == 8 and report["checkin_id"] == "demo-0008"
    assert {e["loc"] for e in report["errors"]} == {"vitals.temperature_c", "vitals.heart_rate_bpm", "symptoms.1"}
    assert "nothing submitted" in lines[-1]
    assert r.exists(f"{cli.env['CRS_NAMESPACE']}:checkins") == 0


def test_no_redis_anywhere_is_a_clear_error_saying_how_to_get_one(tmp_path, monkeypatch):
    from worker.redis_bootstrap import RedisUnavailable

    monkeypatch.setenv("PATH", str(tmp_path))  # no redis-server on PATH
    with pytest.raises(RedisUnavailable) as info:
        resolve(None, tmp_path / "var", try_local=False)
    text = str(info.value)
    assert "REDIS_URL" in text and "apt-get install redis-server" in text


def test_an_enrollment_file_with_several_bad_lines_names_each_and_enrolls_nothing(cli, tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_bytes(b'{"patient_id": "OK-1"}\n{"patient_id": "P-2", "unit": "caf\xe9"}\n'
                    b'{"patient_id": "P-3", "age_years": true}\n{"patient_id": "P-4", "checkin_interval_h": "8"}\n')
    assert cli("db", "upgrade").returncode == 0
    done = cli("patients", "enroll", "--file", str(bad))
    err = done.stderr.decode()
    assert done.returncode == 2 and "Traceback" not in err, err
    assert "3 invalid lines; nothing enrolled" in err
    assert "line 2: (document): Not valid UTF-8: byte 0xe9 at offset 34" in err and "line 3: age_years" in err and "line 4: checkin_interval_h" in err
    assert cli("patients", "list", "--json").stdout == b""


def test_submit_validate_numbers_lines_as_the_file_does_and_names_a_bom(cli, tmp_path):
    good = json.dumps(febrile("v-1", "DEMO-A01")).encode()
    path = tmp_path / "c.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + good + b"\n\n\n" + good.replace(b'"v-1"', b'"v-2"')[:-1] + b', "note": "caf\xe9"}\n')
    done = cli("submit", "--validate", str(path))
    assert done.returncode == 1
    first, second = (json.loads(line) for line in done.stderr.decode().splitlines()[:2])
    assert first["line"] == 1 and first["checkin_id"] == "v-1" and "byte order mark (BOM" in first["errors"][0]["msg"]
    assert second["line"] == 4 and second["errors"][0]["msg"].startswith("Not valid UTF-8: byte 0xe9 at offset ")


def test_submit_of_an_empty_file_warns(cli, tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"\n  \n")
    done = cli("submit", str(path))
    assert done.returncode == 0 and json.loads(done.stdout)["submitted"] == 0
    assert b"warning" in done.stderr and b"holds no check-in" in done.stderr
