"""What every channel shares: the outcome of a failed send, the message, the receipt, the channel
contract, secret resolution and the one HTTP status classifier.

Rules (the dispatcher relies on them):

- A channel's ``send`` returns a ``Receipt`` or raises ``DeliveryError``; never anything else, never
  ``False``. The error's ``outcome`` decides what the outbox does:

  * ``RETRYABLE``: nothing was delivered; retry with backoff (connection refused, DNS, 408, 429,
    5xx, SMTP 4xx).
  * ``PERMANENT``: will never succeed as configured (other 4xx, invalid number, authentication
    failure, SMTP 5xx); fail over to another route now.
  * ``AMBIGUOUS``: the request may have been delivered (read timeout after sending, connection reset
    after the body left). For pages a duplicate beats a loss: retry, the stable ``reference`` lets
    the receiver see the repeat.

- Error messages name the provider's status/error code and never contain secrets, addresses or
  message bodies, so they may be stored and logged.
- Secrets never sit in a config file: a config names an environment variable (``*_env``) or a file
  (``*_file``); the value is read when the channel is built and kept as ``SecretStr``. Every
  ``*_env`` field must be a variable name (a pasted secret is refused without being echoed), and a
  URL field must not carry credentials (``https://user:pw@host``): they go in the secret fields.
- Each kind states what a contact's ``to`` must be (``Channel.address_problem``): an E.164 number
  for SMS, an e-mail address for e-mail, empty for a fixed target (webhook, PagerDuty, chat). The
  rules check and ``send`` use that one rule.

This module does no I/O at import time and imports no HTTP or SMTP library, so config models can be
validated (rules loader, ``crs-alert channels list``) without them.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import json
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar

from pydantic import AnyUrl, BaseModel, ConfigDict, Field, FilePath, SecretStr, ValidationInfo, field_validator, model_validator

from worker.logs import scrub

__all__ = [
    "Outcome",
    "DeliveryError",
    "ConfigurationError",
    "OutboundMessage",
    "Receipt",
    "Channel",
    "ChannelConfig",
    "classify_http",
    "parse_retry_after",
    "resolve_secret",
    "e164_problem",
]


class Outcome(str, Enum):
    RETRYABLE = "retryable"
    PERMANENT = "permanent"
    AMBIGUOUS = "ambiguous"


class DeliveryError(Exception):
    """A send that did not (certainly) succeed. ``outcome`` is the retry decision."""

    def __init__(
        self, message: str, outcome: Outcome, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.outcome = Outcome(outcome)
        self.status = status
        self.retry_after = retry_after

    @property
    def retryable(self) -> bool:
        """True when nothing was delivered and a retry is safe."""
        return self.outcome is Outcome.RETRYABLE

    def __repr__(self) -> str:
        extra = "".join(
            f", {k}={v!r}" for k, v in (("status", self.status), ("retry_after", self.retry_after)) if v is not None
        )
        return f"DeliveryError({self.message!r}, {self.outcome.value}{extra})"


class ConfigurationError(ValueError):
    """A channel cannot be built: a missing environment variable or secret file, a bad secret."""


@dataclass(frozen=True)
class OutboundMessage:
    """One rendered notification, ready for one channel.

    ``reference`` is the notification's stable id (the same on every retry); ``dedup_key`` identifies
    the alert (PagerDuty incident key); ``to`` is "" for channels with a fixed target.
    """

    reference: str
    alert_id: int
    alert_code: str
    urgency: str
    to: str
    subject: str
    text: str
    html: str | None
    payload: dict[str, Any]
    dedup_key: str
    event: str

    def __repr__(self) -> str:  # bodies and addresses stay out of tracebacks and logs
        return f"OutboundMessage(reference={self.reference!r}, alert_id={self.alert_id}, event={self.event!r})"


@dataclass(frozen=True)
class Receipt:
    provider_id: str | None
    detail: str = ""


class ChannelConfig(BaseModel):
    """Base of every channel's config model: unknown fields are errors; secrets are indirect.

    ``secret_fields`` names the secrets of the channel (``"auth_token"`` means the fields
    ``auth_token_env`` and ``auth_token_file``); ``required_secrets`` those that must be given.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret_fields: ClassVar[tuple[str, ...]] = ()
    required_secrets: ClassVar[tuple[str, ...]] = ()

    @field_validator("*")
    @classmethod
    def _no_inline_secrets(cls, value: Any, info: ValidationInfo) -> Any:
        """``*_env`` names a variable; URLs carry no credentials. Messages never echo the value."""
        if info.field_name and info.field_name.endswith("_env") and value is not None:
            if not isinstance(value, str) or not ENV_NAME.match(value):
                raise ValueError(ENV_NAME_RULE)
        if isinstance(value, AnyUrl) and (value.username or value.password):
            raise ValueError(URL_CREDENTIALS_RULE)
        return value

    @model_validator(mode="after")
    def _one_source_per_secret(self) -> "ChannelConfig":
        for name in self.secret_fields:
            env, path = getattr(self, f"{name}_env"), getattr(self, f"{name}_file")
            if env and path:
                raise ValueError(f"give either {name}_env or {name}_file, not both")
            if name in self.required_secrets and not (env or path):
                raise ValueError(
                    f"{name}_env (an environment variable name) or {name}_file (a file path) is required; "
                    f"the {name} itself never goes in the config"
                )
        return self


ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
FIXED_TARGET_RULE = "this channel has a fixed target; remove `to`"
ENV_NAME_RULE = "must name an environment variable (letters, digits, _), not hold the secret itself"
URL_CREDENTIALS_RULE = (
    "must not carry credentials (user:password@host); give them through the channel's *_env or *_file secret fields"
)


