"""Tables for alerts, their notifications (the delivery outbox) and used acknowledgement links.

- ``alerts``: one OPEN alert per (patient, episode, condition), enforced by a partial unique index
  on the open ones (PostgreSQL and SQLite both support it). The escalation policy and the
  receivers it names are frozen on the alert when it opens (``policy_snapshot``). Escalation is
  stored as (escalation_started_at, escalation_seq, next_escalation_at): the next page is a pure
  function of those (worker.rules.escalation), and claims are conditional updates on
  escalation_seq, so a stale or duplicate run does nothing.
- ``notifications``: one row per (page, receiver, contact), written in the same transaction as the
  alert change that caused it, unique on ``dedupe_key``; issue 5's dispatcher delivers them.
  ``status``: pending -> sending -> sent | failed | dead; or suppressed (inhibited/silenced, with
  the reason) or deferred (quiet hours, ``not_before``).
- ``delivery_attempts``: every try, written before the send and completed after it.
- ``ack_tokens``: the nonce of every acknowledgement link that was used (single use), and
  ``sms:<MessageSid>`` of every SMS reply that reached an acknowledgement (a replay is refused).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from worker.store.models import TZ, Base, Id

OPEN_STATES = ("triggered", "acknowledged")


class Alert(Base):
    __tablename__ = "alerts"
    __table_args__ = (
        Index(
            "uq_alerts_open_key",
            "patient_id",
            "episode",
            "condition",
            unique=True,
            postgresql_where=text("state <> 'resolved'"),
            sqlite_where=text("state <> 'resolved'"),
        ),
        Index("ix_alerts_due", "state", "next_escalation_at"),
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    code: Mapped[str] = mapped_column(String(16), unique=True)  # short code for SMS replies
    patient_id: Mapped[str] = mapped_column(String(64), index=True)
    episode: Mapped[str] = mapped_column(String(32))  # therapy start date, or "unenrolled"
    condition: Mapped[str] = mapped_column(String(32))  # clinical | missed_checkin
    state: Mapped[str] = mapped_column(String(16))  # triggered | acknowledged | resolved
    urgency: Mapped[str] = mapped_column(String(16))  # latest
    route: Mapped[str] = mapped_column(String(200))
    policy_name: Mapped[str] = mapped_column(String(64))
    policy_snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)  # {"policy": ..., "receivers": {...}}
    notify_receivers: Mapped[list[str]] = mapped_column(JSON)  # informational receivers (route notify)
    rules_sha256: Mapped[str] = mapped_column(String(64))
    worst: Mapped[dict[str, Any]] = mapped_column(JSON)  # worst CRS/ICANS/red flags/urgency seen
    content: Mapped[dict[str, Any]] = mapped_column(JSON)  # latest evaluation shown in messages
    latest_checkin_id: Mapped[str | None] = mapped_column(String(128))
    escalation_started_at: Mapped[dt.datetime] = mapped_column(TZ)
    escalation_seq: Mapped[int] = mapped_column(Integer)  # the next page of the timeline
    escalation_epoch: Mapped[int] = mapped_column(Integer, default=0)  # +1 at every restart
    escalation_first_step: Mapped[int] = mapped_column(Integer, default=0)  # where the timeline restarted
    next_escalation_at: Mapped[dt.datetime | None] = mapped_column(TZ)
    upgrades: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[dt.datetime] = mapped_column(TZ)
    updated_at: Mapped[dt.datetime] = mapped_column(TZ)
    acked_at: Mapped[dt.datetime | None] = mapped_column(TZ)
    acked_by: Mapped[str | None] = mapped_column(String(128))
    ack_via: Mapped[str | None] = mapped_column(String(32))
    resolved_at: Mapped[dt.datetime | None] = mapped_column(TZ)
    resolved_by: Mapped[str | None] = mapped_column(String(128))
    resolution_note: Mapped[str | None] = mapped_column(Text)


class Notification(Base):
    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_due", "status", "next_attempt_at"),
                      Index("ix_notifications_provider_id", "provider_id"))  # fmt: skip
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)
    event: Mapped[str] = mapped_column(String(32))  # alert.triggered | alert.escalated | ...
    urgency: Mapped[str] = mapped_column(String(16))
    receiver: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(320))
    escalating: Mapped[bool] = mapped_column(Boolean)  # a page (True) or informational (False)
    step: Mapped[int] = mapped_column(Integer)
    repeat: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(String(200))
    content: Mapped[dict[str, Any]] = mapped_column(JSON)  # the alert as it was when this was written
    created_at: Mapped[dt.datetime] = mapped_column(TZ)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(TZ)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    provider_id: Mapped[str | None] = mapped_column(String(200))
    sent_at: Mapped[dt.datetime | None] = mapped_column(TZ)
    lease_until: Mapped[dt.datetime | None] = mapped_column(TZ)  # while "sending": a crashed sender's row comes back


class DeliveryAttempt(Base):
    """One try to deliver one notification: written before the send, completed after it."""

    __tablename__ = "delivery_attempts"
    __table_args__ = (UniqueConstraint("notification_id", "attempt", name="uq_delivery_attempts_try"),
                      Index("ix_delivery_attempts_channel_started", "channel", "started_at"))  # fmt: skip
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    notification_id: Mapped[int] = mapped_column(ForeignKey("notifications.id"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[dt.datetime] = mapped_column(TZ)
    finished_at: Mapped[dt.datetime | None] = mapped_column(TZ)
    outcome: Mapped[str] = mapped_column(String(16))  # sending | sent | retryable | permanent | ambiguous | cancelled | rate_limited
    detail: Mapped[str | None] = mapped_column(Text)
    provider_id: Mapped[str | None] = mapped_column(String(200))


class AckToken(Base):
    __tablename__ = "ack_tokens"
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    nonce: Mapped[str] = mapped_column(String(64), unique=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"))
    used_at: Mapped[dt.datetime] = mapped_column(TZ)
    used_by: Mapped[str] = mapped_column(String(128))
