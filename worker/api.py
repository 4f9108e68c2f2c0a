"""`crs-alert api`: acknowledgement links, acknowledge/resolve for clinicians and the EHR, health, metrics.

Endpoints:
- ``GET /ack/<token>``: a confirmation page (alert code and urgency only, no clinical data), or 409
  saying the link was already used. A GET never acknowledges: mail scanners and link previews fetch
  links by themselves.
- ``POST /ack/<token>``: acknowledges. The token must be validly signed (403), unexpired (410), name an
  existing alert (404), be unused (409: single use, its nonce is stored in the same transaction
  as the acknowledgement) and be for the alert as it is now (409 when its escalation restarted
  after the link was sent, e.g. an upgrade: the clinician has not seen the change).
- ``GET /api/alerts[?state=open|acknowledged|resolved|all]``, ``GET /api/alerts/<id or code>``,
  ``POST /api/alerts/<id or code>/ack`` ({"actor"}), ``POST /api/alerts/<id or code>/resolve``
  ({"actor", "note"}): with ``Authorization: Bearer <token>``; each client has its own token
  (CRS_API_TOKENS="ehr=...,station=..."), recorded in the audit log as ``api:<client>:<actor>``.
- ``POST /sms/twilio``: an SMS reply ("ACK <code>") from the provider; refused (403) without a
  valid X-Twilio-Signature; acknowledges only when the sender's number is a contact of the alert.
- ``POST /sms/twilio/status``: Twilio's delivery-status callback (the channel's
  ``status_callback``), signed the same way. A page Twilio accepted but then reports ``failed`` or
  ``undelivered`` is dead-lettered and, while its alert is unacknowledged, the failsafe is paged on
  another channel (worker.delivery.provider_status). 204 whatever the status.
- ``POST /sms/gateway/<channel>/status``: a generic SMS gateway's delivery report for an
  ``http_sms`` channel that configures a status secret (worker.channels.sms_gateway): a JSON object
  signed with ``X-Signature-SHA256`` (hex HMAC-SHA256 of the raw body). 403 for a missing or wrong
  signature, 400 naming the field for a malformed report, 404 for a channel without delivery
  reports or a message id this channel never sent (a report that arrives before the send was
  recorded: the gateway may retry it), 503 when the channel's status secret cannot be read; 204
  once recorded (an undelivered page is dead-lettered and the failsafe paged, as for Twilio).
- ``GET /healthz``: 200 when the database answers, else 503. ``GET /metrics``: Prometheus.
Errors are JSON ``{"error": "..."}`` with a status that says what happened; nothing echoes secrets.
A request body over ``MAX_BODY_BYTES`` is refused (413) before it is read.

Rules:
- An unexpected failure answers 503 (database unavailable) or 500 with a fixed message, never an
  exception message or traceback; it is logged as ``api_request_failed`` with the endpoint's name,
  never the path (an ack link's path is a live credential) or the body. An SMS reply that cannot
  be recorded is answered by SMS: "NOT acknowledged", so the clinician does not believe it was.
- An SMS reply names an alert by its code only; the EHR API takes an id or a code, and a reference
  that is both an alert's id and another alert's code is refused (409) rather than guessed.
- ``state`` of ``GET /api/alerts`` must be one of ``STATE_FILTERS`` (400 naming the field).
- An SMS reply acknowledges once: its ``MessageSid`` is stored (``ack_tokens``, nonce ``sms:<sid>``)
  in the acknowledgement's transaction, so a replayed signed request changes nothing (Twilio's
  signature has no timestamp). Every reply that did not acknowledge says "Not acknowledged".
- With a Twilio auth token but no ``public_url`` it starts, with a ``public_url_missing`` warning:
  behind a TLS proxy every reply would fail its signature check.
- A used ack link's page says so (409) instead of offering the form; only the duplicate nonce is
  reported as "already used", any other database error is an internal error.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from html import escape
from typing import Any

from flask import Flask, Response, jsonify, request
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import HTTPException

from worker import acklinks, alerting, delivery, sms_replies
from worker.channels.sms_gateway import SIGNATURE_HEADER, StatusCallback, valid_signature
from worker.logs import get_logger
from worker.store.alert_tables import OPEN_STATES, AckToken, Alert


log = get_logger(__name__)
MAX_BODY_BYTES = 256 << 10  # every request this API takes is a few KiB at most
STATE_FILTERS = ("open", "triggered", "acknowledged", "resolved", "all")
OUTDATED = ("This alert changed after this link was sent (it became more urgent, or it is being paged again), so it was "
            "NOT acknowledged: use the link in the latest page")
NOT_RECORDED_SMS = "NOT acknowledged: the alerting system could not record your reply. Try again or phone the unit."


@dataclass(frozen=True)
class ApiConfig:
    ack_secret: str
    ack_max_age: dt.timedelta = dt.timedelta(hours=12)
    api_tokens: dict[str, str] = field(default_factory=dict)  # client name -> token
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    public_url: str | None = None  # the URL the SMS provider calls (signatures cover it), e.g. https://crs.example
    twilio_auth_token: str | None = None  # verifies inbound SMS replies
    # http_sms channel name -> how its delivery reports are read, or why they cannot be (no secret value)
    sms_gateways: dict[str, StatusCallback | str] = field(default_factory=dict)


def parse_api_tokens(raw: str) -> dict[str, str]:
    """"ehr=TOKEN,station=TOKEN" -> {"ehr": TOKEN, ...}; every token at least 24 characters."""
    tokens: dict[str, str] = {}
    for item in filter(None, (x.strip() for x in (raw or "").split(","))):
        name, sep, token = item.partition("=")
        if not sep or not name or len(token) < 24:
            raise ValueError("CRS_API_TOKENS must be 'client=token,...' with tokens of at least 24 characters")
        tokens[name] = token
    return tokens


def alert_json(a: Alert) -> dict[str, Any]:
    c = a.content or {}
    return {
        "id": a.id, "code": a.code, "patient_id": a.patient_id, "condition": a.condition, "state": a.state,
        "urgency": a.urgency, "route": a.route, "policy": a.policy_name, "opened_at": a.opened_at.isoformat(),
        "acknowledged_at": a.acked_at.isoformat() if a.acked_at else None, "acknowledged_by": a.acked_by,
        "resolved_at": a.resolved_at.isoformat() if a.resolved_at else None, "resolved_by": a.resolved_by,
        "crs_grade": c.get("crs_grade"), "crs_grade_is_minimum": c.get("crs_grade_is_minimum"),
        "icans_grade": c.get("icans_grade"), "red_flags": c.get("red_flags", []), "reasons": c.get("reasons", []),
        "advice": c.get("advice"), "escalation_step": a.escalation_seq, "upgrades": a.upgrades,
    }  # fmt: skip


def create_app(sessions: sessionmaker[Session], config: ApiConfig, metrics: Callable[[], tuple[bytes, str]] | None = None) -> Flask:
    app = Flask("crs-alert")
    if config.twilio_auth_token and not config.public_url:  # the operator's error that refuses every SMS reply
        log.warning("public_url_missing", component="api", reason="CRS_PUBLIC_URL is not set: Twilio signatures "
                    "are checked against the URL this process sees, which behind a proxy is not the one Twilio called")  # fmt: skip
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES  # read (and signature-checked) only up to this

    @app.errorhandler(413)
    def too_large(_exc):  # type: ignore[no-untyped-def]
        return jsonify(error=f"request body larger than {MAX_BODY_BYTES} bytes"), 413

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        return jsonify(error=(exc.name or "error").lower()), exc.code or 500

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        unavailable = isinstance(exc, OperationalError | PoolTimeout)
        status = 503 if unavailable else 500
        log.error("api_request_failed", component=request.endpoint, http_status=status, exc_info=exc)
        if request.endpoint == "sms_reply":
            return twiml(NOT_RECORDED_SMS)  # Twilio sends no reply for an error status: say it was not done
        message = "the database is unavailable; try again" if unavailable else "internal error"
        if request.endpoint == "ack_page":
            return Response(f"<p>Not available: {message}. Acknowledge by SMS or phone.</p>", status=status,
                            content_type="text/html; charset=utf-8")  # fmt: skip
        return error(status, message)

    def error(status: int, message: str) -> tuple[Response, int]:
        return jsonify(error=message), status

    def client() -> str | None:
        scheme, _, given_text = request.headers.get("Authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer":  # the scheme is case-insensitive (RFC 7235)
            return None
        given = given_text.strip().encode()
        found = None
        for name, token in config.api_tokens.items():  # check every token: constant time per request
            if hmac.compare_digest(given, token.encode()):
                found = name
        return found

    def body() -> dict[str, Any] | None:
        """The JSON object posted (any content type), or None when the body is not one."""
        data = request.get_json(silent=True, force=True)
        return data if isinstance(data, dict) else None

    @app.get("/healthz")
    def healthz():  # type: ignore[no-untyped-def]
        try:
            with sessions() as s:
                s.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any database failure is "unhealthy"
            return jsonify(status="unhealthy", reason=f"database: {type(exc).__name__}"), 503
        return jsonify(status="ok")

    @app.get("/metrics")
    def metrics_endpoint():  # type: ignore[no-untyped-def]
        if metrics is None:
            return error(404, "metrics are not enabled")
        payload, content_type = metrics()
        return Response(payload, content_type=content_type)

    def link_used(s: Session, nonce: str) -> bool:
        return s.scalar(select(AckToken.id).where(AckToken.nonce == nonce)) is not None

    @app.get("/ack/<token>")
    def ack_page(token: str):  # type: ignore[no-untyped-def]
        try:
            claims = acklinks.verify(config.ack_secret, token, config.clock(), config.ack_max_age)
        except acklinks.LinkError as exc:
            return page(f"<p>{escape(str(exc))}.</p>", 410 if "expired" in str(exc) else 403)
        with sessions() as s:
            a = s.get(Alert, claims.alert_id)
            if a is None:
                return page("<p>Unknown alert.</p>", 404)
            if link_used(s, claims.nonce):
                return page(f"<h1>Alert {escape(a.code)}</h1><p>This acknowledgement link was already used "
                            f"(state: {escape(a.state)}).</p>", 409)  # fmt: skip
            if claims.outdated(a.escalation_epoch):
                return page(f"<h1>Alert {escape(a.code)}</h1><p>{OUTDATED}</p>", 409)
            return page(
                f"<h1>Alert {escape(a.code)} ({escape(a.urgency)})</h1><p>State: {escape(a.state)}.</p>"
                f'<form method="post"><button type="submit">I take responsibility: acknowledge</button></form>',
                200,
            )

    def page(html: str, status: int) -> Response:
        """An ack page: never cached (shared ward computers), never framed, no referrer (the URL is a credential)."""
        return Response(html, status=status, content_type="text/html; charset=utf-8", headers={
            "Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"})  # fmt: skip

    @app.post("/ack/<token>")
    def ack_link(token: str):  # type: ignore[no-untyped-def]
        now = config.clock()
        try:
            claims = acklinks.verify(config.ack_secret, token, now, config.ack_max_age)
        except acklinks.LinkError as exc:
            return error(410 if "expired" in str(exc) else 403, str(exc))
        used = False
        try:
            with sessions.begin() as s:
                alert = s.get(Alert, claims.alert_id)
                if alert is None:
                    return error(404, "the alert of this acknowledgement link does not exist")
                if claims.outdated(alert.escalation_epoch):
                    return error(409, OUTDATED)
                s.add(AckToken(nonce=claims.nonce, alert_id=claims.alert_id, used_at=now, used_by=claims.receiver))
                try:
                    s.flush()  # the unique nonce: a second use fails here, before anything changes
                except IntegrityError:
                    used = True
                    raise
                changed = alerting.acknowledge(s, claims.alert_id, actor=f"link:{claims.receiver}", via="link", now=now)
        except IntegrityError:
            if not used:
                raise  # another constraint: an internal error, not "already used" (nothing was acknowledged)
            return error(409, "this acknowledgement link was already used")
        except alerting.AlertError as exc:
            return error(409, str(exc))
        return jsonify(acknowledged=True, already=not changed)

    def twilio_params() -> dict[str, str] | None:
        """The form Twilio posted, or None when its X-Twilio-Signature does not verify."""
        params = {k: v for k, v in request.form.items()}
        url = (config.public_url.rstrip("/") + request.full_path.rstrip("?")) if config.public_url else request.url
        if not sms_replies.valid_twilio_signature(config.twilio_auth_token or "", url, params,
                                                  request.headers.get("X-Twilio-Signature")):  # fmt: skip
            return None
        return params

    @app.post("/sms/twilio/status")
    def sms_status():  # type: ignore[no-untyped-def]
        params = twilio_params()
        if params is None:
            return error(403, "invalid signature")
        sid, status = params.get("MessageSid"), params.get("MessageStatus")
        if not sid or not status:
            return error(400, "MessageSid and MessageStatus are required")
        with sessions.begin() as s:
            done = delivery.provider_status(s, sid, status, params.get("ErrorCode"), config.clock())
        if done == "dead":
            log.warning("sms_undelivered", status=status, reason=params.get("ErrorCode"))
        elif done == "unknown":
            log.info("provider_status_unknown", status=status)
        return Response(status=204)

    @app.post("/sms/gateway/<channel>/status")
    def gateway_status(channel: str):  # type: ignore[no-untyped-def]
        callback = config.sms_gateways.get(channel)
        if callback is None:
            return error(404, f"channel {channel!r} has no delivery reports configured (http_sms status_secret_env)")
        if isinstance(callback, str):
            return error(503, f"delivery reports of channel {channel!r} are not usable: {callback}")
        raw = request.get_data(cache=False)
        if not valid_signature(callback.secret, raw, request.headers.get(SIGNATURE_HEADER)):
            return error(403, f"invalid signature ({SIGNATURE_HEADER}: hex HMAC-SHA256 of the body)")
        try:
            report = json.loads(raw)
        except ValueError:
            return error(400, "the body must be a JSON object")
        try:
            message_id, status, error_code = callback.read(report)
        except ValueError as exc:
            return error(400, str(exc))
        with sessions.begin() as s:
            done = delivery.provider_status(s, message_id, status, error_code, config.clock(), channel=channel,
                                            undelivered=callback.undelivered)
        if done == "unknown":
            log.info("provider_status_unknown", channel=channel, status=status)
            return error(404, f"no message sent through channel {channel!r} has this id")
        if done == "dead":
            log.warning("sms_undelivered", channel=channel, status=status, reason=error_code)
        return Response(status=204)

    @app.post("/sms/twilio")
    def sms_reply():  # type: ignore[no-untyped-def]
        params = twilio_params()
        if params is None:
            return error(403, "invalid signature")
        sender = sms_replies.normalise_number(params.get("From", ""))
        code = sms_replies.parse_ack(params.get("Body"))
        if code is None:
            return twiml(sms_replies.HELP)
        now, replayed = config.clock(), False
        try:
            with sessions.begin() as s:
                a = s.scalars(select(Alert).where(Alert.code == code)).first()  # by code only: "ACK 23456" is no id
                if a is None:
                    return twiml(f"Not acknowledged: no alert has the code {code}.")
                who = next((name for name, r in a.policy_snapshot["receivers"].items() for c in r["contacts"]
                            if sender and sms_replies.normalise_number(c.get("to") or "") == sender), None)  # fmt: skip
                if who is None:
                    audit_refusal(s, a.id, now)
                    return twiml(f"Not acknowledged: this number cannot acknowledge alert {a.code}.")
                sid = params.get("MessageSid", "")
                if not sid or len(sid) > 60:
                    return error(400, "MessageSid is required (at most 60 characters)")
                s.add(AckToken(nonce=f"sms:{sid}", alert_id=a.id, used_at=now, used_by=f"sms:{who}"))
                try:
                    s.flush()  # a replayed request (same MessageSid, still validly signed) stops here
                except IntegrityError:
                    replayed = True
                    raise
                changed = alerting.acknowledge(s, a.id, actor=f"sms:{who}", via="sms", now=now)  # an int: by id
                return twiml(f"Alert {a.code} acknowledged." if changed else f"Alert {a.code} was already acknowledged.")
        except IntegrityError:
            if not replayed:
                raise
            log.warning("sms_reply_replayed")
            return twiml(f"This reply was already recorded (alert {code}).")
        except alerting.AlertError as exc:
            return twiml(f"Not acknowledged: {exc}.")

    def twiml(message: str) -> Response:
        return Response(f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>{escape(message)}</Message></Response>",
                        content_type="application/xml")  # fmt: skip

    def audit_refusal(s: Session, alert_id: int, now: dt.datetime) -> None:
        from worker.store.repo import audit

        audit(s, at=now, actor="sms:unknown-number", action="alert.ack_refused", subject=f"alert:{alert_id}", via="sms")

    @app.get("/api/alerts")
    def list_alerts():  # type: ignore[no-untyped-def]
        if client() is None:
            return error(401, "a valid API token is required (Authorization: Bearer ...)")
        state = request.args.get("state", "open")
        if state not in STATE_FILTERS:
            return error(400, f"'state' must be one of {', '.join(STATE_FILTERS)} (got {state[:32]!r})")
        states = {"open": OPEN_STATES, "all": None}.get(state, (state,))
        with sessions() as s:
            q = select(Alert).order_by(Alert.id.desc()).limit(500)
            if states is not None:
                q = q.where(Alert.state.in_(states))
            return jsonify(alerts=[alert_json(a) for a in s.scalars(q)])

    @app.get("/api/alerts/<ref>")
    def show_alert(ref: str):  # type: ignore[no-untyped-def]
        if client() is None:
            return error(401, "a valid API token is required (Authorization: Bearer ...)")
        with sessions() as s:
            try:
                return jsonify(alert_json(alerting.find(s, ref)))
            except alerting.AlertError as exc:
                return error(409 if str(exc).startswith("ambiguous") else 404, str(exc))

    @app.post("/api/alerts/<ref>/<action>")
    def act(ref: str, action: str):  # type: ignore[no-untyped-def]
        who = client()
        if who is None:
            return error(401, "a valid API token is required (Authorization: Bearer ...)")
        data = body()
        if data is None:
            return error(400, "the body must be a JSON object, e.g. {\"actor\": \"dr.kim\"}")
        actor = data.get("actor")
        if not isinstance(actor, str) or not actor.strip():
            return error(400, "'actor' (who is acting, a non-empty string) is required")
        actor = f"api:{who}:{actor.strip()[:64]}"
        if action not in ("ack", "resolve"):
            return error(404, f"unknown action {action!r}; use ack or resolve")
        now = config.clock()
        try:
            with sessions.begin() as s:
                alert_id = alerting.find(s, ref).id  # acknowledge/resolve read an int as an id
                if action == "ack":
                    changed = alerting.acknowledge(s, alert_id, actor=actor, via="api", now=now)
                    return jsonify(acknowledged=True, already=not changed)
                note = data.get("note")
                if note is not None and not isinstance(note, str):
                    return error(400, "'note' must be a string")
                a = alerting.resolve(s, alert_id, actor=actor, note=note if isinstance(note, str) else "", now=now)
                return jsonify(alert_json(a))
        except alerting.AlertError as exc:
            message = str(exc)
            return error(404 if message.startswith("no alert") else 409 if "already" in message or
                         message.startswith("ambiguous") else 400, message)  # fmt: skip

    return app