def e164_problem(to: str) -> str | None:
    """The SMS address rule: E.164, ``+`` and the country code, digits only."""
    if not to:
        return "an SMS contact needs `to`: a phone number in E.164 form (+ and country code, e.g. +447700900123)"
    if not E164.match(to):
        return "recipient is not an E.164 phone number (+ and country code, digits only, no spaces)"
    return None


def resolve_secret(config: ChannelConfig, name: str, *, environ: Mapping[str, str] | None = None) -> SecretStr | None:
    """Read secret ``name`` from the environment variable or file the config names.

    Raises ``ConfigurationError`` naming the variable or file (never the value) when it is missing or
    empty. Returns None for an optional secret that is not configured.
    """
    env_name: str | None = getattr(config, f"{name}_env")
    path: str | None = getattr(config, f"{name}_file")
    if env_name:
        if not ENV_NAME.match(env_name):
            raise ConfigurationError(f"{name}_env: {ENV_NAME_RULE}")
        value = (os.environ if environ is None else environ).get(env_name)
        if not value:
            raise ConfigurationError(f"{name}_env: environment variable {env_name} is not set or empty")
        return SecretStr(value.strip())
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                value = fh.read().strip()
        except OSError as exc:
            raise ConfigurationError(f"{name}_file: cannot read {path} ({type(exc).__name__})") from None
        if not value:
            raise ConfigurationError(f"{name}_file: {path} is empty")
        return SecretStr(value)
    return None


