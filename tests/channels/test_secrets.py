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
