"""`crs-alert rules check` against the channels file: which file, located errors, no echoed values."""

import os
import subprocess
import sys
from pathlib import Path

CLI = str(Path(sys.executable).with_name("crs-alert"))
ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "rules.yaml"
SHIPPED = ROOT / "config" / "channels.yaml"


def run(*args, cwd=ROOT, **env):
    base = {k: v for k, v in os.environ.items() if not k.startswith("CRS_")}
    p = subprocess.run([CLI, "rules", "check", *args], capture_output=True, timeout=60, cwd=cwd, env={**base, **env})
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def test_the_shipped_rules_pass_against_the_shipped_channels():
    code, out, err = run(str(EXAMPLE), "--channels", str(SHIPPED))
    assert code == 0, out + err
    assert f"channels checked against {SHIPPED}" in out


def test_a_named_channels_file_that_does_not_exist_is_an_error(tmp_path):
    code, out, _ = run(str(EXAMPLE), "--channels", str(tmp_path / "absent.yaml"))
    assert code == 1 and f"channels file {tmp_path / 'absent.yaml'}: not found" in out
    code, out, _ = run(str(EXAMPLE), CRS_CHANNELS_PATH=str(tmp_path / "absent.yaml"))
    assert code == 1 and f"channels file {tmp_path / 'absent.yaml'}: not found" in out
    assert "channels not checked" not in out


def test_no_channels_file_at_all_skips_the_check_with_a_warning(tmp_path):
    code, out, err = run(str(EXAMPLE), cwd=tmp_path)  # no config/channels.yaml under tmp_path
    assert code == 0 and "channels not checked" in out
    assert err.startswith("warning: no channels file") and "contacts were not checked" in err


def test_a_broken_channels_file_is_located_without_noise_on_every_contact(tmp_path):
    channels = tmp_path / "channels.yaml"
    channels.write_text(SHIPPED.read_text().replace("    rate_per_minute: 60", "    rate_per_minute: sixty")
                        + "  broken: oops\n")  # fmt: skip
    code, out, _ = run(str(EXAMPLE), "--channels", str(channels))
    assert code == 1
    assert out.splitlines() == [
        f"channels file {channels}: channel 'sms': rate_per_minute: must be a positive integer (sends per minute)",
        f"channels file {channels}: channel 'broken': must be a mapping with a 'kind'",
    ]


def test_bad_addresses_and_unknown_channels_at_the_contact(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(EXAMPLE.read_text()
                     .replace('{channel: sms, to: "+447700900101"}', '{channel: sms, to: "07700 900101"}')
                     .replace("{channel: email, to: cart-coordinator@hospital.example}", "{channel: email, to: not-an-email}")
                     .replace("{channel: pagerduty}", "{channel: pager}")
                     .replace("{channel: ehr-webhook}", "{channel: ehr-webhook, to: hook@elsewhere.example}"))  # fmt: skip
    code, out, err = run(str(rules), "--channels", str(SHIPPED))
    assert code == 1, err
    assert out.splitlines() == [
        f"{rules}:13:24: receivers.charge-nurse.contacts.0.to: recipient is not an E.164 phone number "
        "(+ and country code, digits only, no spaces) (channel 'sms')",
        f"{rules}:19:10: receivers.oncall-fellow.contacts.1.channel: channel 'pager' is not configured; "
        "configured: ehr-webhook, email, pagerduty, sms",
        f"{rules}:28:26: receivers.cart-coordinator.contacts.0.to: recipient is not an e-mail address "
        "(like nurse@hospital.example) (channel 'email')",
        f"{rules}:32:32: receivers.ehr-inbox.contacts.0.to: this channel has a fixed target; remove `to` "
        "(channel 'ehr-webhook')",
    ]
    assert "07700" not in out and "not-an-email" not in out and "elsewhere" not in out
