"""SMS through a generic HTTP gateway: a JSON body with configurable field names.

Body: ``{to_field: message.to, text_field: message.text, **extra_fields}`` plus
``reference_field: message.reference`` when configured; optional bearer token (from env/file) and
idempotency header (value: the notification reference, stable across retries). Success is any 2xx;
the provider id is read from ``message_id_field`` (a dotted path) of the JSON response. Everything
else follows ``classify_http``. Not secure.

Delivery reports (optional, ``status_secret_env``/``status_secret_file``): the gateway POSTs a JSON
object to ``<CRS_PUBLIC_URL>/sms/gateway/<channel name>/status`` with the message id at
``status_id_field`` and its status at ``status_field`` (dotted paths), signed with
``X-Signature-SHA256: <hex HMAC-SHA256 of the raw body, keyed with the status secret>``. A status in
``undelivered_statuses`` (any case) for a page recorded as sent dead-letters it and pages the failsafe
(``worker.delivery.provider_status``), as Twilio's status callback does. ``StatusCallback`` and
``valid_signature`` are what the API uses; they do no I/O.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, HttpUrl, SecretStr, field_validator

from worker.channels.base import (
    Channel,
    HttpConfig,
    OutboundMessage,
    Receipt,
    e164_problem,
    resolve_secret,
)
from worker.messages import sms_max_length

_FIELD = r"^[A-Za-z_][A-Za-z0-9_.-]*$"


class HttpSmsConfig(HttpConfig):
    secret_fields = ("token", "status_secret")

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
    # delivery reports (module docstring); off unless a status secret is configured
    status_secret_env: str | None = None
    status_secret_file: str | None = None
    status_id_field: str = Field("message_id", pattern=_FIELD)
    status_field: str = Field("status", pattern=_FIELD)
    status_error_field: str | None = Field(None, pattern=_FIELD)
    undelivered_statuses: frozenset[str] = frozenset({"failed", "undelivered", "rejected", "expired"})

    @field_validator("undelivered_statuses")
    @classmethod
    def _some_statuses(cls, value: frozenset[str]) -> frozenset[str]:
        if not value or not all(v.strip() for v in value):
            raise ValueError("name at least one status (non-empty) that means the message was not delivered")
        return value


class HttpSmsChannel(Channel):
    kind = "http_sms"
    Config = HttpSmsConfig
    secure = False

    @classmethod
    def address_problem(cls, to: str) -> str | None:
        return e164_problem(to)

    def __init__(self, name: str, config: HttpSmsConfig) -> None:
        super().__init__(name, config)
        self.config: HttpSmsConfig = config
        self.max_length = sms_max_length(config.max_segments)
        self._token: SecretStr | None = resolve_secret(config, "token")
        from worker.channels.http import HttpClient  # requests only once a channel is built

        self.http = HttpClient("sms gateway", config)

    def send(self, message: OutboundMessage) -> Receipt:
        self.check_address(message.to)
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
    value = _walk(value, path)
    return None if value is None else str(value)


SIGNATURE_HEADER = "X-Signature-SHA256"


@dataclass(frozen=True)
class StatusCallback:
    """How one http_sms channel's delivery reports are read (see the module docstring)."""

    channel: str
    secret: SecretStr
    id_field: str
    status_field: str
    error_field: str | None
    undelivered: frozenset[str]

    def read(self, report: Any) -> tuple[str, str, str | None]:
        """(message id, status, error) of a decoded report; ValueError naming the field and the rule."""
        if not isinstance(report, dict):
            raise ValueError("the report must be a JSON object")
        values = []
        for name, path in (("status_id_field", self.id_field), ("status_field", self.status_field)):
            value = _walk(report, path)
            if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value) == "":
                raise ValueError(f"{path}: required ({name} of channel {self.channel!r}), a non-empty string or integer")
            values.append(str(value))
        error = _walk(report, self.error_field) if self.error_field else None
        return values[0], values[1], None if error is None else str(error)[:64]


def status_callback(name: str, config: HttpSmsConfig) -> StatusCallback | None:
    """The channel's delivery-report settings with the secret resolved; None when not configured.
    Raises ConfigurationError (naming the variable or file, never the value) for a missing secret."""
    secret = resolve_secret(config, "status_secret")
    if secret is None:
        return None
    return StatusCallback(name, secret, config.status_id_field, config.status_field, config.status_error_field,
                          config.undelivered_statuses)


def signature(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def valid_signature(secret: SecretStr, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the hex HMAC-SHA256 of ``body`` (compared in constant time)."""
    if not header:
        return False
    given = header.strip().lower().encode("utf-8", "replace")  # bytes: a non-ASCII header is wrong, not a TypeError
    return hmac.compare_digest(signature(secret.get_secret_value(), body).encode(), given)


def _walk(value: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value
