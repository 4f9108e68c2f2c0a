"""PagerDuty Events API v2: ``POST {base_url}/v2/enqueue``.

* ``event_action``: ``alert.acknowledged`` -> acknowledge, ``alert.resolved`` -> resolve, every
  other event (triggered, escalated, repeated, upgraded, test) -> trigger. A trigger with the same
  ``dedup_key`` (the alert) updates the open incident instead of opening another one.
* ``payload.severity``: emergency -> critical, urgent -> error, routine -> warning, else info.
* ``202`` is success; 400 PERMANENT; 429/5xx RETRYABLE (``classify_http``).
* ``custom_details`` is ``message.payload`` (the stable JSON event; clinical detail only if the
  channel is secure).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, HttpUrl

from worker.channels.base import (
    Channel,
    DeliveryError,
    HttpConfig,
    OutboundMessage,
    Outcome,
    Receipt,
    resolve_secret,
)

ACTIONS = {"alert.acknowledged": "acknowledge", "alert.resolved": "resolve"}
SEVERITIES = {"emergency": "critical", "urgent": "error", "routine": "warning"}


class PagerDutyConfig(HttpConfig):
    secret_fields = ("routing_key",)
    required_secrets = ("routing_key",)

    routing_key_env: str | None = None
    routing_key_file: str | None = None
    base_url: HttpUrl = HttpUrl("https://events.pagerduty.com")
    source: str = Field("crs-alert", min_length=1, max_length=255)
    component: str | None = None
    secure: bool = True


class PagerDutyChannel(Channel):
    kind = "pagerduty"
    Config = PagerDutyConfig

    def __init__(self, name: str, config: PagerDutyConfig) -> None:
        super().__init__(name, config)
        self.config: PagerDutyConfig = config
        self.secure = config.secure
        key = resolve_secret(config, "routing_key")
        assert key is not None  # required_secrets
        self._routing_key = key
        self.url = f"{str(config.base_url).rstrip('/')}/v2/enqueue"
        from worker.channels.http import HttpClient  # requests only once a channel is built

        self.http = HttpClient("pagerduty", config)

    def event(self, message: OutboundMessage) -> dict[str, Any]:
        """The Events v2 body (with the routing key: never log it)."""
        if not message.dedup_key or len(message.dedup_key) > 255:
            raise DeliveryError("pagerduty: dedup_key must be 1-255 characters", Outcome.PERMANENT)
        action = ACTIONS.get(message.event, "trigger")
        body: dict[str, Any] = {
            "routing_key": self._routing_key.get_secret_value(),
            "event_action": action,
            "dedup_key": message.dedup_key,
        }
        if action == "trigger":
            payload: dict[str, Any] = {
                "summary": message.subject[:1024],
                "source": self.config.source,
                "severity": SEVERITIES.get(message.urgency, "info"),
                "class": message.event,
                "custom_details": message.payload,
            }
            occurred = message.payload.get("occurred_at") if isinstance(message.payload, dict) else None
            if occurred:
                payload["timestamp"] = occurred
            if self.config.component:
                payload["component"] = self.config.component
            body["payload"] = payload
            ack_url = (message.payload.get("alert") or {}).get("ack_url") if isinstance(message.payload, dict) else None
            if ack_url:
                body["links"] = [{"href": ack_url, "text": f"Acknowledge alert {message.alert_code}"}]
        return body

    def send(self, message: OutboundMessage) -> Receipt:
        response = self.http.post(self.url, json=self.event(message))
        try:
            data = response.json()
        except ValueError:
            data = {}
        dedup = data.get("dedup_key") if isinstance(data, dict) else None
        return Receipt(provider_id=dedup or message.dedup_key, detail=f"HTTP {response.status_code}")

    def close(self) -> None:
        self.http.close()
