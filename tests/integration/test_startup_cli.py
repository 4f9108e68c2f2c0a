"""Services refuse to start on a channels file they cannot use (exit 2, CRS_CHANNELS_PATH named), before
anything is read; `drain` --help documents its exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.helpers import febrile

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(service_env, db_url):
    env = service_env(db_url)

    def run(*args: str, input: bytes | None = None, **extra: str):
        return subprocess.run([sys.executable, "-m", "worker.cli", *args], env={**env, **extra}, cwd=ROOT, input=input,
                              capture_output=True, timeout=120)  # fmt: skip

    return run


@pytest.mark.parametrize("command", [["worker", "--pool", "solo"], ["scheduler"], ["run"], ["drain"], ["api"]])
def test_a_missing_channels_file_refuses_to_start(cli, tmp_path, command):
    done = cli(*command, CRS_CHANNELS_PATH=str(tmp_path / "absent.yaml"), CRS_ACK_SECRET="a" * 40)
    assert done.returncode == 2, done.stderr
    err = done.stderr.decode()
    assert f"channels file {tmp_path / 'absent.yaml'}: not found" in err and "CRS_CHANNELS_PATH" in err


def test_drain_with_an_invalid_entry_reads_nothing(cli, tmp_path):
    assert cli("db", "upgrade").returncode == 0
    assert cli("submit", "-", input=json.dumps(febrile("s-1", "DEMO-F06")).encode() + b"\n").returncode == 0
    channels = tmp_path / "channels.yaml"
    channels.write_text((ROOT / "config" / "channels.yaml").read_text() + "  broken: oops\n")
    done = cli("drain", CRS_CHANNELS_PATH=str(channels))
    assert done.returncode == 2 and b"channel 'broken': must be a mapping with a 'kind'" in done.stderr
    assert done.stdout == b""  # nothing was drained: no alert was opened that could not be delivered
    assert json.loads(cli("status", "--json").stdout)["counts"]["received"] == 0
    assert cli("drain", "--no-deliver").returncode == 0  # the shipped file: the check-in is processed now
    assert json.loads(cli("status", "--json").stdout)["counts"]["received"] == 1


def test_drain_help_documents_the_exit_codes(cli):
    out = cli("drain", "--help").stdout.decode()
    assert "1  done, but at least one notification of this run failed permanently" in out
    assert "2  configuration or usage error" in out and "3  the database did not answer" in out
