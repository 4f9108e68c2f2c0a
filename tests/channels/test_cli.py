"""`crs-alert channels list|test` against real local servers; secrets never printed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.channels.conftest import CANARY
from tests.channels.kinds import SID, WEBHOOK_SECRET
from worker.cli import main
from worker.commands.channels import sample_content
from worker.messages import render


def write_config(tmp_path, base_url: str) -> str:  # noqa: ANN001
    path = tmp_path / "channels.yaml"
    path.write_text(
        f"""
channels:
  oncall-sms:
    kind: twilio_sms
    account_sid: {SID}
    auth_token_env: T_CLI_TWILIO
    from_number: "+15005550006"
    base_url: {base_url}
  hook:
    kind: webhook
    url: {base_url}/hook
    secret_env: T_CLI_HOOK
  slack:
    kind: slack
    url_env: T_CLI_SLACK
"""
    )
    return str(path)


@pytest.fixture
def env(monkeypatch):  # noqa: ANN001, ANN201
    monkeypatch.setenv("T_CLI_TWILIO", "tok-" + CANARY)
    monkeypatch.setenv("T_CLI_HOOK", WEBHOOK_SECRET)
    monkeypatch.delenv("T_CLI_SLACK", raising=False)


def test_list_masks_secrets(tmp_path, env, capsys):
    assert main(["channels", "list", "--config", write_config(tmp_path, "http://127.0.0.1:9")]) == 0
    out = capsys.readouterr().out
    assert "twilio_sms   worker.channels.twilio:TwilioChannel  (crs-alert 0.1.0; not secure)" in out
    assert "  oncall-sms (twilio_sms)" in out
    assert "auth_token_env: T_CLI_TWILIO (set)" in out
    assert "url_env: T_CLI_SLACK (NOT SET)" in out
    assert CANARY not in out and WEBHOOK_SECRET not in out


def test_list_reports_config_errors(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("channels:\n  x: {kind: email, host: h, from_address: a@b.example, password: " + CANARY + "}\n")
    assert main(["channels", "list", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "channel 'x' (email): password: unknown field" in err and CANARY not in err


def test_duplicate_yaml_keys_are_an_error(tmp_path, capsys):
    path = tmp_path / "dup.yaml"
    path.write_text("channels:\n  a: {kind: slack, url_env: A}\n  a: {kind: slack, url_env: B}\n")
    assert main(["channels", "list", "--config", str(path)]) == 2
    assert "invalid YAML" in capsys.readouterr().err


def test_test_command_sends_a_test_sms(tmp_path, env, http_server, capsys):
    config = write_config(tmp_path, http_server.url_for("").rstrip("/"))
    http_server.expect_oneshot_request(f"/2010-04-01/Accounts/{SID}/Messages.json").respond_with_json(
        {"sid": "SMtest", "status": "queued"}, status=201
    )
    assert main(["channels", "test", "oncall-sms", "--config", config, "--to", "+15551230000"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("oncall-sms: sent reference=test-") and "provider_id=SMtest" in out
    body = http_server.log[0][0].form["Body"]
    assert body.startswith("TEST, no action: ROUTINE crs-alert pt TEST:") and body.endswith("Reply ACK TEST")


def test_test_command_reports_the_classified_error(tmp_path, env, http_server, capsys):
    config = write_config(tmp_path, http_server.url_for("").rstrip("/"))
    http_server.expect_request("/hook").respond_with_data("overloaded", status=503, headers={"Retry-After": "30"})
    assert main(["channels", "test", "hook", "--config", config]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "hook: FAILED (retryable) status=503 retry_after=30.0: webhook responded 503: overloaded"


def test_test_command_missing_secret_and_unknown_name(tmp_path, env, capsys):
    config = write_config(tmp_path, "http://127.0.0.1:9")
    assert main(["channels", "test", "slack", "--config", config]) == 2
    assert "url_env: environment variable T_CLI_SLACK is not set or empty" in capsys.readouterr().err
    assert main(["channels", "test", "nope", "--config", config]) == 2
    assert "no channel 'nope'" in capsys.readouterr().err


def test_example_config_is_valid(capsys):
    example = Path(__file__).resolve().parents[2] / "config" / "channels.example.yaml"
    assert main(["channels", "list", "--config", str(example)]) == 0
    out = capsys.readouterr().out
    for kind in ("email", "twilio_sms", "http_sms", "webhook", "pagerduty", "slack", "teams"):
        assert f"({kind})" in out


def test_test_content_renders_for_every_style():
    content = sample_content()
    assert render(content, "email", True, None).subject.startswith("[TEST] [ROUTINE]")
    assert "Infection cannot be excluded by this assessment" in render(content, "email", True, None).text
