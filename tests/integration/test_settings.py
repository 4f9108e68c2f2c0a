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


@pytest.mark.parametrize(("var", "value", "fragment"), [
    ("REDIS_URL", "nonsense", "redis://HOST:PORT/DB, rediss:// (TLS) or unix:///PATH"),
    ("REDIS_URL", "http://:s3cret@h:6379/0", "redis://HOST:PORT/DB"),
    ("REDIS_URL", "redis://:s3cret@h:port/0", "port must be a number"),
    ("REDIS_URL", "redis://:s3cret@h:70000/0", "port must be a number"),
    ("REDIS_URL", "redis://:s3cret@h/0?socket_timeout=soon", "socket_timeout"),
    ("DATABASE_URL", "nonsense", "postgresql://USER:PASSWORD@HOST:PORT/DB"),
    ("DATABASE_URL", "mysql://u:s3cret@h/db", "psycopg 3, the only PostgreSQL driver"),
    ("DATABASE_URL", "postgresql+psycopg2://u:s3cret@h/db", "psycopg 3"),
    ("DATABASE_URL", "postgresql+psycopg://postgres:s3cret@PW7@localhost/x", "percent-encoded as %40"),
    ("DATABASE_URL", "postgresql://u:s3cret@h:0/db", "port must be a number"),
    ("CRS_API_HOST", "999.1.1.1", "IP address"),
    ("CRS_API_HOST", "", "IP address"),
    ("CRS_API_HOST", "two words", "IP address"),
])  # fmt: skip
def test_a_bad_url_or_host_names_the_variable_and_never_echoes_a_password(monkeypatch, var, value, fragment):
    _clean_env(monkeypatch)
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    [problem] = info.value.problems
    assert problem.startswith(f"{var}: ") and fragment in problem, problem
    assert "s3cret" not in problem and (var == "CRS_API_HOST" or value not in problem)


@pytest.mark.parametrize(("var", "value"), [
    ("REDIS_URL", "redis://:p%40ss@h:6379/0"), ("REDIS_URL", "rediss://h:6380/1"), ("REDIS_URL", "unix:///run/redis.sock"),
    ("DATABASE_URL", "postgres://u:p%40ss@h:5432/db"), ("DATABASE_URL", "postgresql:///db"),
    ("DATABASE_URL", "sqlite:///var/x.db"), ("DATABASE_URL", "sqlite+pysqlite:////abs/x.db"),
    ("CRS_API_HOST", "0.0.0.0"), ("CRS_API_HOST", "::"), ("CRS_API_HOST", "api.internal"),
])  # fmt: skip
def test_supported_urls_and_hosts_are_accepted(monkeypatch, var, value):
    _clean_env(monkeypatch)
    monkeypatch.setenv(var, value)
    load_settings()


@pytest.mark.parametrize("value", ["nan", "NaN", "inf", "-inf", "infinity"])
@pytest.mark.parametrize("var", ["CRS_DRAIN_INTERVAL_S", "CRS_VISIBILITY_TIMEOUT_S", "CRS_DB_LOCK_TIMEOUT_S"])
def test_a_duration_must_be_a_finite_number(monkeypatch, var, value):
    _clean_env(monkeypatch)
    monkeypatch.setenv(var, value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert f"{var}: must be a finite number" in str(info.value), info.value.problems


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql+psycopg://postgres:SECRET@PW7@localhost/x", "postgresql+psycopg://postgres:***@localhost/x"),
    ("postgresql://u:a@b@c@h:5432/db?sslmode=require", "postgresql://u:***@h:5432/db?sslmode=require"),
    ("postgresql://u:p%40ss@h/db", "postgresql://u:***@h/db"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
    ("redis://:pw@x@localhost:1/0", "redis://:***@localhost:1/0"),
    ("redis://user:p:w@h:6379/0", "redis://user:***@h:6379/0"),
    ("rediss://h:6380/0", "rediss://h:6380/0"),
    ("redis://:pw@h/0#frag@x", "redis://:***@h/0#frag@x"),
    ("sqlite:///var/crs@alert.db", "sqlite:///var/crs@alert.db"),
    ("nonsense", "nonsense"),
])  # fmt: skip
def test_redaction_hides_the_whole_password_even_one_holding_at_signs(url, shown):
    from worker.settings import redact_url
    from worker.store.db import redacted_url

    assert redact_url(url) == shown
    assert redacted_url(url) == shown


def test_an_engine_url_is_redacted_at_the_last_at_sign():
    from worker.store.db import make_engine, redacted_url

    engine = make_engine("postgresql+psycopg://postgres:SECRET@PW7@localhost/x")
    assert redacted_url(engine) == "postgresql+psycopg://postgres:***@localhost/x"
