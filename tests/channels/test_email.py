"""E-mail channel against a real aiosmtpd server with STARTTLS (test CA) and AUTH."""

from __future__ import annotations

import email
import email.policy

import pytest

from tests.channels.conftest import CANARY, SMTP_USER, SmtpServer, make_message
from worker.channels.base import DeliveryError, Outcome
from worker.channels.email import EmailChannel, EmailConfig
from worker.messages import FIXTURES, render


def channel(server: SmtpServer, monkeypatch, password: str | None = None, **overrides) -> EmailChannel:  # noqa: ANN001
    monkeypatch.setenv("TEST_SMTP_PASSWORD", server.password if password is None else password)
    fields = {
        "host": server.host,
        "port": server.port,
        "username": SMTP_USER,
        "password_env": "TEST_SMTP_PASSWORD",
        "from_address": "crs-alert@hospital.example",
        "ca_file": server.ca_file,
        "timeout_s": 2,
    }
    fields.update(overrides)
    return EmailChannel("ward-email", EmailConfig.model_validate(fields))


def rich_message(**overrides):  # noqa: ANN201
    subject, text, html, payload = render(FIXTURES[0], "email", True, None)
    fields = {"to": "oncall@hospital.example", "subject": subject, "text": text, "html": html, "payload": payload}
    return make_message(**{**fields, **overrides})


def test_delivers_multipart_over_starttls_with_auth(smtp_server, monkeypatch):
    """The server receives one message, over TLS, authenticated, with text and HTML parts."""
    receipt = channel(smtp_server, monkeypatch).send(rich_message())
    [got] = smtp_server.behaviour.messages
    assert got["tls"] and got["authenticated"]
    assert got["from"] == "crs-alert@hospital.example" and got["to"] == ["oncall@hospital.example"]
    msg = email.message_from_bytes(got["data"], policy=email.policy.default)
    assert msg["Subject"] == "[EMERGENCY] CRS >=2, ICANS >=1 - patient FIXTURE-001 - alert K7Q2"
    assert msg["Message-ID"] == "<ntf-123@hospital.example>" == receipt.provider_id
    assert msg.get_content_type() == "multipart/alternative"
    plain = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    for part in (plain, html):
        assert "Infection cannot be excluded by this assessment" in part
        assert "Systolic BP 82 mmHg" in part  # the reasons
        assert "K7Q2" in part
    assert "temperature_c: 38.5" in plain
    assert smtp_server.behaviour.auth_attempts[0][1] == SMTP_USER


def test_same_reference_gives_same_message_id(smtp_server, monkeypatch):
    """A retry of the same notification carries the same Message-ID (a human or MUA sees the repeat)."""
    ch = channel(smtp_server, monkeypatch)
    assert ch.send(rich_message()).provider_id == ch.send(rich_message()).provider_id
    ids = {email.message_from_bytes(m["data"])["Message-ID"] for m in smtp_server.behaviour.messages}
    assert len(smtp_server.behaviour.messages) == 2 and ids == {"<ntf-123@hospital.example>"}


def test_wrong_password_is_permanent_and_does_not_leak(smtp_server, monkeypatch):
    with pytest.raises(DeliveryError) as info:
        channel(smtp_server, monkeypatch, password="wrong-" + CANARY).send(rich_message())
    assert info.value.outcome is Outcome.PERMANENT and info.value.status == 535
    assert CANARY not in str(info.value) and CANARY not in repr(info.value)
    assert smtp_server.behaviour.messages == []


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [("550 5.1.1 mailbox unavailable", Outcome.PERMANENT), ("451 4.3.0 try again later", Outcome.RETRYABLE)],
)
def test_recipient_refused(smtp_server, monkeypatch, reply, outcome):
    smtp_server.behaviour.rcpt_reply = reply
    with pytest.raises(DeliveryError) as info:
        channel(smtp_server, monkeypatch).send(rich_message())
    assert info.value.outcome is outcome and info.value.status == int(reply[:3])
    assert "oncall@hospital.example" not in str(info.value)


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [("554 5.6.0 message content rejected", Outcome.PERMANENT), ("452 4.3.1 insufficient storage", Outcome.RETRYABLE)],
)
def test_message_refused_after_data(smtp_server, monkeypatch, reply, outcome):
    smtp_server.behaviour.data_reply = reply
    with pytest.raises(DeliveryError) as info:
        channel(smtp_server, monkeypatch).send(rich_message())
    assert info.value.outcome is outcome


