"""Twilio REST shape: form POST with basic auth, the message sid as provider id, error-code refinements."""

from __future__ import annotations

import base64

import pytest

from tests.channels.conftest import CANARY, make_message
from tests.channels.kinds import SID, twilio
from worker.channels.base import DeliveryError, Outcome

PATH = f"/2010-04-01/Accounts/{SID}/Messages.json"


def test_posts_twilio_form_with_basic_auth(http_server, monkeypatch):
    channel, _, message = twilio(http_server.url_for("").rstrip("/"), monkeypatch)
    http_server.expect_oneshot_request(PATH, method="POST").respond_with_json(
        {"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"}, status=201
    )
    receipt = channel.send(message)
    assert receipt.provider_id == "SM0123456789abcdef0123456789abcdef"
    [(request, _)] = http_server.log
    assert request.mimetype == "application/x-www-form-urlencoded"
    assert request.form.to_dict() == {"To": "+15551230000", "From": "+15005550006", "Body": message.text}
    user, _, token = base64.b64decode(request.headers["Authorization"].split()[1]).decode().partition(":")
    assert (user, token) == (SID, "tok-" + CANARY)


def test_messaging_service_and_status_callback(http_server, monkeypatch):
    mg = "MG" + "ab" * 16
    channel, _, message = twilio(
        http_server.url_for("").rstrip("/"), monkeypatch, from_number=None, messaging_service_sid=mg,
        status_callback="https://api.hospital.example/twilio/status",
    )  # fmt: skip
    http_server.expect_oneshot_request(PATH).respond_with_json({"sid": "SM1"}, status=201)
    channel.send(message)
    form = http_server.log[0][0].form
    assert form["MessagingServiceSid"] == mg and "From" not in form
    assert form["StatusCallback"] == "https://api.hospital.example/twilio/status"


@pytest.mark.parametrize(
    ("status", "code", "outcome"),
    [
        (400, 21211, Outcome.PERMANENT),  # invalid 'To' number
        (400, 21610, Outcome.PERMANENT),  # recipient replied STOP
        (400, 21408, Outcome.PERMANENT),  # region not enabled
        (429, 20429, Outcome.RETRYABLE),
        (400, 14107, Outcome.RETRYABLE),  # rate limit reported as 400
    ],
)
def test_twilio_error_codes(status, code, outcome, http_server, monkeypatch):
    channel, _, message = twilio(http_server.url_for("").rstrip("/"), monkeypatch)
    http_server.expect_request(PATH).respond_with_json(
        {"code": code, "message": "The 'To' number +15551230000 is not a valid phone number.", "status": status},
        status=status,
    )
    with pytest.raises(DeliveryError) as info:
        channel.send(message)
    assert info.value.outcome is outcome
    assert f"code={code}" in str(info.value)
    assert "+15551230000" not in str(info.value)  # Twilio echoes the number; the error text is scrubbed


def test_invalid_recipient_is_permanent_without_a_request(http_server, monkeypatch):
    channel, _, _ = twilio(http_server.url_for("").rstrip("/"), monkeypatch)
    with pytest.raises(DeliveryError) as info:
        channel.send(make_message(to="0555 123"))
    assert info.value.outcome is Outcome.PERMANENT
    assert http_server.log == []


def test_config_needs_exactly_one_sender():
    from worker.channels.twilio import TwilioConfig

    with pytest.raises(ValueError, match="exactly one of from_number"):
        TwilioConfig.model_validate({"account_sid": SID, "auth_token_env": "X"})
    with pytest.raises(ValueError, match="auth_token_env .* or auth_token_file .* is required"):
        TwilioConfig.model_validate({"account_sid": SID, "from_number": "+15005550006"})
