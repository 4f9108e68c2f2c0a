"""The delivery outbox against a real local HTTP server (signed webhooks) on both databases:
success, retry with backoff, Retry-After, permanent failure -> failsafe on another channel,
ambiguous timeouts retried with the same reference, a server down for a while (nothing lost),
cancelled pages, crashed senders (lease), rate limits that never hold back an emergency, and
concurrent dispatchers sending each notification once."""

from __future__ import annotations

import base64
import json
import datetime as dt
import threading
import time
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from sqlalchemy import select
from standardwebhooks import Webhook
from werkzeug import Request, Response

from tests.factories import ev
from worker import alerting, delivery
from worker.channels.webhook import WebhookChannel, WebhookConfig
from worker.rules.loader import load_rules_text
from worker.store.alert_tables import AckToken, Alert, DeliveryAttempt, Notification
from worker.store.db import session_factory
from worker.store.models import AuditEntry

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
T0 = dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC)
RULES_TEXT = """\
version: 1
receivers:
  nurse: {contacts: [{channel: sms, to: "+447700900001"}]}
  desk: {contacts: [{channel: sms, to: "+447700900099"}, {channel: email, to: desk@hospital.example}]}
escalation_policies:
  p: {steps: [{notify: [nurse], ack_within: 10m}], failsafe: desk}
routes: {policy: p}
"""
RULES = load_rules_text(RULES_TEXT)


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now

    def advance(self, **kw):
        self.now += dt.timedelta(**kw)


class Receiver:
    """Verifies every request's signature and records (path, webhook-id); behaviour per path is scripted."""

    def __init__(self, server: HTTPServer):
        self.server = server
        self.got: list[tuple[str, str]] = []
        self.script: dict[str, list] = {}
        self.lock = threading.Lock()
        server.expect_request("/sms", method="POST").respond_with_handler(lambda r: self.handle("/sms", r))
        server.expect_request("/email", method="POST").respond_with_handler(lambda r: self.handle("/email", r))

    def handle(self, path: str, request: Request) -> Response:
        Webhook(SECRET).verify(request.get_data(), dict(request.headers))  # raises on a bad signature
        with self.lock:
            self.got.append((path, request.headers["webhook-id"]))
            todo = self.script.get(path) or []
            action = todo.pop(0) if todo else 200
        if isinstance(action, tuple) and action[0] == "sleep":
            time.sleep(action[1])
            return Response("late", 200)
        if isinstance(action, tuple):
            return Response("busy", action[0], headers=action[1])
        return Response("{}", action)


@pytest.fixture
def receiver(httpserver: HTTPServer) -> Receiver:
    return Receiver(httpserver)


@pytest.fixture
def channels(httpserver, monkeypatch):
    monkeypatch.setenv("TEST_WEBHOOK_SECRET", SECRET)

    def make(name, path):
        cfg = WebhookConfig(url=httpserver.url_for(path), secret_env="TEST_WEBHOOK_SECRET", read_timeout_s=1.0)
        return WebhookChannel(name, cfg)

    return {"sms": make("sms", "/sms"), "email": make("email", "/email")}


@pytest.fixture
def sessions(engine):  # the engine fixture has run every migration
    return session_factory(engine)


def open_alert(sessions, patient="P-test", urgency_changes=None):
    changes = urgency_changes or {"vitals": {"temperature_c": 38.6}, "oxygen": {"device": "facemask"}}
    with sessions.begin() as s:
        return alerting.on_evaluation(s, ev(patient_id=patient, **changes), None, RULES, T0, episode="e").alert_id


def rows(sessions):
    with sessions() as s:
        return list(s.scalars(select(Notification).order_by(Notification.id)))


def attempts(sessions, nid):
    with sessions() as s:
        return [a.outcome for a in s.scalars(select(DeliveryAttempt).where(DeliveryAttempt.notification_id == nid)
                                             .order_by(DeliveryAttempt.attempt))]  # fmt: skip


def dispatch(sessions, channels, clock, **policy):
    return delivery.dispatch_due(sessions, channels, clock, policy=delivery.DeliveryPolicy(**policy))


def test_success_is_recorded_with_an_attempt_and_a_verified_signature(sessions, channels, receiver):
    open_alert(sessions)
    report = dispatch(sessions, channels, Clock(T0))
    assert (report.claimed, report.sent) == (1, 1)
    (row,) = rows(sessions)
    assert (row.status, row.attempts, row.sent_at) == ("sent", 1, T0)
    assert receiver.got == [("/sms", f"ntf-{row.id}")]
    assert attempts(sessions, row.id) == ["sent"]
    assert dispatch(sessions, channels, Clock(T0 + dt.timedelta(minutes=1))).claimed == 0  # nothing twice