def test_timeout_after_data_is_ambiguous(smtp_server, monkeypatch):
    """The body was sent; the server answers after our timeout: it may have queued the message."""
    smtp_server.behaviour.data_delay_s = 2.5
    with pytest.raises(DeliveryError) as info:
        channel(smtp_server, monkeypatch, timeout_s=0.5).send(rich_message())
    assert info.value.outcome is Outcome.AMBIGUOUS


def test_starttls_unavailable_while_required_is_permanent(plain_smtp_server, monkeypatch):
    with pytest.raises(DeliveryError) as info:
        channel(plain_smtp_server, monkeypatch).send(rich_message())
    assert info.value.outcome is Outcome.PERMANENT
    assert "STARTTLS" in str(info.value)
    assert plain_smtp_server.behaviour.auth_attempts == []  # the password was never sent in clear


def test_untrusted_certificate_is_permanent(smtp_server, monkeypatch, tmp_path):
    """Without the test CA the server certificate does not verify: never send over it."""
    import trustme

    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with pytest.raises(DeliveryError) as info:
        channel(smtp_server, monkeypatch, ca_file=str(other)).send(rich_message())
    assert info.value.outcome is Outcome.PERMANENT and "certificate" in str(info.value)
    assert smtp_server.behaviour.messages == []


def test_server_down_is_retryable(refused_url, monkeypatch, ca_file):
    port = int(refused_url.rsplit(":", 1)[1])
    server = SmtpServer("127.0.0.1", port, ca_file, "x", None)  # type: ignore[arg-type]
    with pytest.raises(DeliveryError) as info:
        channel(server, monkeypatch).send(rich_message())
    assert info.value.outcome is Outcome.RETRYABLE


def test_recipient_must_be_an_address(smtp_server, monkeypatch):
    with pytest.raises(DeliveryError) as info:
        channel(smtp_server, monkeypatch).send(rich_message(to="+15551230000"))
    assert info.value.outcome is Outcome.PERMANENT
    assert smtp_server.behaviour.messages == []


def test_config_rules():
    base = {"host": "h", "from_address": "a@b.example"}
    EmailConfig.model_validate(base)  # no auth, starttls
    with pytest.raises(ValueError, match="username and password_env/password_file go together"):
        EmailConfig.model_validate({**base, "username": "u"})
    with pytest.raises(ValueError, match="security: none would send the password in clear"):
        EmailConfig.model_validate({**base, "security": "none", "username": "u", "password_env": "P"})
    with pytest.raises(ValueError, match="password_env or password_file, not both"):
        EmailConfig.model_validate({**base, "username": "u", "password_env": "P", "password_file": "/x"})
    with pytest.raises(ValueError, match="from_address"):
        EmailConfig.model_validate({**base, "from_address": "not-an-address"})


def test_implicit_tls_port(test_ca, ca_file, monkeypatch):
    """security: tls (port 465 style): TLS from the first byte, then AUTH."""
    import ssl

    from tests.channels.conftest import SmtpBehaviour, _Controller, _Handler

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    test_ca.issue_cert("127.0.0.1").configure_cert(context)
    behaviour = SmtpBehaviour()
    controller = _Controller(_Handler(behaviour), hostname="127.0.0.1", port=0, ssl_context=context)
    controller.start()
    try:
        server = SmtpServer("127.0.0.1", controller.port, ca_file, "unused", behaviour)
        ch = channel(server, monkeypatch, security="tls", username=None, password_env=None)
        ch.send(rich_message())
    finally:
        controller.stop()
    assert len(behaviour.messages) == 1


def test_plain_relay_without_auth(plain_smtp_server, monkeypatch):
    """security: none (an internal relay on port 25): no TLS, no AUTH."""
    ch = channel(plain_smtp_server, monkeypatch, security="none", username=None, password_env=None)
    ch.send(rich_message())
    [got] = plain_smtp_server.behaviour.messages
    assert not got["tls"] and not got["authenticated"] and plain_smtp_server.behaviour.auth_attempts == []


def test_subject_newlines_cannot_add_headers(smtp_server, monkeypatch):
    channel(smtp_server, monkeypatch).send(rich_message(subject="Alert\r\nBcc: attacker@evil.example"))
    msg = email.message_from_bytes(smtp_server.behaviour.messages[0]["data"], policy=email.policy.default)
    assert msg["Subject"] == "Alert Bcc: attacker@evil.example" and msg["Bcc"] is None
    assert smtp_server.behaviour.messages[0]["to"] == ["oncall@hospital.example"]
