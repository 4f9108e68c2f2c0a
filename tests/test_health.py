"""`crs-alert health` against the real Redis and PostgreSQL on this machine, and dead ports.

Heartbeat keys live under a namespace unique to each test, and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import os
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import redis

from worker import heartbeat
from worker.commands import health

REDIS_URL = "redis://127.0.0.1:6379/0"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def dead_port() -> int:
    """A local port with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_health(*argv: str) -> int:
    """Parse and run the command exactly as the CLI does, with only the health module registered."""
    parser = argparse.ArgumentParser(prog="crs-alert")
    health.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["health", *argv])
    return args.func(args)


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A clean settings environment: real Redis, a unique namespace, a missing SQLite file."""
    for name in list(os.environ):
        if name.startswith("CRS_") or name in ("REDIS_URL", "DATABASE_URL"):
            monkeypatch.delenv(name)
    namespace = f"crs-test-health-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("CRS_NAMESPACE", namespace)
    monkeypatch.setenv("CRS_VAR_DIR", str(tmp_path / "var"))
    client = redis.Redis.from_url(REDIS_URL)
    yield namespace, client
    keys = list(client.scan_iter(f"{namespace}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def test_redis_ping_ok(env, capsys):
    assert run_health("--component", "redis") == 0
    assert one_line(capsys.readouterr().out).startswith("healthy: redis PING ok")


def test_redis_dead_port_fails_fast_with_reason_and_no_password(env, monkeypatch, capsys):
    monkeypatch.setenv("REDIS_URL", f"redis://:s3cret-pw@127.0.0.1:{dead_port()}/0")
    started = time.monotonic()
    assert run_health("--component", "redis") == 1
    assert time.monotonic() - started < 3  # 2 s timeout, no retries
    captured = capsys.readouterr()
    reason = one_line(captured.err)
    assert reason.startswith("unhealthy: redis PING failed: ConnectionError")
    assert "s3cret-pw" not in captured.err + captured.out


def test_fresh_heartbeat_is_healthy(env, capsys):
    namespace, client = env
    key = heartbeat.write_heartbeat(client, "worker", now=time.time() - 5, instance="w1", namespace=namespace)
    assert key == f"{namespace}:heartbeat:worker:w1"
    assert 0 < client.ttl(key) <= heartbeat.KEY_TTL_S
    assert run_health("--component", "worker", "--instance", "w1") == 0
    assert "worker heartbeat 5s old" in capsys.readouterr().out


def test_stale_heartbeat_is_unhealthy(env, capsys):
    namespace, client = env
    heartbeat.write_heartbeat(client, "worker", now=time.time() - 121, instance="w1", namespace=namespace)
    assert run_health("--component", "worker", "--instance", "w1") == 1
    reason = one_line(capsys.readouterr().err)
    assert reason.startswith("unhealthy: worker heartbeat stale: 121s old (max 120s)")
    # the limit is configurable per healthcheck
    assert run_health("--component", "worker", "--instance", "w1", "--max-age", "300") == 0


def test_missing_heartbeat_and_other_instances_do_not_count(env, capsys):
    namespace, client = env
    heartbeat.write_heartbeat(client, "worker", instance="another-container", namespace=namespace)
    heartbeat.write_heartbeat(client, "scheduler", instance="w1", namespace=namespace)
    assert run_health("--component", "worker", "--instance", "w1") == 1
    assert f"no worker heartbeat at {namespace}:heartbeat:worker:w1" in capsys.readouterr().err


def test_scheduler_heartbeat_defaults_to_this_host(env, capsys):
    namespace, client = env
    heartbeat.write_heartbeat(client, "scheduler", namespace=namespace)
    assert client.exists(f"{namespace}:heartbeat:scheduler:{socket.gethostname()}")
    assert run_health("--component", "scheduler") == 0
    heartbeat.write_heartbeat(client, "scheduler", now=time.time() - 61, namespace=namespace)
    assert run_health("--component", "scheduler") == 1


def test_heartbeat_check_with_redis_down_is_unhealthy(env, monkeypatch, capsys):
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{dead_port()}/0")
    assert run_health("--component", "worker") == 1
    assert "redis unreachable while reading worker heartbeat" in one_line(capsys.readouterr().err)


def test_read_heartbeat_roundtrip_and_garbage(env):
    namespace, client = env
    assert heartbeat.read_heartbeat(client, "worker", "w2", namespace) is None
    heartbeat.write_heartbeat(client, "worker", now=1_700_000_000.25, instance="w2", namespace=namespace)
    assert heartbeat.read_heartbeat(client, "worker", "w2", namespace) == 1_700_000_000.25
    assert heartbeat.heartbeat_age(client, "worker", 1_700_000_010.25, "w2", namespace) == 10
    client.set(heartbeat.heartbeat_key("worker", "w2", namespace), "not-a-number")
    assert heartbeat.read_heartbeat(client, "worker", "w2", namespace) is None
    with pytest.raises(ValueError):
        heartbeat.heartbeat_key("api")


def test_sqlite_file_ok(env, monkeypatch, tmp_path, capsys):
    db = tmp_path / "crs.db"
    sqlite3.connect(db).close()
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{db}")
    assert run_health("--component", "db") == 0
    assert "database SELECT 1 ok (sqlite)" in capsys.readouterr().out


def test_missing_sqlite_file_is_unhealthy_and_not_created(env, capsys, tmp_path):
    # no DATABASE_URL: the embedded default under CRS_VAR_DIR
    assert run_health("--component", "db") == 1
    assert "sqlite database file not found" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "var" / "crs-alert.db").exists()


def test_postgres_select_1(env, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", PG_URL)
    assert run_health("--component", "db") == 0
    assert "database SELECT 1 ok (postgresql)" in capsys.readouterr().out


def test_postgres_plain_scheme_is_normalised_to_psycopg(env, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    assert run_health("--component", "db") == 0


def test_postgres_dead_port_is_unhealthy_without_password(env, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", f"postgresql+psycopg://postgres:pg-s3cret@127.0.0.1:{dead_port()}/test")
    assert run_health("--component", "db") == 1
    captured = capsys.readouterr()
    assert one_line(captured.err).startswith("unhealthy: database SELECT 1 failed: OperationalError")
    assert "pg-s3cret" not in captured.err + captured.out


def test_default_checks_redis_and_db(env, monkeypatch, capsys):
    monkeypatch.setenv("DATABASE_URL", PG_URL)
    assert run_health() == 0
    out = one_line(capsys.readouterr().out)
    assert "redis PING ok" in out and "database SELECT 1 ok" in out
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{dead_port()}/0")
    assert run_health() == 1


def test_invalid_settings_are_reported_not_raised(env, monkeypatch, capsys):
    monkeypatch.setenv("CRS_BATCH_SIZE", "0")
    assert run_health("--component", "redis") == 1
    reason = one_line(capsys.readouterr().err)
    assert reason.startswith("unhealthy: settings:") and "CRS_BATCH_SIZE" in reason


def test_console_script_exit_codes(env, tmp_path):
    """The real `crs-alert` entry point, as the compose healthcheck runs it."""
    exe = Path(sys.executable).with_name("crs-alert")
    ok = subprocess.run([exe, "health", "--component", "redis"], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [exe, "health", "--component", "redis"],
        env={**os.environ, "REDIS_URL": f"redis://127.0.0.1:{dead_port()}/0"},
        capture_output=True, text=True, timeout=30,
    )
    assert bad.returncode == 1
    assert one_line(bad.stderr).startswith("unhealthy: redis PING failed")
