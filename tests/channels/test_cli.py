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


SHIPPED = Path(__file__).resolve().parents[2] / "config" / "channels.yaml"


def test_list_accepts_the_shipped_config_with_its_rate_limits(monkeypatch, capsys):
    monkeypatch.delenv("CRS_CHANNELS_PATH", raising=False)
    assert main(["channels", "list", "--config", str(SHIPPED)]) == 0
    out = capsys.readouterr().out
    assert "  sms (twilio_sms)" in out and "rate_per_minute" not in out


def test_list_and_test_default_to_crs_channels_path(tmp_path, env, http_server, monkeypatch, capsys):
    config = write_config(tmp_path, http_server.url_for("").rstrip("/"))
    monkeypatch.setenv("CRS_CHANNELS_PATH", config)
    assert main(["channels", "list"]) == 0
    assert f"channels ({config}):" in capsys.readouterr().out
    http_server.expect_oneshot_request(f"/2010-04-01/Accounts/{SID}/Messages.json").respond_with_json({"sid": "SM1"}, status=201)
    assert main(["channels", "test", "oncall-sms", "--to", "+15551230000"]) == 0
    assert "provider_id=SM1" in capsys.readouterr().out


def test_without_any_channels_file_list_shows_the_kinds_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CRS_CHANNELS_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["channels", "list"]) == 0
    out, err = capsys.readouterr()
    assert "twilio_sms" in out and "channels (" not in out and "config/channels.yaml does not exist" in err
    assert main(["channels", "test", "sms"]) == 2
    assert "channels file config/channels.yaml: not found" in capsys.readouterr().err


def test_a_named_channels_file_that_is_missing_is_an_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CRS_CHANNELS_PATH", str(tmp_path / "absent.yaml"))
    assert main(["channels", "list"]) == 2
    assert f"channels file {tmp_path / 'absent.yaml'}: not found" in capsys.readouterr().err


def test_a_secret_pasted_into_an_env_field_is_never_printed(tmp_path, monkeypatch, capsys):
    path = tmp_path / "channels.yaml"
    path.write_text(f'channels:\n  mail: {{kind: email, host: h, from_address: a@b.example, username: u, password_env: "Hunter2-{CANARY}!"}}\n'
                    f'  sms: {{kind: twilio_sms, account_sid: {SID}, auth_token_env: "9f8e7d6c5b{CANARY}", from_number: "+15005550006"}}\n')  # fmt: skip
    for argv in (["channels", "list", "--config", str(path)], ["channels", "test", "mail", "--config", str(path)]):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert "password_env: Value error, must name an environment variable" in err
        assert "auth_token_env: Value error, must name an environment variable" in err
        assert CANARY not in out + err


def test_list_masks_query_string_values_of_urls(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CRS_CHANNELS_PATH", raising=False)
    path = tmp_path / "channels.yaml"
    path.write_text(f"channels:\n  gw: {{kind: http_sms, url: 'https://gw.example/send?api_key={CANARY}&from=crs&flag'}}\n")
    assert main(["channels", "list", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "url: https://gw.example/send?api_key=***&from=***&***" in out and CANARY not in out


def test_test_checks_to_with_the_kinds_address_rule(tmp_path, env, capsys):
    config = write_config(tmp_path, "http://127.0.0.1:9")
    assert main(["channels", "test", "oncall-sms", "--config", config, "--to", "07700 900101"]) == 2
    err = capsys.readouterr().err
    assert "--to: recipient is not an E.164 phone number" in err and "07700" not in err
    assert main(["channels", "test", "hook", "--config", config, "--to", "+15551230000"]) == 2
    assert "--to: this channel has a fixed target; remove `to` (channel 'hook')" in capsys.readouterr().err
