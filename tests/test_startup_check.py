"""The start-up check of worker, scheduler, run and drain (worker.commands._common.check_rules): the
rules, the channels file and the contacts together; missing secrets are logged, not fatal."""

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from worker.commands._common import CommandError, check_rules
from worker.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "config" / "rules.yaml"
CHANNELS = ROOT / "config" / "channels.yaml"
SECRETS = ("TWILIO_AUTH_TOKEN", "CRS_SMTP_PASSWORD", "PAGERDUTY_ROUTING_KEY", "CRS_WEBHOOK_SECRET")


@pytest.fixture(autouse=True)
def no_secrets(monkeypatch):
    for name in SECRETS:
        monkeypatch.delenv(name, raising=False)


def refused(rules: Path = RULES, channels: Path = CHANNELS) -> str:
    with pytest.raises(CommandError) as info:
        check_rules(load_settings(rules_path=str(rules), channels_path=str(channels)))
    return str(info.value)


def test_the_shipped_rules_and_channels_start():
    with capture_logs() as logs:
        check_rules(load_settings(rules_path=str(RULES), channels_path=str(CHANNELS)))
    unusable = [e["reason"] for e in logs if e["event"] == "channel_unusable"]
    assert len(unusable) == 4 and all(e["log_level"] == "error" for e in logs if e["event"] == "channel_unusable")
    for name in SECRETS:  # each missing secret is logged at start-up, not only at the first page
        assert any(name in reason for reason in unusable), name


def test_a_missing_channels_file_refuses_to_start(tmp_path):
    message = refused(channels=tmp_path / "absent.yaml")
    assert f"channels file {tmp_path / 'absent.yaml'}: not found" in message
    assert f"CRS_CHANNELS_PATH={tmp_path / 'absent.yaml'}" in message


def test_every_invalid_entry_is_listed(tmp_path):
    channels = tmp_path / "channels.yaml"
    channels.write_text(CHANNELS.read_text().replace("rate_per_minute: 60", "rate_per_minute: sixty") + "  broken: oops\n")
    message = refused(channels=channels)
    assert "CRS_CHANNELS_PATH" in message
    assert "channel 'sms': rate_per_minute: must be a positive integer" in message
    assert "channel 'broken': must be a mapping with a 'kind'" in message


def test_a_failsafe_on_an_unknown_channel_or_a_bad_address_refuses_to_start(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES.read_text().replace('{channel: sms, to: "+447700900199"}', '{channel: fax, to: "+447700900199"}')
                     .replace("{channel: email, to: ward5b-desk@hospital.example}", "{channel: email, to: ward5b-desk}"))  # fmt: skip
    message = refused(rules=rules)
    assert "CRS_CHANNELS_PATH" in message
    assert "receivers.unit-desk.contacts.0.channel: channel 'fax' is not configured" in message
    assert "receivers.unit-desk.contacts.1.to: recipient is not an e-mail address" in message
    assert "ward5b-desk" not in message.replace("receivers.unit-desk", "")
