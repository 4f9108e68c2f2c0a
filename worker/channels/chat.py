"""Slack and Microsoft Teams incoming webhooks. Not secure: the short text only.

The webhook URL is the credential (Slack's path token, the Teams/Workflows ``sig=`` parameter), so
it comes from an environment variable or a file like any secret and never appears in errors.

* Slack: ``{"text": ...}``; 200 ``ok``.
* Teams: ``{"text": ...}`` (Workflows "when a webhook request is received") or, with
  ``format: messagecard``, a legacy MessageCard. Office 365 connectors are being retired in 2026.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import SecretStr

from worker.channels.base import Channel, ConfigurationError, HttpConfig, OutboundMessage, Receipt, resolve_secret

_COLOURS = {"emergency": "D00000", "urgent": "FF8C00", "routine": "FFD700"}


class ChatConfig(HttpConfig):
    secret_fields = ("url",)
    required_secrets = ("url",)

    url_env: str | None = None
    url_file: str | None = None


class TeamsConfig(ChatConfig):
    format: Literal["text", "messagecard"] = "text"


class _ChatChannel(Channel):
    secure = False
    provider = "chat"

    def __init__(self, name: str, config: ChatConfig) -> None:
        super().__init__(name, config)
        url = resolve_secret(config, "url")
        assert url is not None  # required_secrets
        where = f"url_env {config.url_env}" if config.url_env else f"url_file {config.url_file}"
        if not url.get_secret_value().startswith(("https://", "http://")):
            raise ConfigurationError(f"{where}: not an http(s) URL")
        if "@" in urlsplit(url.get_secret_value()).netloc:
            raise ConfigurationError(f"{where}: the URL must not carry credentials (user:password@host)")
        self._url: SecretStr = url
        from worker.channels.http import HttpClient  # requests only once a channel is built

        self.http = HttpClient(self.provider, config)

    def body(self, message: OutboundMessage) -> dict[str, Any]:
        return {"text": message.text}

    def send(self, message: OutboundMessage) -> Receipt:
        response = self.http.post(self._url.get_secret_value(), json=self.body(message))
        return Receipt(provider_id=None, detail=f"HTTP {response.status_code}")

    def close(self) -> None:
        self.http.close()


class SlackChannel(_ChatChannel):
    kind = "slack"
    Config = ChatConfig
    provider = "slack"


class TeamsChannel(_ChatChannel):
    kind = "teams"
    Config = TeamsConfig
    provider = "teams"

    def body(self, message: OutboundMessage) -> dict[str, Any]:
        if self.config.format == "messagecard":  # type: ignore[attr-defined]
            return {
                "@type": "MessageCard",
                "@context": "https://schema.org/extensions",
                "summary": message.subject,
                "themeColor": _COLOURS.get(message.urgency, "808080"),
                "title": message.subject,
                "text": message.text,
            }
        return {"text": message.text}
