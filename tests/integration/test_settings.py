"""Settings come from the environment; every error names the variable and the rule."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from worker.settings import Settings, SettingsError, load_settings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "crs-alert.env.example"


def _clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("CRS_") or key in ("REDIS_URL", "DATABASE_URL"):
            monkeypatch.delenv(key)


def test_defaults_are_the_embedded_setup(monkeypatch):
    _clean_env(monkeypatch)
    s = load_settings()
    assert s.redis_url is None
    assert s.sqlalchemy_url == "sqlite:///var/crs-alert.db"
    assert (s.stream_name, s.group, s.drain_interval_s) == ("crs:checkins", "workers", 1.0)


def test_environment_is_read(monkeypatch):
    _clean_env(monkeypatch)
    monkeypatch.setenv("REDIS_URL", "redis://h:1/2")
    monkeypatch.setenv("DATABASE_URL", "postgres://u@h/db")
    monkeypatch.setenv("CRS_DRAIN_INTERVAL_S", "2.5")
    monkeypatch.setenv("CRS_NAMESPACE", "ward7")
    s = load_settings()
    assert s.redis_url == "redis://h:1/2"
    assert s.sqlalchemy_url == "postgresql+psycopg://u@h/db"
    assert s.drain_interval_s == 2.5 and s.stream_name == "ward7:checkins" and s.celery_queue == "ward7.tasks"


@pytest.mark.parametrize(
    ("var", "value", "fragment"),
    [
        ("CRS_BATCH_SIZE", "0", "greater than or equal to 1"),
        ("CRS_BATCH_SIZE", "many", "valid integer"),
        ("CRS_DRAIN_INTERVAL_S", "-1", "greater than 0"),
        ("CRS_NAMESPACE", "has space", "pattern"),
        ("CRS_LOG_LEVEL", "loud", "pattern"),
        ("CRS_CLAIM_MIN_IDLE_S", "5", "greater than CRS_DRAIN_BUDGET_S"),
        ("CRS_TASK_TIME_LIMIT_S", "400", "lower than CRS_VISIBILITY_TIMEOUT_S"),
        ("CRS_SCHEDULER_LOCK_TIMEOUT_S", "1", "greater than CRS_DRAIN_INTERVAL_S"),
    ],
)
def test_each_error_names_the_variable_and_the_rule(monkeypatch, var, value, fragment):
    _clean_env(monkeypatch)
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert any(p.startswith(f"{var}:") and fragment in p for p in info.value.problems), info.value.problems


def test_a_url_with_a_password_is_never_echoed(monkeypatch):
    _clean_env(monkeypatch)
    with pytest.raises(SettingsError) as info:
        load_settings(redis_url=12345, database_url=["postgres://u:s3cret@h/db"])
    assert "s3cret" not in str(info.value) and "DATABASE_URL:" in str(info.value)


def test_example_file_documents_every_setting():
    text = EXAMPLE.read_text()
    documented = set(re.findall(r"^#?([A-Z][A-Z0-9_]+)=", text, re.M))
    expected = {"REDIS_URL", "DATABASE_URL"} | {f"CRS_{name.upper()}" for name in Settings.model_fields
                                                 if name not in ("redis_url", "database_url")}
    assert expected == documented
