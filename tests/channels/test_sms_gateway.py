"""Generic HTTP SMS gateway: configurable JSON field names, bearer token, idempotency header."""

from __future__ import annotations

import pytest

from tests.channels.conftest import CANARY, make_message
from tests.channels.kinds import http_sms
from worker.channels.base import DeliveryError, Outcome


def test_json_body_with_configured_fields(http_server, monkeypatch):
    channel, _, message = http_sms(
        http_server.url_for("").rstrip("/"), monkeypatch, to_field="msisdn", text_field="message",
        reference_field="client_ref", extra_fields={"sender": "CRSALERT", "priority": 1},
        idempotency_header="Idempotency-Key", message_id_field="data.id", method="PUT",
    )  # fmt: skip
    http_server.expect_oneshot_request("/sms", method="PUT").respond_with_json({"data": {"id": 981}}, status=202)
    receipt = channel.send(message)
    [(request, _)] = http_server.log
    assert request.get_json() == {
        "msisdn": "+15551230000", "message": message.text, "client_ref": "ntf-123", "sender": "CRSALERT", "priority": 1,
    }  # fmt: skip
    assert request.headers["Authorization"] == f"Bearer gw-{CANARY}"
    assert request.headers["Idempotency-Key"] == "ntf-123"
    assert receipt.provider_id == "981"


def test_defaults_and_no_token(http_server, monkeypatch):
    from worker.channels.sms_gateway import HttpSmsChannel, HttpSmsConfig

    cfg = HttpSmsConfig.model_validate({"url": http_server.url_for("/sms")})
    http_server.expect_oneshot_request("/sms", method="POST").respond_with_data("accepted", status=200)
    receipt = HttpSmsChannel("gw", cfg).send(make_message())
    request = http_server.log[0][0]
    assert request.get_json() == {"to": "+15551230000", "text": make_message().text}
    assert "Authorization" not in request.headers
    assert receipt.provider_id is None


def test_invalid_recipient_is_permanent(http_server, monkeypatch):
    channel, _, _ = http_sms(http_server.url_for("").rstrip("/"), monkeypatch)
    with pytest.raises(DeliveryError) as info:
        channel.send(make_message(to="nurse@hospital.example"))
    assert info.value.outcome is Outcome.PERMANENT and http_server.log == []
