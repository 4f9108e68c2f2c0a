"""SMS through a generic HTTP gateway: a JSON body with configurable field names.

Body: ``{to_field: message.to, text_field: message.text, **extra_fields}`` plus
``reference_field: message.reference`` when configured; optional bearer token (from env/file) and
idempotency header (value: the notification reference, stable across retries). Success is any 2xx;
the provider id is read from ``message_id_field`` (a dotted path) of the JSON response. Everything
else follows ``classify_http``. Not secure.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, HttpUrl, SecretStr

from worker.channels.base import (
    Channel,
    DeliveryError,
    HttpConfig,
    OutboundMessage,
    Outcome,
    Receipt,
    resolve_secret,
)
from worker.messages import sms_max_length

E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_FIELD = r"^[A-Za-z_][A-Za-z0-9_.-]*$"


class HttpSmsConfig(HttpConfig):
    secret_fields = ("token",)

    url: HttpUrl
    method: Literal["POST", "PUT"] = "POST"
    to_field: str = Field("to", pattern=_FIELD)
    text_field: str = Field("text", pattern=_FIELD)
    reference_field: str | None = Field(None, pattern=_FIELD)
    extra_fields: dict[str, str | int | bool] = {}
    token_env: str | None = None
    token_file: str | None = None
    idempotency_header: str | None = Field(None, pattern=r"^[A-Za-z0-9-]+$")
    message_id_field: str | None = Field(None, pattern=_FIELD)
    max_segments: int = Field(2, ge=1, le=10)


class HttpSmsChannel(Channel):
    kind = "http_sms"
    Config = HttpSmsConfig
    secure = False

    def __init__(self, name: str, config: HttpSmsConfig) -> None:
        super().__init__(name, config)
        self.config: HttpSmsConfig = config
        self.max_length = sms_max_length(config.max_segments)
        self._token: SecretStr | None = resolve_secret(config, "token")
        from worker.channels.http import HttpClient  # requests only once a channel is built

        self.http = HttpClient("sms gateway", config)

    def send(self, message: OutboundMessage) -> Receipt:
        if not E164.match(message.to or ""):
            raise DeliveryError("sms gateway: recipient is not an E.164 phone number", Outcome.PERMANENT)
        cfg = self.config
        body: dict[str, Any] = dict(cfg.extra_fields)
        body[cfg.to_field] = message.to
        body[cfg.text_field] = message.text
        if cfg.reference_field:
            body[cfg.reference_field] = message.reference
        headers = {"Authorization": f"Bearer {self._token.get_secret_value()}"} if self._token else {}
        if cfg.idempotency_header:
            headers[cfg.idempotency_header] = message.reference
        response = self.http.post(str(cfg.url), method=cfg.method, json=body, headers=headers)
        return Receipt(provider_id=_dig(response, cfg.message_id_field), detail=f"HTTP {response.status_code}")

    def close(self) -> None:
        self.http.close()


def _dig(response: Any, path: str | None) -> str | None:
    if not path:
        return None
    try:
        value: Any = response.json()
    except ValueError:
        return None
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return None if value is None else str(value)
