"""Contacts against the channels: an unknown channel and a bad address, at receivers.<r>.contacts.<i>,
with the line, never echoing the address (worker.rules.models.check_references is pure: it gets the
address rules as callables)."""

import pytest

from worker.rules.loader import RulesError, load_rules_text


def sms_rule(to: str) -> str | None:
    return None if to.startswith("+") and to[1:].isdigit() else "recipient is not an E.164 phone number"


def fixed_rule(to: str) -> str | None:
    return "this channel has a fixed target; remove `to`" if to else None


CHANNELS = {"sms": sms_rule, "hook": fixed_rule}

TEXT = """\
version: 1
receivers:
  nurse:
    contacts:
      - {channel: sms, to: "07700 900101"}
      - {channel: sms}
      - {channel: pager, to: "+447700900101"}
  desk:
    contacts:
      - {channel: hook, to: "https://elsewhere.example"}
      - {channel: sms, to: "+447700900102"}
escalation_policies:
  p:
    steps:
      - {notify: [nurse], ack_within: 5m}
    failsafe: desk
routes:
  policy: p
"""


def errors(text: str, channels) -> list[str]:  # noqa: ANN001
    with pytest.raises(RulesError) as info:
        load_rules_text(text, "rules.yaml", channels)
    return [str(e) for e in info.value.errors]


def test_unknown_channels_and_bad_addresses_are_reported_together_with_their_line():
    assert errors(TEXT, CHANNELS) == [
        "rules.yaml:5:24: receivers.nurse.contacts.0.to: recipient is not an E.164 phone number (channel 'sms')",
        "rules.yaml:6:9: receivers.nurse.contacts.1.to: recipient is not an E.164 phone number (channel 'sms')",
        "rules.yaml:7:10: receivers.nurse.contacts.2.channel: channel 'pager' is not configured; configured: hook, sms",
        "rules.yaml:10:25: receivers.desk.contacts.0.to: this channel has a fixed target; remove `to` (channel 'hook')",
    ]


def test_the_address_is_never_echoed():
    text = "\n".join(errors(TEXT, {"sms": lambda to: "bad", "hook": fixed_rule, "pager": lambda to: "bad"}))
    assert "07700" not in text and "elsewhere" not in text and "+4477" not in text


def test_without_channels_contacts_are_not_checked():
    assert load_rules_text(TEXT, "rules.yaml").rules.receivers["nurse"].contacts[0].to == "07700 900101"


def test_valid_contacts_pass():
    good = TEXT.replace('"07700 900101"', '"+447700900101"').replace("{channel: sms}", '{channel: sms, to: "+447700900103"}')
    good = good.replace('{channel: pager, to: "+447700900101"}', '{channel: hook}').replace(', to: "https://elsewhere.example"', "")
    assert load_rules_text(good, "rules.yaml", CHANNELS).rules.receivers["desk"].contacts[0].channel == "hook"
