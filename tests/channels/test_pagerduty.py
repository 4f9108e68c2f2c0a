"""PagerDuty Events API v2 request shapes: trigger/acknowledge/resolve on the alert's dedup_key."""

from __future__ import annotations

import pytest

from tests.channels.conftest import CANARY, make_message
from tests.channels.kinds import pagerduty
from worker.channels.base import DeliveryError, Outcome
from worker.messages import FIXTURES, render

ROUTING_KEY = "R" + CANARY.replace("-", "") + "0" * 13


@pytest.mark.parametrize(
    ("event", "urgency", "action", "severity"),
    [
        ("alert.triggered", "emergency", "trigger", "critical"),
        ("alert.escalated", "urgent", "trigger", "error"),
        ("alert.repeated", "routine", "trigger", "warning"),
        ("alert.upgraded", "emergency", "trigger", "critical"),
        ("test", "routine", "trigger", "warning"),
        ("alert.acknowledged", "emergency", "acknowledge", None),
        ("alert.resolved", "emergency", "resolve", None),
    ],
)
def test_event_shape(event, urgency, action, severity, http_server, monkeypatch):
    channel, path, _ = pagerduty(http_server.url_for("").rstrip("/"), monkeypatch, component="haem-onc")
    payload = render(FIXTURES[0], "pagerduty", True, None).payload
    message = make_message(to="", event=event, urgency=urgency, payload=payload)
    http_server.expect_oneshot_request(path, method="POST").respond_with_json(
        {"status": "success", "message": "Event processed", "dedup_key": "alert-42"}, status=202
    )
    receipt = channel.send(message)
    body = http_server.log[0][0].get_json()
    assert receipt.provider_id == "alert-42"
    assert body["routing_key"] == ROUTING_KEY
    assert (body["event_action"], body["dedup_key"]) == (action, "alert-42")
    if severity is None:
        assert set(body) == {"routing_key", "event_action", "dedup_key"}
    else:
        p = body["payload"]
        assert (p["severity"], p["source"], p["component"], p["class"]) == (severity, "crs-alert", "haem-onc", event)
        assert p["summary"] == message.subject and p["timestamp"] == payload["occurred_at"]
        assert p["custom_details"] == payload
        assert body["links"] == [{"href": "https://ack.example.org/a/K7Q2", "text": "Acknowledge alert K7Q2"}]


def test_invalid_event_400_is_permanent(http_server, monkeypatch):
    channel, path, message = pagerduty(http_server.url_for("").rstrip("/"), monkeypatch)
    http_server.expect_request(path).respond_with_json(
        {"status": "invalid event", "message": "Event object is invalid", "errors": ["Length of 'routing_key' is incorrect"]},
        status=400,
    )
    with pytest.raises(DeliveryError) as info:
        channel.send(message)
    assert info.value.outcome is Outcome.PERMANENT
    assert "Event object is invalid" in str(info.value) and ROUTING_KEY not in str(info.value)


def test_long_summary_is_cut_to_1024(http_server, monkeypatch):
    channel, path, _ = pagerduty(http_server.url_for("").rstrip("/"), monkeypatch)
    http_server.expect_request(path).respond_with_json({"status": "success"}, status=202)
    receipt = channel.send(make_message(to="", subject="x" * 2000))
    assert len(http_server.log[0][0].get_json()["payload"]["summary"]) == 1024
    assert receipt.provider_id == "alert-42"  # falls back to our dedup key
