"""An operator's mistake (a bad URL, a typo'd path, an empty name) ends in one clear line naming the
variable or option, exit status 2, never a traceback, and never a password."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from worker.cli import main

ROOT = Path(__file__).resolve().parents[2]
ACK_SECRET = "x" * 40


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A clean environment (no CRS_*, REDIS_URL, DATABASE_URL) with a private var dir and namespace."""
    for key in list(os.environ):
        if key.startswith("CRS_") or key in ("REDIS_URL", "DATABASE_URL"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CRS_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("CRS_NAMESPACE", f"clierr-{uuid.uuid4().hex[:8]}")
    return monkeypatch


@pytest.fixture
def crs(env, capsys):
    """Run the CLI in this process: (exit status, stdout, stderr)."""

    def run(*args: str, **variables: str) -> tuple[int, str, str]:
        for name, value in variables.items():
            env.setenv(name, value)
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _subprocess(*args: str, **variables: str) -> subprocess.CompletedProcess:
    """For commands that configure logging or tune the GC (process-wide state)."""
    return subprocess.run([sys.executable, "-m", "worker.cli", *args], env={**os.environ, **variables}, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("command", [["submit", "f.jsonl"], ["status"], ["patients", "list"]])
def test_a_redis_url_that_is_not_a_url_is_a_settings_error(crs, command):
    code, _, err = crs(*command, REDIS_URL="nonsense")
    assert code == 2 and err.startswith("crs-alert: invalid settings:\n  REDIS_URL: must be a redis://"), err


def test_health_reports_a_bad_redis_url_as_unhealthy(crs):
    code, _, err = crs("health", REDIS_URL="nonsense")
    assert code == 1 and "REDIS_URL: must be a redis://" in err


def test_submit_to_a_redis_that_does_not_answer_names_redis_url_without_the_password(crs, tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_text("{}\n")
    code, _, err = crs("submit", str(path), REDIS_URL="redis://:s3cret@127.0.0.1:1/0")
    assert code == 2 and err.startswith("crs-alert: Redis at redis://:***@127.0.0.1:1/0 (REDIS_URL) does not answer: "
                                        "ConnectionError"), err
    assert "s3cret" not in err


def test_drain_against_a_redis_that_does_not_answer_is_a_clear_error(env, tmp_path):
    done = _subprocess("drain", REDIS_URL="redis://:s3cret@127.0.0.1:1/0", DATABASE_URL=f"sqlite:///{tmp_path / 'd.db'}")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "(REDIS_URL) does not answer" in done.stderr and "s3cret" not in done.stderr


@pytest.mark.parametrize("url", ["nonsense", "mysql://u:s3cret@h/db"])
@pytest.mark.parametrize("command", [["db", "upgrade"], ["db", "current"], ["status"], ["patients", "list"], ["alerts", "list"]])
def test_an_unsupported_database_url_is_a_settings_error(crs, command, url):
    code, _, err = crs(*command, DATABASE_URL=url)
    assert code == 2 and "\n  DATABASE_URL: must be postgresql://" in err and "s3cret" not in err, err


def test_db_current_against_an_unreachable_postgresql_is_one_line(crs):
    code, out, err = crs("db", "current", DATABASE_URL="postgresql+psycopg://postgres:s3cret@127.0.0.1:1/nowhere")
    assert code == 2 and out == ""
    assert err == "crs-alert: database postgresql+psycopg://postgres:***@127.0.0.1:1/nowhere is unavailable (OperationalError)\n"


def test_db_upgrade_to_an_unknown_revision_is_a_clear_error(crs, tmp_path):
    code, _, err = crs("db", "upgrade", "--revision", "bogus", DATABASE_URL=f"sqlite:///{tmp_path / 'd.db'}")
    assert code == 2 and err == "crs-alert: cannot upgrade to --revision 'bogus': Can't locate revision identified by 'bogus'\n"


@pytest.mark.parametrize("command", [
    ["status"], ["alerts", "list"], ["alerts", "show", "1"], ["alerts", "ack", "1", "--by", "dr-a"], ["patients", "list"],
    ["db", "current"],
])  # fmt: skip
def test_a_read_only_command_refuses_a_sqlite_file_that_does_not_exist(crs, tmp_path, command):
    missing = tmp_path / "typo" / "crs-alert.db"
    code, out, err = crs(*command, DATABASE_URL=f"sqlite:///{missing}")
    assert code == 2 and out == ""
    assert err == f"crs-alert: no database at {missing} (DATABASE_URL): run `crs-alert db upgrade`, or check the path\n"
    assert not missing.parent.exists()  # neither the file nor its directory was created


def test_the_embedded_default_is_refused_too_until_created(crs, tmp_path):
    code, _, err = crs("status")
    assert code == 2 and "no database at var/crs-alert.db (the default under CRS_VAR_DIR)" not in err  # CRS_VAR_DIR is set
    assert f"no database at {tmp_path / 'var' / 'crs-alert.db'} (the default under CRS_VAR_DIR)" in err
    assert crs("db", "upgrade")[0] == 0  # db upgrade still creates it
    code, out, _ = crs("status", "--json")
    assert code == 0 and '"received": 0' in out


def test_health_of_a_missing_sqlite_file_does_not_create_it(crs, tmp_path):
    missing = tmp_path / "typo" / "crs-alert.db"
    code, _, err = crs("health", "--component", "db", DATABASE_URL=f"sqlite:///{missing}")
    assert code == 1 and "not found" in err and not missing.parent.exists()


@pytest.fixture
def migrated(crs, tmp_path):
    url = f"sqlite:///{tmp_path / 'crs-alert.db'}"
    assert crs("db", "upgrade", DATABASE_URL=url)[0] == 0
    return url


@pytest.mark.parametrize("by", ["", "   ", "\t"])
@pytest.mark.parametrize("action", [["ack", "1"], ["resolve", "2", "--note", "ok"]])
def test_an_empty_or_blank_by_is_a_usage_error(crs, migrated, action, by):
    code, _, err = crs("alerts", *action, "--by", by)
    assert code == 2 and "argument --by: must name who acts" in err and err.startswith("usage:"), err


@pytest.mark.parametrize("ref", ["99999999999999999999999", str(2**63), "\u00b2"])
def test_showing_an_alert_id_beyond_any_row_is_no_alert(crs, migrated, ref):
    code, out, err = crs("alerts", "show", ref)
    assert code == 1 and out == f"crs-alert: no alert {ref!r}\n", (out, err)


def test_api_refuses_a_host_that_is_not_an_address(crs):
    code, _, err = crs("api", CRS_API_HOST="999.1.1.1")
    assert code == 2 and err.startswith("crs-alert: invalid settings:\n  CRS_API_HOST: must be an IP address"), err


def test_api_with_a_bad_host_option_or_a_port_in_use_is_a_clear_error(env, migrated):
    bad = _subprocess("api", "--host", "999.1.1.1", CRS_ACK_SECRET=ACK_SECRET, DATABASE_URL=migrated)
    assert bad.returncode == 2 and bad.stderr == ("crs-alert: --host '999.1.1.1': must be an IP address (e.g. 127.0.0.1, "
                                                  "0.0.0.0 or ::) or a host name\n"), bad.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = _subprocess("api", "--port", str(port), CRS_ACK_SECRET=ACK_SECRET, DATABASE_URL=migrated)
    assert busy.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr and "Traceback" not in busy.stderr


def test_health_help_shows_the_heartbeat_defaults_readably(crs):
    code, out, _ = crs("health", "--help")
    assert code == 0 and "(default: worker 120, scheduler 60)" in " ".join(out.split()) and "{'worker'" not in out
