"""One address rule per kind (``Channel.address_problem``): used by the rules check and by send()."""

from __future__ import annotations

import dataclasses

import pytest

from tests.channels.conftest import make_message
from tests.channels.kinds import http_sms, twilio
from worker.channels.base import DeliveryError, Outcome
from worker.channels.registry import load_channel_kinds

KINDS = load_channel_kinds()
FIXED = "this channel has a fixed target; remove `to`"

CASES = [
    ("twilio_sms", "+447700900101", None),
    ("twilio_sms", "", "an SMS contact needs `to`"),
    ("twilio_sms", "07700 900101", "recipient is not an E.164 phone number"),
    ("twilio_sms", "+44 7700 900101", "recipient is not an E.164 phone number"),
    ("twilio_sms", "nurse@hospital.example", "recipient is not an E.164 phone number"),
    ("twilio_sms", "+0447700900101", "recipient is not an E.164 phone number"),
    ("twilio_sms", "+123456", "recipient is not an E.164 phone number"),  # 6 digits: too short
    ("twilio_sms", "+1234567", None),  # 7 digits: the shortest E.164 accepted
    ("twilio_sms", "+123456789012345", None),  # 15 digits: the longest
    ("twilio_sms", "+1234567890123456", "recipient is not an E.164 phone number"),
    ("http_sms", "+447700900101", None),
    ("http_sms", "07700 900101", "recipient is not an E.164 phone number"),
    ("http_sms", "", "an SMS contact needs `to`"),
    ("email", "nurse@hospital.example", None),
    ("email", "not-an-email", "recipient is not an e-mail address"),
    ("email", "a b@hospital.example", "recipient is not an e-mail address"),
    ("email", "", "an e-mail contact needs `to`"),
    ("webhook", "", None),
    ("webhook", "https://elsewhere.example", FIXED),
    ("pagerduty", "", None),
    ("pagerduty", "oncall", FIXED),
    ("slack", "", None),
    ("slack", "#ward", FIXED),
    ("teams", "", None),
    ("teams", "ward-5b", FIXED),
]


@pytest.mark.parametrize(("kind", "to", "problem"), CASES)
def test_address_rule_of_each_kind(kind, to, problem):
    found = KINDS[kind].address_problem(to)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem)
        assert not to or to not in found  # never echoes the address


def test_every_kind_has_a_case():
    assert {kind for kind, _, _ in CASES} == set(KINDS)


@pytest.mark.parametrize("build", [twilio, http_sms])
@pytest.mark.parametrize("to", ["07700 900101", "", "nurse@hospital.example"])
def test_sms_send_uses_the_same_rule_and_sends_nothing(build, to, http_server, monkeypatch):
    channel, _, message = build(http_server.url_for("").rstrip("/"), monkeypatch)
    with pytest.raises(DeliveryError) as info:
        channel.send(dataclasses.replace(message, to=to))
    assert info.value.outcome is Outcome.PERMANENT
    assert info.value.message == f"{channel.kind}: {channel.address_problem(to)}"
    assert http_server.log == []


def test_email_send_uses_the_same_rule():
    from worker.channels.email import EmailChannel, EmailConfig

    channel = EmailChannel("mail", EmailConfig(host="127.0.0.1", port=1, security="none", from_address="a@b.example"))
    with pytest.raises(DeliveryError) as info:
        channel.send(make_message(to="not-an-email"))
    assert info.value.outcome is Outcome.PERMANENT
    assert info.value.message == "email: recipient is not an e-mail address (like nurse@hospital.example)"


def test_one_e164_pattern():
    """The E.164 rule lives in worker.channels.base only (it was duplicated in twilio and the gateway)."""
    from pathlib import Path

    import worker.channels as pkg

    holders = [p.name for p in Path(pkg.__file__).parent.glob("*.py") if r"\+[1-9]\d{6,14}" in p.read_text()]
    assert holders == ["base.py"]