def test_5xx_is_retried_with_backoff_and_the_same_reference(sessions, channels, receiver):
    open_alert(sessions)
    receiver.script["/sms"] = [503, 502]
    clock = Clock(T0)
    assert dispatch(sessions, channels, clock).retried == 1
    (row,) = rows(sessions)
    first_wait = row.next_attempt_at - T0
    assert row.status == "pending" and dt.timedelta(seconds=2.5) <= first_wait <= dt.timedelta(seconds=5)
    assert dispatch(sessions, channels, clock).claimed == 0  # not due yet
    clock.now = row.next_attempt_at
    dispatch(sessions, channels, clock)
    (row,) = rows(sessions)
    assert dt.timedelta(seconds=5) <= row.next_attempt_at - clock.now <= dt.timedelta(seconds=10)  # doubled
    clock.now = row.next_attempt_at
    assert dispatch(sessions, channels, clock).sent == 1
    assert [ref for _, ref in receiver.got] == [f"ntf-{row.id}"] * 3
    assert attempts(sessions, row.id) == ["retryable", "retryable", "sent"]


def test_retry_after_is_honoured(sessions, channels, receiver):
    open_alert(sessions)
    receiver.script["/sms"] = [(429, {"Retry-After": "90"})]
    dispatch(sessions, channels, Clock(T0))
    (row,) = rows(sessions)
    assert row.status == "pending" and row.next_attempt_at >= T0 + dt.timedelta(seconds=90)


def test_a_permanent_failure_pages_the_failsafe_on_another_channel(sessions, channels, receiver):
    alert_id = open_alert(sessions)
    receiver.script["/sms"] = [400]
    report = dispatch(sessions, channels, Clock(T0))
    assert (report.dead, report.failsafe_pages) == (1, 1)
    dead, failsafe = rows(sessions)
    assert dead.status == "dead" and "permanent after 1 attempt" in dead.status_reason
    assert (failsafe.receiver, failsafe.channel, failsafe.event, failsafe.status) == ("desk", "email", "failsafe", "pending")
    assert failsafe.content["reasons"][0] == "Could not deliver to nurse by sms: the failsafe is paged instead."
    assert dispatch(sessions, channels, Clock(T0)).sent == 1
    assert receiver.got[-1] == ("/email", f"ntf-{failsafe.id}")
    with sessions() as s:
        assert s.scalar(select(AuditEntry.action).where(AuditEntry.subject == f"alert:{alert_id}",
                                                        AuditEntry.action == "delivery.dead")) == "delivery.dead"  # fmt: skip


def audit_actions(sessions, alert_id, action):
    with sessions() as s:
        return list(s.scalars(select(AuditEntry).where(AuditEntry.subject == f"alert:{alert_id}", AuditEntry.action == action)))


def test_with_every_channel_failing_the_failsafe_chain_ends_and_says_nobody_was_reached(sessions, channels, receiver):
    """nurse's sms dies -> desk by email; that dies -> desk by sms (not tried yet for this page);
    that dies -> desk by email again? no: it was paged for this page already. The chain ends."""
    alert_id = open_alert(sessions)
    receiver.script["/sms"] = [400] * 10
    receiver.script["/email"] = [400] * 10
    clock = Clock(T0)
    for _ in range(10):
        if not dispatch(sessions, channels, clock).claimed:
            break
        clock.advance(seconds=1)
    else:
        pytest.fail("the outbox kept producing pages")
    assert [(r.receiver, r.channel, r.event, r.status) for r in rows(sessions)] == [
        ("nurse", "sms", "alert.triggered", "dead"), ("desk", "email", "failsafe", "dead"), ("desk", "sms", "failsafe", "dead")]
    (unreachable,) = audit_actions(sessions, alert_id, "delivery.unreachable")
    assert unreachable.detail["first_dead"] == rows(sessions)[0].id
    assert len(receiver.got) == 3


