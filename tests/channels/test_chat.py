"""Slack and Teams incoming webhooks: body shapes; the URL is a secret."""

from __future__ import annotations

import pytest

from tests.channels.conftest import CANARY
from tests.channels.kinds import slack, teams
from worker.channels.base import ConfigurationError
from worker.channels.chat import ChatConfig, SlackChannel


def test_slack_text(http_server, monkeypatch):
    channel, path, message = slack(http_server.url_for("").rstrip("/"), monkeypatch)
    http_server.expect_oneshot_request(path, method="POST").respond_with_data("ok")
    channel.send(message)
    assert http_server.log[0][0].get_json() == {"text": message.text}
    assert channel.secure is False and CANARY not in repr(channel.config)


def test_teams_text_and_messagecard(http_server, monkeypatch):
    channel, path, message = teams(http_server.url_for("").rstrip("/"), monkeypatch)
    http_server.expect_request(path).respond_with_data("", status=202)
    channel.send(message)
    request = http_server.log[0][0]
    assert request.get_json() == {"text": message.text} and request.args["sig"] == CANARY
    card_channel, _, _ = teams(http_server.url_for("").rstrip("/"), monkeypatch, format="messagecard")
    card_channel.send(message)
    card = http_server.log[1][0].get_json()
    assert card["@type"] == "MessageCard" and card["text"] == message.text and card["themeColor"] == "D00000"
    assert card["title"] == message.subject


def test_url_must_be_http(monkeypatch):
    monkeypatch.setenv("T_SLACK", "hooks.slack.com/services/" + CANARY)
    with pytest.raises(ConfigurationError, match="url_env T_SLACK: not an http") as info:
        SlackChannel("s", ChatConfig.model_validate({"url_env": "T_SLACK"}))
    assert CANARY not in str(info.value)
