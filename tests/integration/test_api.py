"""The HTTP API on the real databases: ack links (signed, expiring, single use), token-protected
acknowledge/resolve for the EHR, health. Time is controlled with time-machine."""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import uuid
from pathlib import Path

import pytest
import structlog
import time_machine
from sqlalchemy import select

from tests.factories import ev
from worker import acklinks, alerting
from worker.api import ApiConfig, create_app, parse_api_tokens
from worker.logs import configure_logging
from worker.rules.loader import load_rules_text
from worker.store.alert_tables import AckToken, Alert, Notification
from worker.store.db import make_engine, session_factory
from worker.store.models import AuditEntry

RULES = load_rules_text((Path(__file__).resolve().parents[2] / "config" / "rules.yaml").read_text())
SECRET = "k" * 48
EHR_TOKEN = "ehr-token-" + "x" * 30
T0 = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def sessions(engine):  # the engine fixture has run every migration
    return session_factory(engine)


@pytest.fixture
def client(sessions):
    app = create_app(sessions, ApiConfig(ack_secret=SECRET, api_tokens={"ehr": EHR_TOKEN}),
                     metrics=lambda: (b"crs_up 1\n", "text/plain; version=0.0.4"))  # fmt: skip
    return app.test_client()


@pytest.fixture
def alert_id(sessions):
    with sessions.begin() as s:
        out = alerting.on_evaluation(s, ev(vitals={"temperature_c": 38.6}, oxygen={"device": "facemask"}), None, RULES, T0,
                                     episode="unenrolled")  # fmt: skip
    return out.alert_id


AUTH = {"Authorization": f"Bearer {EHR_TOKEN}"}


def state(sessions, alert_id):
    with sessions() as s:
        return s.get(Alert, alert_id).state


@time_machine.travel(T0 + dt.timedelta(minutes=3), tick=False)
def test_ack_link_get_never_acknowledges_post_does_once(client, sessions, alert_id):
    token = acklinks.issue(SECRET, alert_id, "oncall-fellow", T0)
    page = client.get(f"/ack/{token}")
    assert page.status_code == 200 and b"acknowledge" in page.data
    assert b"P-test" not in page.data and b"ASTCT" not in page.data  # no clinical detail on the page
    assert state(sessions, alert_id) == "triggered"
    first = client.post(f"/ack/{token}")
    assert first.status_code == 200 and first.json == {"acknowledged": True, "already": False}
    assert state(sessions, alert_id) == "acknowledged"
    again = client.post(f"/ack/{token}")
    assert again.status_code == 409 and "already used" in again.json["error"]
    with sessions() as s:
        a = s.get(Alert, alert_id)
        assert (a.acked_by, a.ack_via) == ("link:oncall-fellow", "link")
        assert s.scalar(select(AuditEntry.actor).where(AuditEntry.action == "alert.acknowledged")) == "link:oncall-fellow"


@time_machine.travel(T0 + dt.timedelta(minutes=3), tick=False)
def test_a_link_sent_before_the_alert_was_upgraded_does_not_acknowledge_it(client, sessions, alert_id):
    """The clinician tapped a link for the alert as it was; it has since become more urgent (its
    escalation restarted): the link is refused, unused, and the new page's link works."""
    with sessions() as s:
        epoch = s.get(Alert, alert_id).escalation_epoch
    old = acklinks.issue(SECRET, alert_id, "oncall-fellow", T0, epoch)
    with sessions.begin() as s:
        alerting.on_evaluation(s, ev(vitals={"temperature_c": 39.5, "systolic_bp": 70}, oxygen={"device": "facemask"}),
                               None, RULES, T0 + dt.timedelta(minutes=2), episode="unenrolled")  # fmt: skip
    with sessions() as s:
        assert s.get(Alert, alert_id).escalation_epoch == epoch + 1  # upgraded: escalation restarted
    page = client.get(f"/ack/{old}")
    assert page.status_code == 409 and b"NOT acknowledged" in page.data and b"<form" not in page.data
    refused = client.post(f"/ack/{old}")
    assert refused.status_code == 409 and "changed after this link was sent" in refused.json["error"]
    assert state(sessions, alert_id) == "triggered"
    with sessions() as s:
        assert s.scalar(select(AckToken.id)) is None  # not consumed
    new = acklinks.issue(SECRET, alert_id, "oncall-fellow", T0 + dt.timedelta(minutes=2), epoch + 1)
    assert client.post(f"/ack/{new}").json == {"acknowledged": True, "already": False}


