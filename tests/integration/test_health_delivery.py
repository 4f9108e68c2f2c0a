"""`crs-alert health --component delivery` on both databases: healthy only when every channel can
be built, no page reached nobody recently, and the outbox is being drained."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import update

from tests.factories import ev
from tests.integration.test_alerting import EMERGENCY, T0, apply, enroll
from tests.test_health import run_health
from worker.commands.health import check_delivery
from worker.store.alert_tables import Notification
from worker.store.db import session_factory
from worker.store.repo import audit

@pytest.fixture
def sessions(engine):
    return session_factory(engine)


@pytest.fixture
def channels_file(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("CRS_TEST_HOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    path = tmp_path / "channels.yaml"
    path.write_text("channels:\n"
                    "  hook:\n"
                    "    kind: webhook\n"
                    "    url: https://ehr.hospital.example/crs\n"
                    "    secret_env: CRS_TEST_HOOK_SECRET\n")
    return path


def test_healthy_with_usable_channels_and_an_empty_outbox(db_url, engine, channels_file):
    ok, message = check_delivery(db_url, str(channels_file), now=T0)
    assert ok, message
    assert "1 channel(s) usable" in message


def test_a_channel_without_its_secret_is_unhealthy_and_named(db_url, engine, channels_file, monkeypatch):
    channels_file.write_text(channels_file.read_text() + "  hook2:\n    kind: webhook\n    url: https://x.example/a\n"
                                                        "    secret_env: CRS_TEST_MISSING_SECRET\n")
    monkeypatch.delenv("CRS_TEST_MISSING_SECRET", raising=False)
    ok, message = check_delivery(db_url, str(channels_file), now=T0)
    assert not ok
    assert "hook2" in message and "CRS_TEST_MISSING_SECRET" in message
    assert "whsec_" not in message  # never a secret value


def test_no_channels_file_is_unhealthy(db_url, engine, tmp_path):
    ok, message = check_delivery(db_url, str(tmp_path / "absent.yaml"), now=T0)
    assert not ok and "not found" in message


def test_a_page_that_reached_nobody_is_unhealthy_for_the_window(db_url, engine, sessions, channels_file):
    with sessions.begin() as s:
        audit(s, at=T0, actor="system", action="delivery.unreachable", subject="alert:7", notification_id=1,
              channel="sms", receiver="charge-nurse", detail="permanent")
    ok, message = check_delivery(db_url, str(channels_file), now=T0 + dt.timedelta(seconds=899), window_s=900)
    assert not ok and "1 page(s) reached nobody" in message
    ok, message = check_delivery(db_url, str(channels_file), now=T0 + dt.timedelta(seconds=901), window_s=900)
    assert ok, message


def test_a_due_page_waiting_too_long_is_unhealthy(db_url, engine, sessions, channels_file):
    with sessions.begin() as s:
        enroll(s)
    out = apply(sessions, ev(**EMERGENCY), T0)  # writes pending pages due at T0
    assert out.action == "opened" and out.pages
    ok, message = check_delivery(db_url, str(channels_file), now=T0 + dt.timedelta(seconds=120), max_due_s=120)
    assert ok, message  # exactly at the limit
    ok, message = check_delivery(db_url, str(channels_file), now=T0 + dt.timedelta(seconds=121), max_due_s=120)
    assert not ok and "waited 121s" in message
    with sessions.begin() as s:  # the dispatcher sent them: healthy again
        s.execute(update(Notification).values(status="sent"))
    ok, message = check_delivery(db_url, str(channels_file), now=T0 + dt.timedelta(seconds=500), max_due_s=120)
    assert ok, message


def test_database_down_is_unhealthy(channels_file):
    ok, message = check_delivery("postgresql+psycopg://postgres@127.0.0.1:1/none", str(channels_file), now=T0)
    assert not ok and "database" in message


def test_cli_reports_and_exits(db_url, engine, channels_file, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("CRS_CHANNELS_PATH", str(channels_file))
    assert run_health("--component", "delivery") == 0
    assert "healthy: delivery ok" in capsys.readouterr().out
    monkeypatch.setenv("CRS_CHANNELS_PATH", str(channels_file.parent / "absent.yaml"))
    assert run_health("--component", "delivery", "--window", "60") == 1
    assert "unhealthy: delivery impaired: channels file" in capsys.readouterr().err


def test_an_invalid_entry_is_named_not_a_crash(db_url, engine, channels_file):
    channels_file.write_text(channels_file.read_text() + "    rate_per_minute: sixty\n  broken: oops\n")
    ok, message = check_delivery(db_url, str(channels_file), now=T0)
    assert not ok and "unreadable" not in message
    assert message == (f"delivery impaired: channels file {channels_file}: channel 'hook': rate_per_minute: must be a "
                       "positive integer (sends per minute) (and 1 more)")  # fmt: skip
