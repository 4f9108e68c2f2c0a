"""JSON webhook signed per Standard Webhooks v1 (HMAC-SHA256).

Headers: ``webhook-id`` = the notification reference (stable across retries: the receiver's
idempotency key), ``webhook-timestamp`` (Unix seconds), ``webhook-signature`` = ``v1,<base64>``
over ``{id}.{timestamp}.{body}``. The body is ``message.payload`` as minified, key-sorted JSON; the
exact signed bytes are sent. Signing uses the ``standardwebhooks`` library. 2xx is success; 410
(endpoint gone) and other 4xx are PERMANENT; 408/429/5xx RETRYABLE (``classify_http``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt

from pydantic import Field, HttpUrl
from standardwebhooks.webhooks import Webhook

from worker.channels.base import (
    Channel,
    ConfigurationError,
    DeliveryError,
    HttpConfig,
    Outcome,
    OutboundMessage,
    Receipt,
    resolve_secret,
)
from worker.messages import payload_json


class WebhookConfig(HttpConfig):
    secret_fields = ("secret",)
    required_secrets = ("secret",)

    url: HttpUrl
    secret_env: str | None = None
    secret_file: str | None = None
    read_timeout_s: float = Field(20.0, gt=0, le=120)
    secure: bool = True


class WebhookChannel(Channel):
    kind = "webhook"
    Config = WebhookConfig

    def __init__(self, name: str, config: WebhookConfig) -> None:
        super().__init__(name, config)
        self.config: WebhookConfig = config
        self.secure = config.secure
        secret = resolve_secret(config, "secret")
        assert secret is not None  # required_secrets
        where = f"secret_env {config.secret_env}" if config.secret_env else f"secret_file {config.secret_file}"
        raw = secret.get_secret_value()
        try:
            key = base64.b64decode(raw.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigurationError(f"{where}: not a whsec_ base64 secret") from None
        if len(key) < 24:
            raise ConfigurationError(f"{where}: the secret must decode to at least 24 bytes (Standard Webhooks)")
        self._signer = Webhook(key)
        from worker.channels.http import HttpClient  # requests only once a channel is built

        self.http = HttpClient("webhook", config)

    def send(self, message: OutboundMessage) -> Receipt:
        try:
            body = payload_json(message.payload)
        except (TypeError, ValueError) as exc:
            raise DeliveryError(f"webhook: payload is not JSON ({type(exc).__name__})", Outcome.PERMANENT) from None
        # Must be UTC: standardwebhooks' sign() replaces tzinfo instead of converting, so an aware
        # non-UTC datetime would produce a wrong signature.
        now = dt.datetime.now(dt.timezone.utc)
        signature = self._signer.sign(msg_id=message.reference, timestamp=now, data=body)
        headers = {
            "content-type": "application/json",
            "webhook-id": message.reference,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature,
        }
        response = self.http.post(str(self.config.url), data=body.encode("utf-8"), headers=headers)
        return Receipt(provider_id=message.reference, detail=f"HTTP {response.status_code}")

    def close(self) -> None:
        self.http.close()
