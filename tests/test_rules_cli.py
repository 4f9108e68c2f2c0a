"""`crs-alert rules check` and `crs-alert rules test`, run as real subprocesses."""

import json
import subprocess
import sys
from pathlib import Path

from tests.factories import baseline

CLI = str(Path(sys.executable).with_name("crs-alert"))
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "rules.yaml"


def run(*args, stdin=b"", cwd=ROOT):
    p = subprocess.run([CLI, "rules", *args], input=stdin, capture_output=True, timeout=60, cwd=cwd)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_check_the_shipped_example_ok():
    code, out, _ = run("check", str(EXAMPLE))
    assert code == 0
    assert "OK (sha256" in out and "6 receivers, 3 escalation policies" in out


def test_check_defaults_to_config_rules_yaml():
    assert run("check")[0] == 0


def test_check_reports_every_error_with_file_and_line(tmp_path):
    bad = tmp_path / "rules.yaml"
    bad.write_text(EXAMPLE.read_text().replace("failsafe: unit-desk\n    failsafe_repeat_every: 5m",
                                               "failsafe: unit-dsk\n    failsafe_repeat_every: 5m")
                   .replace('"crs_grade >= 3"', '"crs_grade >= three"'))  # fmt: skip
    code, out, err = run("check", str(bad))
    assert code == 1
    lines = out.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{bad}:") and "undefined receiver 'unit-dsk'" in lines[0]
    assert "crs_grade needs an integer" in lines[1]
    assert "2 error(s); the file was not accepted" in err


def test_check_missing_file_exits_2(tmp_path):
    code, _, err = run("check", str(tmp_path / "nope.yaml"))
    assert code == 2 and "cannot read" in err


def test_check_does_not_echo_values_of_duplicate_keys(tmp_path):
    bad = tmp_path / "rules.yaml"
    text = EXAMPLE.read_text()
    bad.write_text(text.replace("  unit-desk:\n", "  unit-desk:\n    description: secret-canary-value\n    description: other\n", 1))
    code, out, _ = run("check", str(bad))
    assert code == 1 and "duplicate key 'description'" in out
    assert "secret-canary-value" not in out


def test_test_prints_route_receivers_and_timeline():
    doc = baseline(vitals={"temperature_c": 38.6}, oxygen={"device": "facemask"})
    code, out, _ = run("test", "-", "--rules", str(EXAMPLE), "--at", "2026-11-25T09:00:00Z", stdin=json.dumps(doc).encode())
    assert code == 0
    assert "CRS 3" in out and "route: (root) -> emergency" in out and "informational: ehr-inbox" in out
    timeline = [line.split()[:3] for line in out.splitlines() if line.strip().startswith("+")]
    assert timeline[0] == ["+", "0m", "step"] and timeline[-1][1] == "15m"
    assert "failsafe         unit-desk" in out
    assert "until someone acknowledges" in out


def test_test_shows_a_non_paging_route_and_quiet_hours():
    normal = json.dumps(baseline()).encode()
    code, out, _ = run("test", "-", "--at", "2026-11-25T09:00:00Z", stdin=normal)
    assert code == 0 and "paging: none" in out
    routine = json.dumps(baseline(symptoms=["fatigue"])).encode()
    code, out, _ = run("test", "-", "--at", "2026-11-25T23:00:00Z", stdin=routine)
    assert "quiet hours: pages deferred until 2026-11-26T07:00:00+00:00" in out


def test_test_reports_invalid_checkins():
    code, out, _ = run("test", "-", stdin=b'{"checkin_id": "x"}\n')
    assert code == 1 and "invalid" in out


def test_check_cross_checks_contacts_against_the_channels_file(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(EXAMPLE.read_text().replace("channel: pagerduty", "channel: pager"))
    code, out, _ = run("check", str(rules), "--channels", str(ROOT / "config" / "channels.yaml"))
    assert code == 1
    assert "receivers.oncall-fellow.contacts.1.channel: channel 'pager' is not configured" in out
    assert run("check", str(rules), "--channels", "none")[0] == 0


def test_check_reports_channel_config_errors_without_echoing_secrets(tmp_path):
    channels = tmp_path / "channels.yaml"
    channels.write_text((ROOT / "config" / "channels.yaml").read_text().replace(
        "auth_token_env: TWILIO_AUTH_TOKEN", "auth_token: sk-live-CANARY-0123456789"))
    code, out, err = run("check", str(EXAMPLE), "--channels", str(channels))
    assert code == 1
    assert "sms" in out and "CANARY" not in out + err


def test_check_validates_message_templates(tmp_path):
    (tmp_path / "email.subject.j2").write_text("CRS {{ crs_grade }} {{ nosuchvar }}")
    (tmp_path / "fax.text.j2").write_text("x")
    code, out, _ = run("check", str(EXAMPLE), "--templates", str(tmp_path))
    assert code == 1
    assert "email.subject: undefined variable: 'nosuchvar' is undefined" in out
    assert "unknown channel kind 'fax'" in out
    (tmp_path / "email.subject.j2").write_text("[{{ urgency | upper }}] alert {{ alert_code }}")
    (tmp_path / "fax.text.j2").unlink()
    assert run("check", str(EXAMPLE), "--templates", str(tmp_path))[0] == 0
