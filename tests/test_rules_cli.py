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
    assert "quiet hours: pages deferred until 2026-11-26T07:00:00+00:00; the escalation starts then" in out
    timeline = [line.split()[:2] for line in out.splitlines() if line.strip().startswith("+")]
    assert timeline[0] == ["+", "480m"] and timeline[1] == ["+", "720m"]  # 07:00, then 4h later the failsafe


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


def test_check_a_huge_duration_is_an_error_not_a_traceback(tmp_path):
    bad = tmp_path / "rules.yaml"
    bad.write_text(EXAMPLE.read_text().replace("ack_within: 4h", "ack_within: 99999999999d"))
    code, out, err = run("check", str(bad))
    assert code == 1 and "Traceback" not in err
    assert "escalation_policies.routine-review.steps.0.ack_within: a duration is at most 7d" in out
    assert "99999" not in out + err


def test_check_prints_warnings_and_still_accepts_the_file(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(EXAMPLE.read_text().replace("receivers:\n", "receivers:\n  spare:\n    contacts: [{channel: email, to: x@hospital.example}]\n", 1))
    code, out, _ = run("check", str(rules), "--channels", "none")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0] == (f"warning: {rules}:10:3: receivers.spare: receiver 'spare' is not used by any escalation policy "
                        "or route; remove it or use it")  # fmt: skip
    assert "OK (sha256" in lines[-1] and len(lines) == 2


def test_check_the_shipped_example_has_no_warnings():
    assert "warning" not in run("check", str(EXAMPLE))[1]


def test_test_rejects_a_malformed_label_and_time_with_a_usage_error():
    stdin = json.dumps(baseline()).encode()
    code, _, err = run("test", "-", "--label", "trial=ZUMA-7", "--label", "foo", stdin=stdin)
    assert code == 2 and "argument --label: 'foo' is not KEY=VALUE" in err
    code, _, err = run("test", "-", "--label", "=x", stdin=stdin)
    assert code == 2 and "argument --label" in err
    code, _, err = run("test", "-", "--at", "yesterday", stdin=stdin)
    assert code == 2 and "argument --at: 'yesterday' is not an RFC 3339 time" in err and "Traceback" not in err
    code, _, err = run("test", "-", "--at", "2026-11-25T09:00:00", stdin=stdin)
    assert code == 2 and "needs a UTC offset" in err


def test_test_labels_reach_the_matchers(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(EXAMPLE.read_text().replace("    - name: emergency\n", "    - name: trial\n      match: ['labels.trial == ZUMA-7']\n"
                                                 "      policy: emergency\n    - name: emergency\n", 1))  # fmt: skip
    stdin = json.dumps(baseline(symptoms=["fatigue"])).encode()
    assert "route: (root) -> trial" in run("test", "-", "--rules", str(rules), "--label", "trial=ZUMA-7", stdin=stdin)[1]
    assert "route: (root) -> routine" in run("test", "-", "--rules", str(rules), "--label", "trial=other", stdin=stdin)[1]


def test_test_a_silenced_checkin_says_no_pages_go_out_while_the_silence_holds(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(EXAMPLE.read_text().replace("silences: []", (
        "silences:\n  - id: admitted\n    match: ['patient_id == P-test']\n    starts: 2026-11-25T08:00:00Z\n"
        "    ends: 2026-11-25T09:12:00Z\n    max_urgency: urgent\n    reason: on the ward\n    author: dr.lee")))  # fmt: skip
    urgent = json.dumps(baseline(vitals={"temperature_c": 38.2})).encode()
    code, out, _ = run("test", "-", "--rules", str(rules), "--at", "2026-11-25T09:00:00Z", stdin=urgent)
    assert code == 0
    assert "NOTE: silenced by admitted until 2026-11-25T09:12:00+00:00 (on the ward): no pages go out while it holds" in out
    timeline = [line.split()[0] + ("held" if "(silenced: not sent)" in line else "") for line in out.splitlines()
                if line.strip().startswith("+")]  # fmt: skip
    assert timeline[:4] == ["+held", "+held", "+held", "+"]  # 0m, 5m, 10m are held back; 15m (after 09:12) goes out