class Channel(ABC):
    """A destination kind. Subclasses set ``kind`` and ``Config`` and implement ``send``.

    * ``secure``: whether the channel may carry clinical detail (reasons, vitals, advice); SMS and
      chat are not secure.
    * ``max_length``: characters (GSM-7 septets) the text may use; None when unlimited.
    * ``accepts_replies``: whether a reply to this channel's messages reaches crs-alert (an SMS
      kind whose provider posts replies to the api: ``twilio_sms``). Only then does an SMS invite
      "Reply ACK <code>"; otherwise it gives the code and the link, never a reply that goes nowhere.
    * A channel object holds no per-message state: ``send`` may be called from several threads.
    """

    kind: ClassVar[str]
    Config: ClassVar[type[ChannelConfig]]
    secure: bool = False
    max_length: int | None = None
    accepts_replies: bool = False

    def __init__(self, name: str, config: ChannelConfig) -> None:
        self.name = name
        self.config = config

    @classmethod
    def address_problem(cls, to: str) -> str | None:
        """Why ``to`` cannot be a contact's address on this kind (never quoting it), or None.

        The default is a fixed target (the config says where messages go): ``to`` must be empty.
        Kinds that take an address override it; ``send`` of those kinds checks with it too.
        """
        return FIXED_TARGET_RULE if to else None

    def check_address(self, to: str) -> None:
        """``DeliveryError`` (PERMANENT: no retry can fix an address) when ``address_problem`` finds one."""
        problem = self.address_problem(to)
        if problem:
            raise DeliveryError(f"{self.kind}: {problem}", Outcome.PERMANENT)

    @abstractmethod
    def send(self, message: OutboundMessage) -> Receipt:
        """Deliver ``message`` or raise ``DeliveryError``."""

    def close(self) -> None:
        """Release connections (HTTP sessions); the channel may still be used afterwards."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} kind={self.kind}>"


# ---------------------------------------------------------------------------------------------
# HTTP status classification: the one place (Alertmanager notify/util.go Retrier.Check).

RETRYABLE_STATUSES = frozenset({408, 429})

# A provider refinement looks at (status, parsed JSON body or None) and may override the outcome.
Refinement = Callable[[int, Any], Outcome | None]


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP-date (RFC 9110 10.2.3); None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    now = now or dt.datetime.now(dt.timezone.utc)
    return max(0.0, (when - now).total_seconds())


def _body_detail(body: str) -> tuple[Any, str]:
    """The parsed JSON body (or None) and a short, scrubbed description for the error message.

    Providers echo recipients in errors (Twilio: "The 'To' number +1... is not valid"); scrub() removes
    phone numbers and e-mail addresses, and only the first 200 characters are kept.
    """
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        parts = []
        for key in ("code", "error_code", "status", "message", "error", "errors", "detail"):
            if key in parsed and parsed[key] not in (None, "", []):
                parts.append(f"{key}={json.dumps(parsed[key], separators=(',', ':'))}")
        text = " ".join(parts)
    else:
        text = " ".join(body.split())
    return parsed, scrub(text)[:200]


def classify_http(
    status: int,
    body: str,
    retry_after_header: str | None,
    *,
    provider: str = "HTTP",
    refine: Refinement | None = None,
) -> None:
    """Return for 2xx; otherwise raise ``DeliveryError`` with the outcome of the status.

    * 2xx: delivered.
    * 408, 429, 5xx: RETRYABLE (nothing was accepted), with ``retry_after`` from the header.
    * 3xx (redirects are never followed: a moved endpoint is a configuration problem), 4xx: PERMANENT.
    * ``refine(status, parsed_json)`` may override the outcome for provider error codes (e.g. Twilio
      21211 invalid number is PERMANENT whatever the status).
    """
    if 200 <= status < 300:
        return
    parsed, detail = _body_detail(body)
    if status in RETRYABLE_STATUSES or status >= 500:
        outcome = Outcome.RETRYABLE
    else:
        outcome = Outcome.PERMANENT
    if refine is not None:
        outcome = refine(status, parsed) or outcome
    retry_after = parse_retry_after(retry_after_header) if outcome is Outcome.RETRYABLE else None
    message = f"{provider} responded {status}"
    if detail:
        message += f": {detail}"
    raise DeliveryError(message, outcome, status=status, retry_after=retry_after)


class HttpConfig(ChannelConfig):
    """Settings shared by the HTTP channels.

    * Timeouts: requests has no default timeout, so both are explicit.
    * ``proxy``: the egress proxy, if any. Proxy variables of the environment are *not* used (a
      channel's route must not change with the shell it runs in); ``ca_file`` adds a private CA.
    """

    connect_timeout_s: float = Field(3.05, gt=0, le=60)
    read_timeout_s: float = Field(15.0, gt=0, le=120)
    proxy: str | None = Field(None, pattern=r"^https?://[^\s@]+$")
    ca_file: FilePath | None = None
