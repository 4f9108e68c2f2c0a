"""Deliver the notification outbox: claim due rows, send through the channels, record every attempt.

Rules (issue 5):
- Claiming is a short transaction: due rows (pending, or deferred past their time, or "sending"
  whose lease expired because a sender died) are locked with FOR UPDATE SKIP LOCKED on PostgreSQL
  (SQLite serialises writers), marked "sending" with a lease, and get an attempt row BEFORE the
  send. Emergencies are claimed first.
- A page for an alert that was acknowledged or resolved meanwhile is cancelled, not sent.
- After the send, in a second transaction: sent; or retried with exponential backoff and full
  jitter (at least the provider's Retry-After) for retryable AND ambiguous outcomes (a duplicate
  page beats a lost one; every retry carries the same reference, ``ntf-<id>``); or dead-lettered
  when the failure is permanent, or after ``max_attempts``, or when the row is older than
  ``max_age``. A dead page pages the alert's failsafe receiver on a different channel (every
  contact of the failsafe whose channel differs from the one that failed). A dead failsafe page
  does the same for the page that started the chain, so each failsafe contact is paged at most
  once per dead page: with every channel failing, the chain ends (audit ``delivery.unreachable``
  once no page of it is still on its way) instead of paging back and forth forever.
- A lease that expired is an ambiguous attempt: retried, never lost.
- Per-channel rate limits (provider limits) defer a row a little, never drop it; an emergency is
  never held back by them (the provider's own 429 is retried like any other).
- Anything unexpected from a channel is treated as ambiguous (retried).
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, case, delete, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from worker import acklinks
from worker.channels.base import Channel, DeliveryError, OutboundMessage, Outcome
from worker.messages import AlertContent, Templates, render
from worker.store.alert_tables import Alert, DeliveryAttempt, Notification
from worker.store.repo import audit, insert_ignore

URGENCY_FIRST = case({"emergency": 0, "urgent": 1, "routine": 2}, value=Notification.urgency, else_=3)


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int = 8
    max_age: dt.timedelta = dt.timedelta(minutes=20)
    backoff_base: dt.timedelta = dt.timedelta(seconds=5)
    backoff_cap: dt.timedelta = dt.timedelta(minutes=5)
    lease: dt.timedelta = dt.timedelta(minutes=2)
    rate_per_minute: Mapping[str, int] = field(default_factory=dict)  # channel name -> sends per minute
    rate_deferral: dt.timedelta = dt.timedelta(seconds=10)


@dataclass(frozen=True)
class AckLinks:
    secret: str
    base_url: str  # e.g. https://crs.hospital.example (the api service)


@dataclass
class DispatchReport:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    dead: int = 0
    cancelled: int = 0
    rate_limited: int = 0
    failsafe_pages: int = 0
    template_errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Claim:
    id: int
    alert_id: int
    attempt: int
    channel: str
    address: str
    receiver: str
    event: str
    urgency: str
    escalating: bool
    step: int
    repeat: int
    content: dict[str, Any]
    created_at: dt.datetime
    dedupe_key: str


def backoff(policy: DeliveryPolicy, attempt: int, retry_after: float | None, rnd: random.Random) -> dt.timedelta:
    """Exponential backoff with full jitter (AWS style), capped, and never below Retry-After."""
    ceiling = min(policy.backoff_cap.total_seconds(), policy.backoff_base.total_seconds() * 2 ** max(attempt - 1, 0))
    delay = rnd.uniform(ceiling / 2, ceiling)
    return dt.timedelta(seconds=max(delay, retry_after or 0.0))


def _is_pg(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def claim(sessions: sessionmaker[Session], now: dt.datetime, policy: DeliveryPolicy, limit: int = 50) -> list[_Claim]:
    with sessions.begin() as s:
        due = or_(
            and_(Notification.status.in_(("pending", "deferred")), Notification.next_attempt_at <= now),
            and_(Notification.status == "sending", Notification.lease_until <= now),
        )
        q = select(Notification).where(due).order_by(URGENCY_FIRST, Notification.next_attempt_at, Notification.id).limit(limit)
        if _is_pg(s):
            q = q.with_for_update(skip_locked=True)
        claims = []
        for row in s.scalars(q):
            if row.status == "sending":  # the sender died mid-send: that attempt may have gone out
                _finish_attempt(s, row.id, row.attempts, now, "ambiguous", "lease expired: the sender stopped mid-send")
            row.status = "sending"
            row.attempts += 1
            row.lease_until = now + policy.lease
            s.add(DeliveryAttempt(notification_id=row.id, attempt=row.attempts, channel=row.channel, started_at=now,
                                  outcome="sending"))  # fmt: skip
            claims.append(_claim_of(row))
        return claims


def _claim_of(row: Notification) -> _Claim:
    return _Claim(row.id, row.alert_id, row.attempts, row.channel, row.address, row.receiver, row.event, row.urgency,
                  row.escalating, row.step, row.repeat, dict(row.content), row.created_at, row.dedupe_key)  # fmt: skip


def _finish_attempt(s: Session, notification_id: int, attempt: int, now: dt.datetime, outcome: str, detail: str | None,
                    provider_id: str | None = None) -> None:  # fmt: skip
    row = s.scalars(select(DeliveryAttempt).where(DeliveryAttempt.notification_id == notification_id,
                                                  DeliveryAttempt.attempt == attempt)).first()  # fmt: skip
    if row is not None:
        row.finished_at, row.outcome, row.detail, row.provider_id = now, outcome, detail, provider_id


def dispatch_due(sessions: sessionmaker[Session], channels: Mapping[str, Channel], clock: Callable[[], dt.datetime], *,
                 policy: DeliveryPolicy = DeliveryPolicy(), links: AckLinks | None = None,
                 templates: Templates | None = None, limit: int = 50, rnd: random.Random | None = None) -> DispatchReport:  # fmt: skip
    """Claim what is due and deliver it; safe to run in several processes at once."""
    rnd = rnd or random.Random()
    report = DispatchReport()
    for c in claim(sessions, clock(), policy, limit):
        report.claimed += 1
        _deliver(sessions, channels, c, clock, policy, links, templates, rnd, report)
    return report


def _deliver(sessions, channels, c: _Claim, clock, policy, links, templates, rnd, report) -> None:  # type: ignore[no-untyped-def]
    with sessions() as s:
        alert = s.get(Alert, c.alert_id)
        state = alert.state if alert else "missing"
        code = alert.code if alert else "?"
        epoch = alert.escalation_epoch if alert else 0
        sent_last_minute = 0
        if c.channel in policy.rate_per_minute and c.urgency != "emergency":
            sent_last_minute = s.scalar(select(func.count()).select_from(DeliveryAttempt).where(
                DeliveryAttempt.channel == c.channel, DeliveryAttempt.started_at > clock() - dt.timedelta(minutes=1),
                DeliveryAttempt.outcome.in_(("sent", "retryable", "ambiguous", "permanent"))))  # reached the provider
    if c.escalating and state != "triggered":
        return _record(sessions, c, clock(), "cancelled", f"alert {state} before sending", report, policy, rnd)
    limit = policy.rate_per_minute.get(c.channel)
    if limit is not None and c.urgency != "emergency" and sent_last_minute >= limit:
        return _record(sessions, c, clock(), "rate_limited", f"over {limit}/min on {c.channel}", report, policy, rnd)
    channel = channels.get(c.channel)
    if channel is None:
        return _record(sessions, c, clock(), "permanent", f"channel {c.channel!r} is not configured", report, policy, rnd)
    try:
        message = _message(c, code, epoch, channel, links, templates, clock(), report)
        receipt = channel.send(message)
    except DeliveryError as exc:
        outcome = exc.outcome.value
        return _record(sessions, c, clock(), outcome, exc.message[:500], report, policy, rnd, retry_after=exc.retry_after)
    except Exception as exc:  # noqa: BLE001 - a channel bug: it may or may not have sent; treat as ambiguous
        return _record(sessions, c, clock(), Outcome.AMBIGUOUS.value, f"unexpected {type(exc).__name__}", report, policy, rnd)
    _record(sessions, c, clock(), "sent", receipt.detail or None, report, policy, rnd, provider_id=receipt.provider_id)


def _message(c: _Claim, code: str, epoch: int, channel: Channel, links: AckLinks | None, templates: Templates | None,
             now: dt.datetime, report: DispatchReport) -> OutboundMessage:  # fmt: skip
    content = c.content
    ack_url = None
    if links is not None and c.escalating:
        ack_url = f"{links.base_url.rstrip('/')}/ack/{acklinks.issue(links.secret, c.alert_id, c.receiver, now, epoch)}"
    vitals = {k: v for k, v in (content.get("vitals") or {}).items() if isinstance(v, (int, float))}
    ac = AlertContent(
        alert_id=c.alert_id, alert_code=code, patient_ref=content["patient_id"], unit=content.get("unit"),
        condition=content.get("condition", "clinical"), event=c.event if c.event != "failsafe" else "alert.escalated",
        urgency=c.urgency, crs_grade=content.get("crs_grade"), crs_grade_is_minimum=bool(content.get("crs_grade_is_minimum")),
        icans_grade=content.get("icans_grade"), icans_floor=content.get("icans_floor") or 0, news2=content.get("news2"),
        red_flags=tuple(content.get("red_flags") or ()), reasons=tuple(content.get("reasons") or ()),
        advice=content.get("advice") or "", vitals=vitals, recorded_at=content.get("recorded_at") or now.isoformat(),
        ack_url=ack_url, step=c.step, repeat=c.repeat, reference=f"ntf-{c.id}",
    )  # fmt: skip
    rendered = render(ac, channel.kind, channel.secure, channel.max_length, templates, replies=channel.accepts_replies)
    if rendered.template_errors:  # the built-in message went out instead; the admin must hear of it
        report.template_errors.extend(rendered.template_errors)
    return OutboundMessage(
        reference=f"ntf-{c.id}", alert_id=c.alert_id, alert_code=code, urgency=c.urgency, to=c.address,
        subject=rendered.subject, text=rendered.text, html=rendered.html, payload=rendered.payload,
        dedup_key=f"crs-alert-{c.alert_id}", event=ac.event,
    )  # fmt: skip


def _record(sessions, c: _Claim, now: dt.datetime, outcome: str, detail: str | None, report: DispatchReport,  # type: ignore[no-untyped-def]
            policy: DeliveryPolicy, rnd: random.Random, *, retry_after: float | None = None, provider_id: str | None = None) -> None:  # fmt: skip
    with sessions.begin() as s:
        row = s.get(Notification, c.id, with_for_update=_is_pg(s))
        if row is None or row.status != "sending" or row.attempts != c.attempt:
            return  # our lease expired and someone else took the row: their attempt decides
        if outcome == "rate_limited":  # not a real attempt: it never reached the channel
            s.execute(delete(DeliveryAttempt).where(DeliveryAttempt.notification_id == c.id, DeliveryAttempt.attempt == c.attempt))
        else:
            _finish_attempt(s, c.id, c.attempt, now, outcome, detail, provider_id)
        row.lease_until = None
        row.last_error = None if outcome == "sent" else detail
        if outcome == "sent":
            row.status, row.sent_at, row.provider_id = "sent", now, provider_id
            report.sent += 1
        elif outcome == "cancelled":
            row.status, row.status_reason = "cancelled", detail
            report.cancelled += 1
        elif outcome == "rate_limited":
            row.status, row.attempts, row.status_reason = "pending", row.attempts - 1, detail
            row.next_attempt_at = now + policy.rate_deferral
            report.rate_limited += 1
        elif outcome == "permanent" or c.attempt >= policy.max_attempts or now - c.created_at >= policy.max_age:
            row.status, row.status_reason = "dead", f"{outcome} after {c.attempt} attempt(s): {detail}"
            report.dead += 1
            audit(s, at=now, actor="system", action="delivery.dead", subject=f"alert:{c.alert_id}",
                  notification_id=c.id, channel=c.channel, receiver=c.receiver, outcome=outcome, attempts=c.attempt)  # fmt: skip
            if c.escalating:
                report.failsafe_pages += _page_failsafe(s, c, now, detail)
        else:  # retryable or ambiguous: again, later, with the same reference
            row.status = "pending"
            row.next_attempt_at = now + backoff(policy, c.attempt, retry_after, rnd)
            report.retried += 1


UNDELIVERED = frozenset({"failed", "undelivered"})  # Twilio's final failure statuses


def provider_status(s: Session, provider_id: str, status: str, error_code: str | None, now: dt.datetime, *,
                    channel: str | None = None, undelivered: frozenset[str] = UNDELIVERED) -> str:
    """A provider's later report on a message it had accepted (Twilio's status callback, a generic
    SMS gateway's delivery report). ``channel``: only that channel's notifications are matched (a
    gateway's ids need not be unique across providers); ``undelivered``: the provider's statuses
    that mean the message did not arrive, compared without regard to case (a gateway that writes
    ``FAILED`` must not have its failure read as a delivery).

    A status in ``undelivered`` for a notification recorded as sent: the notification is
    dead-lettered with the provider's status in its reason (audit ``delivery.undelivered``) and,
    when it was a page of an alert nobody has acknowledged yet, the failsafe is paged on another
    channel, as for any dead letter. Returns what was done: ``dead``; ``unknown`` (no notification
    sent with that id: logged, nothing changed); ``noted`` (any other status, or a repeat)."""
    q = select(Notification).where(Notification.provider_id == provider_id)
    if channel is not None:
        q = q.where(Notification.channel == channel)
    row = s.scalars(q.with_for_update() if _is_pg(s) else q).first()
    if row is None:
        return "unknown"
    if status.casefold() not in {u.casefold() for u in undelivered} or row.status != "sent":
        return "noted"
    detail = f"the provider reported the message {status}" + (f" (error {error_code})" if error_code else "")
    row.status, row.status_reason = "dead", f"undelivered after sending: {detail}"[:200]
    audit(s, at=now, actor="system", action="delivery.undelivered", subject=f"alert:{row.alert_id}",
          notification_id=row.id, channel=row.channel, receiver=row.receiver, provider_status=status,
          error_code=error_code)  # fmt: skip
    if row.escalating and s.get(Alert, row.alert_id).state == "triggered":  # still waiting for someone
        _page_failsafe(s, _claim_of(row), now, detail)
    return "dead"


_FAILSAFE_KEY = re.compile(r"^\d+:dead(\d+):")  # the dedupe key of a failsafe page names the page that started it


def _origin(c: _Claim) -> int:
    """The page whose dead letter started this chain of failsafe pages (the page itself, if it is one)."""
    m = _FAILSAFE_KEY.match(c.dedupe_key) if c.event == "failsafe" else None
    return int(m.group(1)) if m else c.id


def _page_failsafe(s: Session, c: _Claim, now: dt.datetime, detail: str | None) -> int:
    """Notification rows for the alert's failsafe on every channel other than the one that failed,
    one per failsafe contact and dead page (a dead failsafe page counts as the page that started
    its chain, so a contact already paged for it is not paged again)."""
    alert = s.get(Alert, c.alert_id)
    failsafe = alert.policy_snapshot["policy"]["failsafe"]
    contacts = alert.policy_snapshot["receivers"][failsafe]["contacts"]
    reason = f"Could not deliver to {c.receiver} by {c.channel}: the failsafe is paged instead."
    content = dict(c.content, reasons=[reason, *(c.content.get("reasons") or [])])
    origin = _origin(c)
    chain = f"{alert.id}:dead{origin}:{failsafe}:"
    written = 0
    for index, contact in enumerate(contacts):
        if contact["channel"] == c.channel:
            continue
        row = {
            "dedupe_key": f"{chain}{index}", "alert_id": alert.id, "event": "failsafe",
            "urgency": c.urgency, "receiver": failsafe, "channel": contact["channel"], "address": contact.get("to", ""),
            "escalating": True, "step": c.step, "repeat": c.repeat, "status": "pending",
            "status_reason": f"dead letter of notification {c.id}", "content": content, "created_at": now,
            "next_attempt_at": now, "attempts": 0,
        }  # fmt: skip
        if insert_ignore(s, Notification.__table__, row, ["dedupe_key"]) is not None:
            written += 1
    if not written and not _chain_alive(s, alert.id, chain, c.id):
        audit(s, at=now, actor="system", action="delivery.unreachable", subject=f"alert:{alert.id}",
              notification_id=c.id, first_dead=origin, channel=c.channel, receiver=c.receiver, detail=detail)  # fmt: skip
    return written


def _chain_alive(s: Session, alert_id: int, chain: str, dying: int) -> bool:
    """Whether a failsafe page of this chain (other than the one dying now) is pending, being sent or sent."""
    return s.scalar(select(func.count()).select_from(Notification).where(
        Notification.alert_id == alert_id, Notification.dedupe_key.startswith(chain, autoescape=True),
        Notification.id != dying, Notification.status.not_in(("dead", "cancelled")))) > 0  # fmt: skip