def test_forged_and_expired_links_are_refused(client, sessions, alert_id):
    token = acklinks.issue(SECRET, alert_id, "oncall-fellow", T0)
    forged = acklinks.issue("z" * 48, alert_id, "oncall-fellow", T0)
    with time_machine.travel(T0 + dt.timedelta(hours=1), tick=False):
        assert client.post(f"/ack/{forged}").status_code == 403
        assert client.post(f"/ack/{token[:-4]}AAAA").status_code == 403
        assert client.get(f"/ack/{forged}").status_code == 403
    with time_machine.travel(T0 + dt.timedelta(hours=12, seconds=1), tick=False):
        expired = client.post(f"/ack/{token}")
        assert expired.status_code == 410 and "expired" in expired.json["error"]
    assert state(sessions, alert_id) == "triggered"
    with sessions() as s:
        assert s.scalars(select(AckToken)).all() == []  # refused links consume nothing


@time_machine.travel(T0 + dt.timedelta(minutes=3), tick=False)
def test_a_link_for_a_resolved_alert_is_refused_and_not_consumed(client, sessions, alert_id):
    with sessions.begin() as s:
        alerting.resolve(s, alert_id, actor="dr.lee", note="tocilizumab given", now=T0 + dt.timedelta(minutes=1))
    token = acklinks.issue(SECRET, alert_id, "oncall-fellow", T0)
    r = client.post(f"/ack/{token}")
    assert r.status_code == 409 and "already resolved" in r.json["error"]
    with sessions() as s:
        assert s.scalars(select(AckToken)).all() == []


@time_machine.travel(T0 + dt.timedelta(minutes=3), tick=False)
def test_ehr_api_needs_a_valid_token(client, alert_id):
    assert client.get("/api/alerts").status_code == 401
    assert client.get("/api/alerts", headers={"Authorization": "Bearer wrong-token-xxxxxxxxxxxxxxxxxxxxx"}).status_code == 401
    assert client.post(f"/api/alerts/{alert_id}/ack", json={"actor": "x"}).status_code == 401
    listed = client.get("/api/alerts", headers=AUTH)
    assert listed.status_code == 200 and [a["id"] for a in listed.json["alerts"]] == [alert_id]
    assert listed.json["alerts"][0]["crs_grade"] == 3


@time_machine.travel(T0 + dt.timedelta(minutes=3), tick=False)
def test_ehr_ack_and_resolve_by_code(client, sessions, alert_id):
    with sessions() as s:
        code = s.get(Alert, alert_id).code
    assert client.post(f"/api/alerts/{code}/ack", json={}, headers=AUTH).status_code == 400  # actor required
    r = client.post(f"/api/alerts/{code.lower()}/ack", json={"actor": "dr.kim"}, headers=AUTH)
    assert r.status_code == 200 and r.json["already"] is False
    assert client.post(f"/api/alerts/{code}/ack", json={"actor": "dr.kim"}, headers=AUTH).json["already"] is True
    no_note = client.post(f"/api/alerts/{code}/resolve", json={"actor": "dr.kim"}, headers=AUTH)
    assert no_note.status_code == 400 and "note is required" in no_note.json["error"]
    done = client.post(f"/api/alerts/{code}/resolve", json={"actor": "dr.kim", "note": "CRS settled"}, headers=AUTH)
    assert done.status_code == 200 and done.json["state"] == "resolved" and done.json["resolved_by"] == "api:ehr:dr.kim"
    assert client.post(f"/api/alerts/{code}/resolve", json={"actor": "dr.kim", "note": "x"}, headers=AUTH).status_code == 409
    assert client.post("/api/alerts/ZZZZZ/ack", json={"actor": "dr.kim"}, headers=AUTH).status_code == 404
    assert client.post(f"/api/alerts/{code}/escalate", json={"actor": "dr.kim"}, headers=AUTH).status_code == 404
    assert client.get("/api/alerts?state=resolved", headers=AUTH).json["alerts"][0]["id"] == alert_id


