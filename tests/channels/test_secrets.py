"""Canary secrets never appear in a config's repr/str/dump, a channel's repr, or its errors."""

from __future__ import annotations

import pytest

from tests.channels.conftest import CANARY
from tests.channels.kinds import HTTP_KINDS
from worker.channels.base import DeliveryError
from worker.channels.email import EmailChannel, EmailConfig


def _views(channel) -> list[str]:  # noqa: ANN001
    cfg = channel.config
    return [repr(cfg), str(cfg), cfg.model_dump_json(), repr(cfg.model_dump()), repr(channel), str(channel)]


@pytest.mark.parametrize("kind", sorted(HTTP_KINDS))
def test_http_channel_views_hide_the_secret(kind, monkeypatch, refused_url):
    channel, _, message = HTTP_KINDS[kind](refused_url, monkeypatch)
    for view in _views(channel):
        assert CANARY not in view
    with pytest.raises(DeliveryError) as info:
        channel.send(message)
    assert CANARY not in str(info.value) and CANARY not in repr(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no chained exception with the URL


def test_email_views_hide_the_password(monkeypatch, tmp_path):
    path = tmp_path / "pw"
    path.write_text(CANARY)
    cfg = EmailConfig.model_validate(
        {"host": "127.0.0.1", "port": 1, "username": "u", "password_file": str(path), "from_address": "a@b.example"}
    )
    channel = EmailChannel("mail", cfg)
    for view in _views(channel):
        assert CANARY not in view
    assert CANARY not in repr(channel._password) and channel._password.get_secret_value() == CANARY


def test_outbound_message_repr_has_no_body_or_address():
    from tests.channels.conftest import make_message

    text = repr(make_message())
    assert text == "OutboundMessage(reference='ntf-123', alert_id=42, event='alert.triggered')"


def test_every_secret_is_indirect_in_every_builtin_config():
    """Invariant: a secret is named by *_env/*_file only; no field could hold a secret inline."""
    import re

    from worker.channels.registry import load_channel_kinds

    for kind, cls in load_channel_kinds().items():
        fields = set(cls.Config.model_fields)
        for name in cls.Config.secret_fields:
            assert {f"{name}_env", f"{name}_file"} <= fields, kind
        inline = {f for f in fields if re.search(r"password|token|secret|routing_key", f) and not f.endswith(("_env", "_file"))}
        assert not inline, f"{kind}: {sorted(inline)} would hold a secret inline"


def test_unencodable_payload_is_permanent_and_nothing_is_sent(http_server, monkeypatch):
    """send() raises only DeliveryError: a payload that is not JSON never reaches the server."""
    from tests.channels.kinds import pagerduty, webhook

    for build in (webhook, pagerduty):
        channel, path, message = build(http_server.url_for("").rstrip("/"), monkeypatch)
        import dataclasses

        bad = dataclasses.replace(message, payload={"x": object()})
        with pytest.raises(DeliveryError) as info:
            channel.send(bad)
        assert info.value.outcome.value == "permanent"
    assert http_server.log == []


PASTED = "Hunter2-Secret!9f8e7d6c5b"  # what a secret pasted into an *_env field looks like


def _env_fields():  # every (kind, *_env field) of the built-in kinds
    from worker.channels.registry import load_channel_kinds

    return [(kind, f) for kind, cls in sorted(load_channel_kinds().items()) for f in cls.Config.model_fields if f.endswith("_env")]


VALID = {
    "email": {"host": "h", "from_address": "a@b.example", "username": "u"},
    "http_sms": {"url": "https://gw.example/sms"},
    "pagerduty": {},
    "slack": {},
    "teams": {},
    "twilio_sms": {"account_sid": "AC" + "0" * 32, "from_number": "+15005550006"},
    "webhook": {"url": "https://ehr.example/hook"},
}


@pytest.mark.parametrize(("kind", "field"), _env_fields())
def test_a_secret_pasted_into_an_env_field_is_refused_without_echo(kind, field):
    """Config validation (rules check, channels list, start-up), not the first send, refuses it."""
    from worker.channels.registry import ChannelConfigError, validate_channel_specs

    spec = {"kind": kind, **VALID[kind], field: PASTED}
    if field != "password_env" and kind == "email":
        spec["password_env"] = "T_PW"
    with pytest.raises(ChannelConfigError) as info:
        validate_channel_specs({"x": spec})
    assert f"channel 'x' ({kind}): {field}: Value error, must name an environment variable" in str(info.value)
    assert "not hold the secret itself" in str(info.value) and PASTED not in str(info.value)


def test_resolve_secret_does_not_echo_an_invalid_name():
    from worker.channels.base import ConfigurationError, resolve_secret
    from worker.channels.chat import ChatConfig

    config = ChatConfig.model_construct(url_env=PASTED, url_file=None)  # as if validation were bypassed
    with pytest.raises(ConfigurationError) as info:
        resolve_secret(config, "url", environ={})
    assert str(info.value) == "url_env: must name an environment variable (letters, digits, _), not hold the secret itself"


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("webhook", "url", "https://user:pw@ehr.example/hook"),
        ("http_sms", "url", "https://token@gw.example/sms"),
        ("twilio_sms", "base_url", "https://AC1:tok@api.twilio.example"),
        ("twilio_sms", "status_callback", "https://u:p@cb.example/status"),
        ("pagerduty", "base_url", "https://k:v@events.example"),
    ],
)
def test_urls_carrying_credentials_are_refused(kind, field, value):
    from worker.channels.registry import ChannelConfigError, validate_channel_specs

    spec = {"kind": kind, **VALID[kind], field: value, **({"secret_env": "S"} if kind == "webhook" else {}),
            **({"auth_token_env": "T"} if kind == "twilio_sms" else {}), **({"routing_key_env": "K"} if kind == "pagerduty" else {})}  # fmt: skip
    with pytest.raises(ChannelConfigError) as info:
        validate_channel_specs({"x": spec})
    text = str(info.value)
    assert f"{field}: Value error, must not carry credentials (user:password@host)" in text and "*_env or *_file" in text
    assert "pw@" not in text and "tok@" not in text


@pytest.mark.parametrize("kind", ["slack", "teams"])
def test_a_chat_url_with_credentials_is_refused_when_built(kind, monkeypatch):
    from worker.channels.registry import ChannelConfigError, build_channels

    monkeypatch.setenv("T_CHAT_URL", f"https://user:{CANARY}@hooks.example/x")
    with pytest.raises(ChannelConfigError) as info:
        build_channels({"chat": {"kind": kind, "url_env": "T_CHAT_URL"}})
    assert "url_env T_CHAT_URL: the URL must not carry credentials" in str(info.value) and CANARY not in str(info.value)
