"""Builders for every HTTP channel kind against a local base URL: (channel, request path, message)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from tests.channels.conftest import CANARY, make_message
from worker.channels.base import Channel, OutboundMessage
from worker.channels.chat import ChatConfig, SlackChannel, TeamsChannel, TeamsConfig
from worker.channels.pagerduty import PagerDutyChannel, PagerDutyConfig
from worker.channels.sms_gateway import HttpSmsChannel, HttpSmsConfig
from worker.channels.twilio import TwilioChannel, TwilioConfig
from worker.channels.webhook import WebhookChannel, WebhookConfig

SID = "AC" + "0123456789abcdef" * 2
# A valid whsec_ secret whose base64 text contains the canary (so a leak of the key would show it).
WEBHOOK_SECRET = "whsec_" + base64.b64encode(("k" * 8 + CANARY + "k" * 8).encode()).decode()
TIMEOUTS = {"connect_timeout_s": 1.0, "read_timeout_s": 0.6}

Built = tuple[Channel, str, OutboundMessage]


def twilio(base: str, env: Any, **over: Any) -> Built:
    env.setenv("T_TWILIO_TOKEN", "tok-" + CANARY)
    cfg = TwilioConfig.model_validate(
        {"account_sid": SID, "auth_token_env": "T_TWILIO_TOKEN", "from_number": "+15005550006", "base_url": base,
         **TIMEOUTS, **over}
    )  # fmt: skip
    return TwilioChannel("sms", cfg), f"/2010-04-01/Accounts/{SID}/Messages.json", make_message()


def http_sms(base: str, env: Any, **over: Any) -> Built:
    env.setenv("T_GATEWAY_TOKEN", "gw-" + CANARY)
    cfg = HttpSmsConfig.model_validate({"url": f"{base}/sms", "token_env": "T_GATEWAY_TOKEN", **TIMEOUTS, **over})
    return HttpSmsChannel("gw", cfg), "/sms", make_message()


def webhook(base: str, env: Any, **over: Any) -> Built:
    env.setenv("T_WEBHOOK_SECRET", WEBHOOK_SECRET)
    cfg = WebhookConfig.model_validate({"url": f"{base}/hook", "secret_env": "T_WEBHOOK_SECRET", **TIMEOUTS, **over})
    return WebhookChannel("hook", cfg), "/hook", make_message(to="")


def pagerduty(base: str, env: Any, **over: Any) -> Built:
    env.setenv("T_PD_KEY", "R" + CANARY.replace("-", "") + "0" * 13)
    cfg = PagerDutyConfig.model_validate({"routing_key_env": "T_PD_KEY", "base_url": base, **TIMEOUTS, **over})
    return PagerDutyChannel("pd", cfg), "/v2/enqueue", make_message(to="")


def slack(base: str, env: Any, **over: Any) -> Built:
    env.setenv("T_SLACK_URL", f"{base}/services/T000/B000/{CANARY}")
    cfg = ChatConfig.model_validate({"url_env": "T_SLACK_URL", **TIMEOUTS, **over})
    return SlackChannel("slack", cfg), f"/services/T000/B000/{CANARY}", make_message(to="")


def teams(base: str, env: Any, **over: Any) -> Built:
    env.setenv("T_TEAMS_URL", f"{base}/workflows/abc/triggers/manual/paths/invoke?sig={CANARY}")
    cfg = TeamsConfig.model_validate({"url_env": "T_TEAMS_URL", **TIMEOUTS, **over})
    return TeamsChannel("teams", cfg), "/workflows/abc/triggers/manual/paths/invoke", make_message(to="")


HTTP_KINDS: dict[str, Callable[..., Built]] = {
    "twilio_sms": twilio,
    "http_sms": http_sms,
    "webhook": webhook,
    "pagerduty": pagerduty,
    "slack": slack,
    "teams": teams,
}
SUCCESS_STATUS = {"twilio_sms": 201, "http_sms": 200, "webhook": 204, "pagerduty": 202, "slack": 200, "teams": 202}