def test_a_failsafe_chain_that_reaches_someone_is_not_reported_unreachable(sessions, channels, receiver):
    alert_id = open_alert(sessions)
    receiver.script["/sms"] = [400, 200]  # the nurse's page fails, the desk's sms arrives
    receiver.script["/email"] = [400]
    clock = Clock(T0)
    for _ in range(4):
        dispatch(sessions, channels, clock)
        clock.advance(seconds=1)
    assert [(r.receiver, r.channel, r.status) for r in rows(sessions)] == [
        ("nurse", "sms", "dead"), ("desk", "email", "dead"), ("desk", "sms", "sent")]
    assert rows(sessions)[2].content["reasons"][:2] == [
        "Could not deliver to desk by email: the failsafe is paged instead.",
        "Could not deliver to nurse by sms: the failsafe is paged instead."]
    assert audit_actions(sessions, alert_id, "delivery.unreachable") == []


def test_a_timeout_after_sending_is_ambiguous_and_retried_with_the_same_reference(sessions, channels, receiver):
    open_alert(sessions)
    receiver.script["/sms"] = [("sleep", 1.5)]
    clock = Clock(T0)
    assert dispatch(sessions, channels, clock).retried == 1
    (row,) = rows(sessions)
    assert attempts(sessions, row.id) == ["ambiguous"]
    clock.now = row.next_attempt_at
    assert dispatch(sessions, channels, clock).sent == 1
    assert receiver.got == [("/sms", f"ntf-{row.id}")] * 2  # a duplicate page beats a lost one; same id


def test_server_down_for_a_while_then_back_loses_nothing(sessions, channels, receiver, httpserver):
    for i in range(5):
        open_alert(sessions, patient=f"P-{i}")
    httpserver.stop()
    clock = Clock(T0)
    for _ in range(4):
        dispatch(sessions, channels, clock, max_attempts=50, max_age=dt.timedelta(hours=1))
        clock.advance(minutes=2)
    assert {r.status for r in rows(sessions)} == {"pending"}
    assert all(a == "retryable" for r in rows(sessions) for a in attempts(sessions, r.id))
    httpserver.start()
    clock.advance(minutes=10)
    assert dispatch(sessions, channels, clock, max_attempts=50, max_age=dt.timedelta(hours=1)).sent == 5
    assert {r.status for r in rows(sessions)} == {"sent"}
    assert sorted(ref for _, ref in receiver.got) == sorted(f"ntf-{r.id}" for r in rows(sessions))


def test_max_attempts_dead_letters_and_pages_the_failsafe(sessions, channels, receiver):
    open_alert(sessions)
    receiver.script["/sms"] = [500] * 3
    clock = Clock(T0)
    for _ in range(3):
        dispatch(sessions, channels, clock, max_attempts=3)
        clock.advance(minutes=10)
    first = rows(sessions)[0]
    assert first.status == "dead" and "retryable after 3 attempt(s)" in first.status_reason
    assert [r.receiver for r in rows(sessions)][1:] == ["desk"]


def test_a_page_for_an_acknowledged_alert_is_cancelled_not_sent(sessions, channels, receiver):
    alert_id = open_alert(sessions)
    claimed = delivery.claim(sessions, T0, delivery.DeliveryPolicy())
    with sessions.begin() as s:
        alerting.acknowledge(s, alert_id, actor="dr.lee", via="cli", now=T0)
    # the row was already claimed ("sending") when the ack came: the sender re-checks and cancels
    delivery._deliver(sessions, channels, claimed[0], Clock(T0), delivery.DeliveryPolicy(), None, None, __import__("random").Random(1),
                      delivery.DispatchReport())  # fmt: skip
    assert rows(sessions)[0].status == "cancelled" and receiver.got == []


def test_a_crashed_sender_leaves_a_lease_that_expires_into_a_retry(sessions, channels, receiver):
    open_alert(sessions)
    delivery.claim(sessions, T0, delivery.DeliveryPolicy())  # ... and the process dies here
    assert dispatch(sessions, channels, Clock(T0 + dt.timedelta(seconds=60))).claimed == 0  # lease still held
    assert dispatch(sessions, channels, Clock(T0 + dt.timedelta(minutes=3))).sent == 1
    (row,) = rows(sessions)
    assert attempts(sessions, row.id) == ["ambiguous", "sent"]


