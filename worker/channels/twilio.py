"""SMS through Twilio's REST API (no SDK: one form POST).

``POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json`` with ``To``, ``From`` (or
``MessagingServiceSid``) and ``Body``, HTTP basic auth ``account_sid:auth_token``; ``201`` with the
message ``sid``. Not secure: the text is the short, GSM-7 message of ``worker.messages``.

Refinements of ``classify_http`` (Twilio error codes in the JSON body):
21211/21214/21217/21401/21407/21408/21421/21612/21614/21610 (invalid, unreachable or opted-out
number, region not enabled) are PERMANENT; 20429/14107 (rate limits) are RETRYABLE.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, HttpUrl, SecretStr, model_validator

from worker.channels.base import (
    E164,
    Channel,
    HttpConfig,
    OutboundMessage,
    Outcome,
    Receipt,
    e164_problem,
    resolve_secret,
)
from worker.messages import sms_max_length

PERMANENT_CODES = frozenset({21211, 21214, 21217, 21401, 21407, 21408, 21421, 21610, 21612, 21614})
RETRYABLE_CODES = frozenset({20429, 14107})


class TwilioConfig(HttpConfig):
    secret_fields = ("auth_token",)
    required_secrets = ("auth_token",)

    account_sid: str = Field(pattern=r"^AC[0-9a-fA-F]{32}$")
    auth_token_env: str | None = None
    auth_token_file: str | None = None
    from_number: str | None = Field(None, pattern=E164.pattern)
    messaging_service_sid: str | None = Field(None, pattern=r"^MG[0-9a-fA-F]{32}$")
    base_url: HttpUrl = HttpUrl("https://api.twilio.com")
    status_callback: HttpUrl | None = None
    max_segments: int = Field(2, ge=1, le=10)

    @model_validator(mode="after")
    def _sender(self) -> "TwilioConfig":
        if bool(self.from_number) == bool(self.messaging_service_sid):
            raise ValueError("give exactly one of from_number (E.164) or messaging_service_sid")
        return self


def refine(status: int, body: Any) -> Outcome | None:
    code = body.get("code") if isinstance(body, dict) else None
    if code in PERMANENT_CODES:
        return Outcome.PERMANENT
    if code in RETRYABLE_CODES:
        return Outcome.RETRYABLE
    return None


class TwilioChannel(Channel):
    accepts_replies = True  # replies are posted to the api's /sms/twilio
    kind = "twilio_sms"
    Config = TwilioConfig
    secure = False

    @classmethod
    def address_problem(cls, to: str) -> str | None:
        return e164_problem(to)

    def __init__(self, name: str, config: TwilioConfig) -> None:
        super().__init__(name, config)
        self.config: TwilioConfig = config
        self.max_length = sms_max_length(config.max_segments)
        token = resolve_secret(config, "auth_token")
        assert token is not None  # required_secrets
        self._token: SecretStr = token
        base = str(config.base_url).rstrip("/")
        self.url = f"{base}/2010-04-01/Accounts/{config.account_sid}/Messages.json"
        from worker.channels.http import HttpClient  # requests only once a channel is built

        self.http = HttpClient("twilio", config)

    def send(self, message: OutboundMessage) -> Receipt:
        self.check_address(message.to)
        form = {"To": message.to, "Body": message.text}
        if self.config.from_number:
            form["From"] = self.config.from_number
        else:
            form["MessagingServiceSid"] = self.config.messaging_service_sid or ""
        if self.config.status_callback:
            form["StatusCallback"] = str(self.config.status_callback)
        auth = (self.config.account_sid, self._token.get_secret_value())
        response = self.http.post(self.url, data=form, auth=auth, refine=refine)
        try:
            body = response.json()
        except ValueError:
            body = {}
        sid = body.get("sid") if isinstance(body, dict) else None
        return Receipt(provider_id=sid, detail=f"status={body.get('status')}" if isinstance(body, dict) else "")

    def close(self) -> None:
        self.http.close()