def test_healthz_and_metrics(client, sessions):
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/metrics").data == b"crs_up 1\n"
    dead = create_app(session_factory(make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")), ApiConfig(ack_secret=SECRET))
    r = dead.test_client().get("/healthz")
    assert r.status_code == 503 and r.json["status"] == "unhealthy"


@pytest.mark.parametrize(
    ("raw", "ok"),
    [("ehr=" + "a" * 24, True), ("ehr=" + "a" * 24 + ", station=" + "b" * 30, True), ("ehr=short", False), ("noequals", False), ("", True)],
)
def test_api_token_setting(raw, ok):
    if ok:
        assert isinstance(parse_api_tokens(raw), dict)
    else:
        with pytest.raises(ValueError, match="CRS_API_TOKENS"):
            parse_api_tokens(raw)


# ---- SMS replies (Twilio inbound webhook) -----------------------------------------------------

from worker import sms_replies  # noqa: E402

TWILIO_TOKEN = "twilio-auth-token-for-tests"
PUBLIC = "https://crs.hospital.example"


@pytest.fixture
def sms_client(sessions):
    cfg = ApiConfig(ack_secret=SECRET, public_url=PUBLIC, twilio_auth_token=TWILIO_TOKEN,
                    clock=lambda: T0 + dt.timedelta(minutes=2))  # fmt: skip
    return create_app(sessions, cfg).test_client()


def reply(client, body, sender="+447700900102", token=TWILIO_TOKEN, tamper=False, sid=None):
    params = {"From": sender, "To": "+447700900000", "Body": body, "MessageSid": sid or f"SM{uuid.uuid4().hex}"}
    sig = sms_replies.twilio_signature(token, f"{PUBLIC}/sms/twilio", params)
    if tamper:
        params["Body"] = body + " "
    return client.post("/sms/twilio", data=params, headers={"X-Twilio-Signature": sig})


def test_sms_reply_ack_from_a_receiver_number(sms_client, sessions, alert_id):
    with sessions() as s:
        code = s.get(Alert, alert_id).code
    r = reply(sms_client, f"ack {code.lower()}", sender="+44 7700 900102")  # oncall-fellow's number, spaced
    assert r.status_code == 200 and f"Alert {code} acknowledged." in r.text
    with sessions() as s:
        a = s.get(Alert, alert_id)
        assert (a.state, a.acked_by, a.ack_via) == ("acknowledged", "sms:oncall-fellow", "sms")
    assert "already acknowledged" in reply(sms_client, code).text


def test_sms_reply_refusals(sms_client, sessions, alert_id):
    with sessions() as s:
        code = s.get(Alert, alert_id).code
    assert reply(sms_client, f"ACK {code}", token="wrong-token").status_code == 403
    assert reply(sms_client, f"ACK {code}", tamper=True).status_code == 403
    assert sms_client.post("/sms/twilio", data={"From": "+1", "Body": f"ACK {code}"}).status_code == 403
    stranger = reply(sms_client, f"ACK {code}", sender="+15550000000")
    assert "cannot acknowledge" in stranger.text
    assert "Reply ACK followed by the alert code" in reply(sms_client, "what is this?").text
    assert "Not acknowledged: no alert has the code ZZZZZ" in reply(sms_client, "ACK ZZZZZ").text
    with sessions() as s:
        assert s.get(Alert, alert_id).state == "triggered"
        assert s.scalar(select(AuditEntry.action).where(AuditEntry.action == "alert.ack_refused")) == "alert.ack_refused"


@pytest.mark.parametrize(
    ("body", "code"),
    [("ACK K7Q2X", "K7Q2X"), ("  ack   k7q2x ", "K7Q2X"), ("K7Q2X", "K7Q2X"), ("#k7q2x.", "K7Q2X"),
     ("acknowledge K7Q2X", "K7Q2X"), ("ACK", None), ("yes", None), ("ACK K7Q2X please", None), ("", None)],
)
def test_parse_ack(body, code):
    assert sms_replies.parse_ack(body) == code


def status_report(client, sid, status, code=None, token=TWILIO_TOKEN):
    params = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC" + "0" * 32, "To": "+447700900102"}
    if code:
        params["ErrorCode"] = code
    sig = sms_replies.twilio_signature(token, f"{PUBLIC}/sms/twilio/status", params)
    return client.post("/sms/twilio/status", data=params, headers={"X-Twilio-Signature": sig})


def sent_sms(sessions, alert_id, sid="SMfeedbeef"):
    """Mark the alert's first SMS page as sent by the provider with message id ``sid``."""
    with sessions.begin() as s:
        row = s.scalars(select(Notification).where(Notification.alert_id == alert_id, Notification.channel == "sms",
                                                   Notification.escalating.is_(True)).order_by(Notification.id)).first()  # fmt: skip
        row.status, row.provider_id, row.attempts, row.sent_at = "sent", sid, 1, T0
        return row.id, row.receiver


def test_an_sms_reported_undelivered_is_dead_lettered_and_the_failsafe_paged(sms_client, sessions, alert_id):
    nid, receiver = sent_sms(sessions, alert_id)
    assert status_report(sms_client, "SMfeedbeef", "delivered").status_code == 204  # a progress report: nothing to do
    with sessions() as s:
        assert s.get(Notification, nid).status == "sent"
    r = status_report(sms_client, "SMfeedbeef", "undelivered", code="30003")
    assert r.status_code == 204
    with sessions() as s:
        row = s.get(Notification, nid)
        assert row.status == "dead" and "undelivered" in row.status_reason and "30003" in row.status_reason
        failsafe = list(s.scalars(select(Notification).where(Notification.status_reason == f"dead letter of notification {nid}")))
        assert failsafe and {f.channel for f in failsafe}.isdisjoint({"sms"}) and {f.status for f in failsafe} == {"pending"}
        assert all(f.event == "failsafe" for f in failsafe)
        audit = s.scalars(select(AuditEntry).where(AuditEntry.action == "delivery.undelivered")).one()
        assert audit.detail["receiver"] == receiver and audit.detail["error_code"] == "30003"
    assert status_report(sms_client, "SMfeedbeef", "undelivered", code="30003").status_code == 204  # Twilio retries
    with sessions() as s:
        again = list(s.scalars(select(Notification).where(Notification.status_reason == f"dead letter of notification {nid}")))
        assert len(again) == len(failsafe)  # paged once


def test_an_undelivered_sms_of_an_acknowledged_alert_pages_nobody_else(sms_client, sessions, alert_id):
    nid, _ = sent_sms(sessions, alert_id)
    with sessions.begin() as s:
        alerting.acknowledge(s, alert_id, actor="dr.lee", via="cli", now=T0 + dt.timedelta(minutes=1))
    assert status_report(sms_client, "SMfeedbeef", "failed").status_code == 204
    with sessions() as s:
        assert s.get(Notification, nid).status == "dead"  # recorded ...
        assert not list(s.scalars(select(Notification).where(Notification.event == "failsafe")))  # ... nobody paged


def test_status_callback_refusals(sms_client, sessions, alert_id):
    nid, _ = sent_sms(sessions, alert_id)
    assert status_report(sms_client, "SMfeedbeef", "undelivered", token="wrong-token").status_code == 403
    assert sms_client.post("/sms/twilio/status", data={"MessageSid": "SMfeedbeef", "MessageStatus": "failed"}).status_code == 403
    params = {"MessageStatus": "failed"}
    sig = sms_replies.twilio_signature(TWILIO_TOKEN, f"{PUBLIC}/sms/twilio/status", params)
    missing = sms_client.post("/sms/twilio/status", data=params, headers={"X-Twilio-Signature": sig})
    assert missing.status_code == 400 and "MessageSid" in missing.json["error"]
    assert status_report(sms_client, "SMunknown", "undelivered").status_code == 204  # not ours: nothing changes
    with sessions() as s:
        assert s.get(Notification, nid).status == "sent"


def test_a_body_over_the_limit_is_refused_with_a_json_error(client, alert_id):
    from worker.api import MAX_BODY_BYTES

    big = {"actor": "dr.kim", "note": "x" * MAX_BODY_BYTES}
    r = client.post(f"/api/alerts/{alert_id}/resolve", json=big, headers=AUTH)
    assert r.status_code == 413 and r.json == {"error": f"request body larger than {MAX_BODY_BYTES} bytes"}
    r = client.post("/sms/twilio/status", data={"MessageSid": "SM1", "Body": "y" * MAX_BODY_BYTES})
    assert r.status_code == 413
    fits = client.post(f"/api/alerts/{alert_id}/resolve", json={"actor": "dr.kim", "note": "x" * 1000}, headers=AUTH)
    assert fits.status_code == 200  # a note of normal size still goes through


# ---- audit 2026-12-03: failures, references, senders, filters ---------------------------------



def dead_client(**config):
    engine = make_engine("postgresql+psycopg://postgres@127.0.0.1:1/none")
    return create_app(session_factory(engine), ApiConfig(ack_secret=SECRET, api_tokens={"ehr": EHR_TOKEN}, **config)).test_client()


@pytest.fixture
def json_log():
    """The process's logging as in production (JSON lines), into a buffer; put back afterwards, so
    later tests that read their log lines from stdout still find them there."""
    out = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging(json=True, level="INFO", stream=out)
    yield out
    root.handlers = saved[0]
    root.setLevel(saved[1])
    structlog.reset_defaults()


def test_a_database_failure_answers_503_json_and_logs_neither_the_link_nor_a_message(json_log):
    """An ack link's path is a live credential: a failure logs the endpoint's name, never the path."""
    out = json_log
    token = acklinks.issue(SECRET, 7, "oncall-fellow", dt.datetime.now(dt.UTC))
    c = dead_client()
    r = c.post(f"/ack/{token}")
    assert r.status_code == 503 and r.json == {"error": "the database is unavailable; try again"}
    page = c.get(f"/ack/{token}")
    assert page.status_code == 503 and b"Acknowledge by SMS or phone" in page.data and b"Traceback" not in page.data
    assert c.get("/api/alerts", headers=AUTH).status_code == 503
    logged = out.getvalue()
    assert token not in logged and token.split(".")[0] not in logged and "127.0.0.1" not in logged
    events = [json.loads(line) for line in logged.splitlines()]
    failed = [e for e in events if e["event"] == "api_request_failed"]
    assert {e["component"] for e in failed} == {"ack_link", "ack_page", "list_alerts"}
    assert {e["http_status"] for e in failed} == {503} and all(e["error_type"] == "OperationalError" for e in failed)


def test_an_sms_reply_that_cannot_be_recorded_says_not_acknowledged():
    """Twilio sends no reply for an error status: the clinician must not take silence for success."""
    c = dead_client(public_url=PUBLIC, twilio_auth_token=TWILIO_TOKEN)
    r = reply(c, "ACK K7Q2X")
    assert r.status_code == 200 and "NOT acknowledged" in r.text and r.content_type == "application/xml"


def test_unknown_paths_and_methods_answer_json():
    c = dead_client()
    assert (c.get("/nope").status_code, c.get("/nope").json) == (404, {"error": "not found"})
    assert (c.put("/healthz").status_code, c.put("/healthz").json) == (405, {"error": "method not allowed"})


def set_code(sessions, alert_id, code):
    with sessions.begin() as s:
        s.get(Alert, alert_id).code = code


def second_alert(sessions):
    with sessions.begin() as s:
        return alerting.on_evaluation(s, ev(patient_id="P-test-2", vitals={"temperature_c": 38.6}, oxygen={"device": "facemask"}),
                                      None, RULES, T0, episode="unenrolled").alert_id  # fmt: skip


def test_a_typed_reference_that_is_one_alerts_id_and_anothers_code_is_refused_everywhere(sessions, alert_id):
    """`crs-alert alerts ack 23456` (and the EHR API) share alerting.find: an all-digit reference
    that names two alerts acknowledges neither; an int is always an id."""
    other = second_alert(sessions)
    set_code(sessions, other, str(alert_id))
    with sessions.begin() as s, pytest.raises(alerting.AlertError, match="ambiguous reference"):
        alerting.acknowledge(s, str(alert_id), actor="cli:dr.kim", via="cli", now=T0)
    assert (state(sessions, alert_id), state(sessions, other)) == ("triggered", "triggered")
    with sessions() as s:
        assert alerting.find(s, alert_id).id == alert_id  # an int is an id
        assert alerting.find(s, str(other)).id == other  # no alert has that code: the id
        assert alerting.find(s, s.get(Alert, alert_id).code.lower()).id == alert_id  # a letter code, any case
        with pytest.raises(alerting.AlertError, match="no alert"):
            alerting.find(s, "99999999999999999999999")


def test_an_sms_reply_with_an_all_digit_code_acknowledges_that_code_not_an_id(sms_client, sessions, alert_id):
    """Codes use the digits 2-9: 1 in 1024 is all digits ("23456"), and must not be read as the id of
    another alert (here the code is the first alert's id, zero-padded, to make both exist)."""
    other = second_alert(sessions)
    digits = f"{alert_id:05d}"
    set_code(sessions, other, digits)
    r = reply(sms_client, f"ACK {digits}")
    assert f"Alert {digits} acknowledged." in r.text
    with sessions() as s:
        assert (s.get(Alert, other).state, s.get(Alert, alert_id).state) == ("acknowledged", "triggered")
    unknown = reply(sms_client, "ACK 99999")
    assert "no alert has the code 99999" in unknown.text


@time_machine.travel(T0 + dt.timedelta(minutes=3), tick=False)
def test_the_ehr_api_refuses_a_reference_that_is_an_id_and_another_alerts_code(client, sessions, alert_id):
    other = second_alert(sessions)
    digits = str(alert_id)
    with sessions() as s:
        first_code = s.get(Alert, alert_id).code
    set_code(sessions, other, digits)
    shown = client.get(f"/api/alerts/{digits}", headers=AUTH)
    assert shown.status_code == 409 and "ambiguous reference" in shown.json["error"] and first_code in shown.json["error"]
    acked = client.post(f"/api/alerts/{digits}/ack", json={"actor": "dr.kim"}, headers=AUTH)
    assert acked.status_code == 409
    assert (state(sessions, alert_id), state(sessions, other)) == ("triggered", "triggered")
    assert client.get(f"/api/alerts/{other}", headers=AUTH).json["code"] == digits  # its id is unambiguous
    assert client.post(f"/api/alerts/{first_code}/ack", json={"actor": "dr.kim"}, headers=AUTH).status_code == 200


def test_an_sms_reply_without_a_sender_number_matches_no_e_mail_contact(sms_client, sessions, alert_id):
    """A contact's e-mail address is not a phone number: an empty or non-numeric From matches nothing."""
    with sessions() as s:
        code = s.get(Alert, alert_id).code
    for sender in ("", "charge-nurse", "haem-charge-nurse@hospital.example"):
        assert "cannot acknowledge" in reply(sms_client, f"ACK {code}", sender=sender).text
    assert state(sessions, alert_id) == "triggered"


@pytest.mark.parametrize(
    ("value", "normalised"),
    [("+44 7700 900102", "+447700900102"), ("+1 (555) 010-0199", "+15550100199"), ("", ""),
     ("haem-charge-nurse@hospital.example", ""), ("https://hooks.example/1234567", ""), ("+44 7700 x", "")],
)
def test_normalise_number(value, normalised):
    assert sms_replies.normalise_number(value) == normalised


@time_machine.travel(T0 + dt.timedelta(minutes=3), tick=False)
def test_an_unknown_state_filter_is_refused_naming_the_field(client, alert_id):
    r = client.get("/api/alerts?state=acked", headers=AUTH)
    assert r.status_code == 400 and r.json["error"].startswith("'state' must be one of open, triggered, acknowledged")
    assert [a["id"] for a in client.get("/api/alerts?state=triggered", headers=AUTH).json["alerts"]] == [alert_id]


@time_machine.travel(T0 + dt.timedelta(minutes=3), tick=False)
def test_the_bearer_scheme_is_case_insensitive_and_an_empty_token_is_refused(client, alert_id):
    assert client.get("/api/alerts", headers={"Authorization": f"bearer {EHR_TOKEN}"}).status_code == 200
    for header in ("Bearer ", "Bearer", EHR_TOKEN, f"Basic {EHR_TOKEN}", f"Bearer {EHR_TOKEN}x"):
        assert client.get("/api/alerts", headers={"Authorization": header}).status_code == 401, header


def test_a_non_ascii_signature_header_is_refused_not_a_server_error(sms_client):
    params = {"From": "+447700900102", "Body": "ACK K7Q2X"}
    r = sms_client.post("/sms/twilio", data=params, headers={"X-Twilio-Signature": "\u00e9t\u00e9"})
    assert r.status_code == 403


def test_a_non_ascii_gateway_signature_is_invalid():
    from pydantic import SecretStr

    from worker.channels.sms_gateway import valid_signature

    assert valid_signature(SecretStr("s" * 32), b"{}", "\u00e9" * 64) is False


@time_machine.travel(T0 + dt.timedelta(minutes=3), tick=False)
def test_a_used_links_page_says_so_and_no_page_is_cached_or_framed(client, sessions, alert_id):
    token = acklinks.issue(SECRET, alert_id, "oncall-fellow", T0)
    fresh = client.get(f"/ack/{token}")
    assert fresh.headers["Cache-Control"] == "no-store" and fresh.headers["Referrer-Policy"] == "no-referrer"
    assert fresh.headers["X-Frame-Options"] == "DENY"
    assert client.post(f"/ack/{token}").status_code == 200
    used = client.get(f"/ack/{token}")
    assert used.status_code == 409 and b"already used" in used.data and b"<form" not in used.data


@time_machine.travel(T0 + dt.timedelta(minutes=3), tick=False)
def test_a_link_for_an_alert_that_does_not_exist_is_404_not_already_used(client, sessions, alert_id):
    token = acklinks.issue(SECRET, alert_id + 1000, "oncall-fellow", T0)
    r = client.post(f"/ack/{token}")
    assert r.status_code == 404 and "does not exist" in r.json["error"]


def test_a_replayed_sms_reply_changes_nothing(sms_client, sessions, alert_id):
    """Twilio's signature has no timestamp: a captured request replayed after an upgrade must not ack again."""
    with sessions() as s:
        code = s.get(Alert, alert_id).code
    assert "acknowledged." in reply(sms_client, f"ACK {code}", sid="SMreplayed").text
    with sessions.begin() as s:  # as an upgrade does: unacknowledged again
        a = s.get(Alert, alert_id)
        a.state, a.acked_at, a.acked_by = "triggered", None, None
    again = reply(sms_client, f"ACK {code}", sid="SMreplayed")
    assert again.status_code == 200 and "already recorded" in again.text
    assert state(sessions, alert_id) == "triggered"
    assert "acknowledged." in reply(sms_client, f"ACK {code}", sid="SMnew").text  # a new reply does


@pytest.mark.parametrize("body", ["ack K7Q2X on my way", "yes", "ACK 12", "ok"])
def test_a_reply_that_is_not_read_says_not_acknowledged(sms_client, body):
    assert "Not acknowledged." in reply(sms_client, body).text


@time_machine.travel(T0 + dt.timedelta(minutes=3), tick=False)
def test_a_body_that_is_not_a_json_object_is_refused_saying_so(client, sessions, alert_id):
    for raw in (b"actor=dr.kim", b"[1]", b"", b"{bad"):
        r = client.post(f"/api/alerts/{alert_id}/ack", data=raw, content_type="application/json", headers=AUTH)
        assert r.status_code == 400 and "must be a JSON object" in r.json["error"], raw
    plain = client.post(f"/api/alerts/{alert_id}/ack", data=b'{"actor": "dr.kim"}', content_type="text/plain", headers=AUTH)
    assert plain.status_code == 200  # a client that forgets the content type is still understood
    r = client.post(f"/api/alerts/{alert_id}/resolve", json={"actor": "dr.kim", "note": ["x"]}, headers=AUTH)
    assert r.status_code == 400 and r.json["error"] == "'note' must be a string"
    assert state(sessions, alert_id) == "acknowledged"


def test_sms_replies_without_a_public_url_are_warned_about_at_start():
    from structlog.testing import capture_logs

    with capture_logs() as logs:
        dead_client(twilio_auth_token=TWILIO_TOKEN)
        dead_client(twilio_auth_token=TWILIO_TOKEN, public_url=PUBLIC)
    assert [e["event"] for e in logs] == ["public_url_missing"]