def test_rate_limits_defer_but_never_hold_back_an_emergency(sessions, channels, receiver):
    for i in range(4):
        open_alert(sessions, patient=f"U-{i}", urgency_changes={"vitals": {"temperature_c": 38.2}})  # urgent
    open_alert(sessions, patient="E-1")  # emergency
    report = dispatch(sessions, channels, Clock(T0), rate_per_minute={"sms": 2})
    # the emergency first (never held back, but it uses the provider's capacity), one urgent, 3 deferred
    assert (report.sent, report.rate_limited) == (2, 3)
    deferred = [r for r in rows(sessions) if r.status == "pending"]
    assert len(deferred) == 3 and all(r.attempts == 0 and r.urgency == "urgent" for r in deferred)
    later = dispatch(sessions, channels, Clock(T0 + dt.timedelta(minutes=2)), rate_per_minute={"sms": 2})
    assert (later.sent, later.rate_limited) == (2, 1)
    assert dispatch(sessions, channels, Clock(T0 + dt.timedelta(minutes=4)), rate_per_minute={"sms": 2}).sent == 1
    assert {r.status for r in rows(sessions)} == {"sent"}


def test_concurrent_dispatchers_send_each_notification_once(sessions, channels, receiver):
    for i in range(30):
        open_alert(sessions, patient=f"C-{i}")
    errors = []

    def run():
        try:
            for _ in range(3):
                dispatch(sessions, channels, Clock(T0))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    refs = [ref for _, ref in receiver.got]
    assert len(refs) == 30 and len(set(refs)) == 30
    assert {r.status for r in rows(sessions)} == {"sent"}


def test_a_failing_template_falls_back_to_the_builtin_message_and_is_reported(sessions, channels, receiver):
    from worker.messages import Templates

    open_alert(sessions)
    broken = Templates({"webhook.subject": "{{ no_such_field }}"})
    report = delivery.dispatch_due(sessions, channels, Clock(T0), templates=broken)
    assert report.sent == 1  # the built-in message went out
    assert report.template_errors and "no_such_field" in report.template_errors[0]


def test_a_failed_rules_reload_opens_an_admin_alert_that_pages(sessions):
    from worker.runtime import admin_alert

    alert_id = admin_alert(sessions, RULES, ["rules.yaml:3:5: undefined receiver 'x'"], now=T0)
    assert admin_alert(sessions, RULES, ["rules.yaml:3:5: undefined receiver 'x'"], now=T0) is None  # one per content
    with sessions() as s:
        a = s.get(Alert, alert_id)
        assert (a.condition, a.patient_id, a.state) == ("system", "(system)", "triggered")
        assert "could not be reloaded" in a.content["reasons"][0]
        assert [n.receiver for n in s.scalars(select(Notification).where(Notification.alert_id == alert_id))] == ["nurse"]


def test_twilio_accepted_then_undelivered_pages_the_failsafe(sessions, channels, receiver, httpserver, monkeypatch):
    """End to end: the page goes to a Twilio-shaped server (201 + message sid, StatusCallback in
    the form); Twilio's signed callback later says "undelivered"; the page is dead-lettered and the
    failsafe paged on the other channel, then delivered by the next dispatch."""
    from tests.channels.conftest import CANARY
    from tests.channels.kinds import SID, twilio
    from worker import sms_replies
    from worker.api import ApiConfig, create_app

    public = "https://crs.hospital.example"
    sms, path, _ = twilio(httpserver.url_for("").rstrip("/"), monkeypatch, status_callback=f"{public}/sms/twilio/status")
    httpserver.expect_request(path, method="POST").respond_with_json({"sid": "SMab12", "status": "queued"}, status=201)
    chans = {**channels, "sms": sms}
    alert_id = open_alert(sessions)
    clock = Clock(T0)
    report = dispatch(sessions, chans, clock)
    assert report.sent == 1
    [(req, _)] = [(r, s) for r, s in httpserver.log if r.path == path]
    assert req.form["StatusCallback"] == f"{public}/sms/twilio/status"
    [page] = rows(sessions)
    assert (page.status, page.provider_id, page.receiver) == ("sent", "SMab12", "nurse")

    token = "tok-" + CANARY  # the auth token twilio() configured
    api = create_app(sessions, ApiConfig(ack_secret="k" * 48, public_url=public, twilio_auth_token=token,
                                         clock=lambda: T0 + dt.timedelta(seconds=40))).test_client()  # fmt: skip
    params = {"MessageSid": "SMab12", "MessageStatus": "undelivered", "ErrorCode": "30005", "AccountSid": SID}
    sig = sms_replies.twilio_signature(token, f"{public}/sms/twilio/status", params)
    assert api.post("/sms/twilio/status", data=params, headers={"X-Twilio-Signature": sig}).status_code == 204

    assert_undelivered_paged_the_failsafe(sessions, chans, clock, receiver, alert_id, "30005")


