"""Standard Webhooks: the receiver verifies every request with the standardwebhooks library."""

from __future__ import annotations

import json

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from werkzeug import Response

from tests.channels.conftest import CANARY
from tests.channels.kinds import WEBHOOK_SECRET, webhook
from worker.channels.base import ConfigurationError
from worker.channels.webhook import WebhookChannel, WebhookConfig
from worker.messages import FIXTURES, render


def receiver(verified: list, secret: str = WEBHOOK_SECRET):  # noqa: ANN001, ANN201
    def handle(request):  # noqa: ANN001, ANN202
        try:
            verified.append((Webhook(secret).verify(request.get_data(), dict(request.headers)), dict(request.headers)))
        except WebhookVerificationError as exc:
            return Response(f"bad signature: {exc}", status=400)
        return Response("", status=204)

    return handle


def test_signed_payload_verifies_with_the_library(http_server, monkeypatch):
    channel, path, _ = webhook(http_server.url_for("").rstrip("/"), monkeypatch)
    from tests.channels.conftest import make_message

    payload = render(FIXTURES[0], "webhook", True, None).payload
    message = make_message(to="", payload=payload)
    verified: list = []
    http_server.expect_request(path, method="POST").respond_with_handler(receiver(verified))
    receipt = channel.send(message)
    [(body, headers)] = verified
    assert body == payload
    assert body["alert"]["advice"].count("Infection cannot be excluded by this assessment") == 1
    assert headers["Webhook-Id"] == "ntf-123" == receipt.provider_id
    assert headers["Content-Type"] == "application/json"
    raw = http_server.log[0][0].get_data()
    assert raw == json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()  # minified, exact bytes


def test_retry_keeps_the_webhook_id(http_server, monkeypatch):
    """Receivers deduplicate on webhook-id: a resend of the same notification has the same id."""
    channel, path, message = webhook(http_server.url_for("").rstrip("/"), monkeypatch)
    verified: list = []
    http_server.expect_request(path).respond_with_handler(receiver(verified))
    channel.send(message)
    channel.send(message)
    assert [h["Webhook-Id"] for _, h in verified] == ["ntf-123", "ntf-123"]


def test_receiver_with_another_secret_rejects(http_server, monkeypatch):
    """The signature really depends on the key: a receiver with another secret refuses (400 -> PERMANENT)."""
    from worker.channels.base import DeliveryError, Outcome

    channel, path, message = webhook(http_server.url_for("").rstrip("/"), monkeypatch)
    other = "whsec_" + "b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldC0xMjM0NTY="
    verified: list = []
    http_server.expect_request(path).respond_with_handler(receiver(verified, other))
    with pytest.raises(DeliveryError) as info:
        channel.send(message)
    assert info.value.outcome is Outcome.PERMANENT and verified == []


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("whsec_***not-base64***", "not a whsec_ base64 secret"),
        ("whsec_c2hvcnQ=", "at least 24 bytes"),
    ],
)
def test_bad_secret_is_a_configuration_error(value, error, monkeypatch):
    monkeypatch.setenv("T_HOOK", value)
    cfg = WebhookConfig.model_validate({"url": "https://example.org/hook", "secret_env": "T_HOOK"})
    with pytest.raises(ConfigurationError, match=error) as info:
        WebhookChannel("hook", cfg)
    assert "T_HOOK" in str(info.value) and value not in str(info.value)


def test_secret_from_file(tmp_path, http_server):
    path = tmp_path / "secret"
    path.write_text(WEBHOOK_SECRET + "\n")
    cfg = WebhookConfig.model_validate({"url": http_server.url_for("/hook"), "secret_file": str(path)})
    verified: list = []
    http_server.expect_request("/hook").respond_with_handler(receiver(verified))
    from tests.channels.conftest import make_message

    WebhookChannel("hook", cfg).send(make_message(to=""))
    assert len(verified) == 1 and CANARY not in repr(cfg)


def test_one_channel_object_is_safe_across_threads(http_server, monkeypatch):
    """The dispatcher may share a channel between threads: 40 concurrent sends, 40 verified requests."""
    import dataclasses
    from concurrent.futures import ThreadPoolExecutor

    channel, path, message = webhook(http_server.url_for("").rstrip("/"), monkeypatch)
    verified: list = []
    http_server.expect_request(path).respond_with_handler(receiver(verified))
    messages = [dataclasses.replace(message, reference=f"ntf-{i}") for i in range(40)]
    with ThreadPoolExecutor(8) as pool:
        receipts = list(pool.map(channel.send, messages))
    assert sorted(r.provider_id for r in receipts) == sorted(m.reference for m in messages)
    assert sorted(h["Webhook-Id"] for _, h in verified) == sorted(m.reference for m in messages)