def assert_undelivered_paged_the_failsafe(sessions, chans, clock, receiver, alert_id, *reason_holds):
    """The page reported undelivered is dead (its reason says why), the failsafe has one page on the
    other channel, delivered by the next dispatch; the alert still waits for someone."""
    after = rows(sessions)
    assert after[0].status == "dead" and all(text in after[0].status_reason for text in reason_holds)
    failsafe = [r for r in after[1:] if r.event == "failsafe"]
    assert [(r.receiver, r.channel, r.status) for r in failsafe] == [("desk", "email", "pending")]  # not sms again
    clock.advance(minutes=1)
    assert dispatch(sessions, chans, clock).sent == 1
    assert [p for p, _ in receiver.got] == ["/email"]
    with sessions() as s:
        assert s.get(Alert, alert_id).state == "triggered"
        assert s.scalar(select(AuditEntry.action).where(AuditEntry.action == "delivery.undelivered"))
    return after


def test_gateway_accepted_then_undelivered_pages_the_failsafe(sessions, channels, receiver, httpserver, monkeypatch):
    """A generic SMS gateway's signed delivery report (POST /sms/gateway/<channel>/status): a report
    that is unsigned, mis-signed or malformed changes nothing; "delivered" is noted; "failed"
    dead-letters the page and pages the failsafe on the other channel, once."""
    from worker.api import ApiConfig, create_app
    from worker.channels.sms_gateway import HttpSmsChannel, HttpSmsConfig, signature, status_callback

    monkeypatch.setenv("T_GW_STATUS", "gw-status-secret")
    cfg = HttpSmsConfig.model_validate({"url": httpserver.url_for("/gw"), "message_id_field": "data.id",
                                        "status_secret_env": "T_GW_STATUS", "status_error_field": "error"})  # fmt: skip
    httpserver.expect_request("/gw", method="POST").respond_with_json({"data": {"id": "gw-42"}}, status=200)
    chans = {**channels, "sms": HttpSmsChannel("sms", cfg)}
    alert_id = open_alert(sessions)
    clock = Clock(T0)
    assert dispatch(sessions, chans, clock).sent == 1
    [page] = rows(sessions)
    assert (page.status, page.provider_id, page.channel) == ("sent", "gw-42", "sms")

    gateways = {"sms": status_callback("sms", cfg), "broken": "status_secret_env: environment variable X is not set or empty"}
    api = create_app(sessions, ApiConfig(ack_secret="k" * 48, sms_gateways=gateways,
                                         clock=lambda: T0 + dt.timedelta(seconds=40))).test_client()  # fmt: skip

    def post(report, channel="sms", sig=None, raw=None):
        body = raw if raw is not None else json.dumps(report).encode()
        headers = {"X-Signature-SHA256": sig if sig is not None else signature("gw-status-secret", body),
                   "Content-Type": "application/json"}  # fmt: skip
        return api.post(f"/sms/gateway/{channel}/status", data=body, headers=headers)

    failed = {"message_id": "gw-42", "status": "FAILED", "error": "E30"}  # the configured statuses are lower case
    assert post(failed, sig="").status_code == 403
    assert post(failed, sig=signature("wrong", json.dumps(failed).encode())).status_code == 403
    assert post(failed, channel="email").status_code == 404  # a channel without delivery reports
    broken = post(failed, channel="broken")
    assert broken.status_code == 503 and "not set or empty" in broken.get_json()["error"]
    assert post(None, raw=b"not json").status_code == 400
    missing = post({"message_id": "gw-42"})
    assert missing.status_code == 400 and missing.get_json()["error"].startswith("status: required")
    assert post({"message_id": "gw-nope", "status": "failed"}).status_code == 404  # never sent through this channel
    assert post({"message_id": "gw-42", "status": "delivered"}).status_code == 204
    assert [r.status for r in rows(sessions)] == ["sent"]  # nothing above changed anything
    with sessions.begin() as s:  # the same provider id on another channel is another message
        assert delivery.provider_status(s, "gw-42", "failed", None, T0, channel="email") == "unknown"

    assert post(failed).status_code == 204
    after = assert_undelivered_paged_the_failsafe(sessions, chans, clock, receiver, alert_id, "FAILED", "E30")
    assert post(failed).status_code == 204  # a repeated report: noted, no second failsafe page
    assert [(r.id, r.event) for r in rows(sessions)] == [(r.id, r.event) for r in after]
