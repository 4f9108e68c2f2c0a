"""The one channels-file loader: every problem at once, with the file and the channel, no values."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.channels.conftest import CANARY
from worker.channels.config_file import ChannelsFileError, address_checks, load_channels_file, read_channels_file

ROOT = Path(__file__).resolve().parents[2]
SMS = 'kind: twilio_sms, account_sid: AC00000000000000000000000000000000, auth_token_env: T_TOKEN, from_number: "+15005550006"'


def write(tmp_path, text: str) -> str:  # noqa: ANN001
    path = tmp_path / "channels.yaml"
    path.write_text(text)
    return str(path)


def problems(path: str) -> list[str]:
    with pytest.raises(ChannelsFileError) as info:
        load_channels_file(path)
    assert str(info.value).startswith(f"the channels file {path} is not valid")
    return info.value.errors


def test_the_shipped_config_loads_with_its_rate_limits():
    """rate_per_minute is ours: stripped before the kind's model, kept as the dispatcher's limit."""
    loaded = load_channels_file(str(ROOT / "config" / "channels.yaml"))
    assert sorted(loaded.valid) == ["ehr-webhook", "email", "pagerduty", "sms"]
    assert loaded.rate_limits == {"sms": 60, "pagerduty": 120}
    assert "rate_per_minute" not in loaded.specs["sms"]


@pytest.mark.parametrize(
    "entry",
    ['"oops"', "[1, 2]", "null"],
)
def test_an_entry_that_is_not_a_mapping_is_named(tmp_path, entry):
    path = write(tmp_path, f"channels:\n  broken: {entry}\n  sms: {{{SMS}}}\n")
    assert problems(path) == [f"channels file {path}: channel 'broken': must be a mapping with a 'kind'"]


@pytest.mark.parametrize("rate", ["sixty", '"60"', "true", "0", "-5", "1.5", "null"])
def test_rate_per_minute_must_be_a_positive_integer(tmp_path, rate):
    """Strict: a bool or a string is not a rate (True would be 1 send a minute)."""
    path = write(tmp_path, f"channels:\n  sms: {{{SMS}, rate_per_minute: {rate}}}\n")
    assert problems(path) == [f"channels file {path}: channel 'sms': rate_per_minute: must be a positive integer (sends per minute)"]


def test_every_problem_is_listed_with_file_and_channel(tmp_path):
    path = write(tmp_path, f"""\
version: 1
channels:
  broken: "oops"
  sms: {{{SMS}, rate_per_minute: sixty}}
  pager: {{kind: pager}}
  mail: {{kind: email, host: h, from_address: a@b.example, password: {CANARY}}}
  ok: {{kind: slack, url_env: T_SLACK, rate_per_minute: 30}}
""")
    errors = problems(path)
    assert errors == [
        f"channels file {path}: unknown top-level key(s) 'version' (only 'channels')",
        f"channels file {path}: channel 'broken': must be a mapping with a 'kind'",
        f"channels file {path}: channel 'sms': rate_per_minute: must be a positive integer (sends per minute)",
        f"channels file {path}: channel 'pager': unknown kind 'pager' (known kinds: email, http_sms, pagerduty, slack, "
        "teams, twilio_sms, webhook)",
        f"channels file {path}: channel 'mail' (email): password: unknown field (secrets go in *_env or *_file, never inline)",
    ]
    assert CANARY not in "\n".join(errors)


def test_a_running_worker_keeps_the_good_channels(tmp_path):
    """read_channels_file: the valid entries stay usable next to the problems of the others."""
    path = write(tmp_path, f"channels:\n  broken: oops\n  sms: {{{SMS}, rate_per_minute: sixty}}\n  ok: {{kind: slack, url_env: T_SLACK}}\n")
    loaded = read_channels_file(path)
    assert sorted(loaded.valid) == ["ok", "sms"]  # a bad rate alone does not take a channel away
    assert loaded.rate_limits == {}
    assert sorted(loaded.problems) == ["broken", "sms"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[1, 2]\n", "the top level must be a mapping with a 'channels' mapping"),
        ("channels: [a, b]\n", "the top level must be a mapping with a 'channels' mapping"),
        ("other: 1\n", "the top level must be a mapping with a 'channels' mapping"),
        ("", "the top level must be a mapping with a 'channels' mapping"),
        ("channels:\n  a: {kind: slack\n  b: 1\n", "invalid YAML: line 3, column 4:"),
    ],
)
def test_the_file_as_a_whole(tmp_path, text, expected):
    path = write(tmp_path, text)
    [error] = problems(path)
    assert error.startswith(f"channels file {path}: {expected}")


def test_duplicate_keys_are_errors_without_the_values(tmp_path):
    path = write(tmp_path, f"channels:\n  a: {{kind: slack, url_env: A}}\n  a: {{kind: slack, url_env: {CANARY.replace('-', '_')}}}\n")
    [error] = problems(path)
    assert error == (f"channels file {path}: invalid YAML: line 3, column 3: duplicate key 'a' "
                     "(the mapping starting at line 2 already has it)")  # fmt: skip


def test_unreadable_files(tmp_path):
    assert problems(str(tmp_path / "absent.yaml")) == [f"channels file {tmp_path / 'absent.yaml'}: not found"]
    assert problems(str(tmp_path)) == [f"channels file {tmp_path}: cannot read (Is a directory)"]
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"channels: \xff\xfe\n")
    assert problems(str(binary)) == [f"channels file {binary}: cannot read (not UTF-8 text)"]


def test_secrets_are_not_resolved_by_the_loader(tmp_path, monkeypatch):
    monkeypatch.delenv("T_TOKEN", raising=False)
    loaded = load_channels_file(write(tmp_path, f"channels:\n  sms: {{{SMS}}}\n"))
    assert list(loaded.valid) == ["sms"]


def test_address_checks_name_every_channel_of_the_file(tmp_path):
    """Invalid entries are still 'configured' for the contacts (their own error explains them)."""
    loaded = read_channels_file(write(tmp_path, f"channels:\n  broken: oops\n  pager: {{kind: pager}}\n  sms: {{{SMS}}}\n"))
    checks = address_checks(loaded)
    assert sorted(checks) == ["broken", "pager", "sms"]
    assert checks["broken"]("anything") is None and checks["pager"]("x") is None
    assert checks["sms"]("+447700900101") is None and checks["sms"]("07700 900101")


def test_the_worker_builds_the_good_channels_of_a_broken_file(tmp_path, monkeypatch):
    """runtime.build_channels_from_file used to crash on `broken: "oops"` or `rate_per_minute: sixty`
    (pages stayed pending); now the good channels are built and each problem is listed."""
    from worker.runtime import build_channels_from_file

    monkeypatch.setenv("T_SLACK", "https://hooks.slack.example/T0/B0/x")
    path = write(tmp_path, 'channels:\n  broken: "oops"\n  ok: {kind: slack, url_env: T_SLACK, rate_per_minute: 6}\n'
                           "  slow: {kind: slack, url_env: T_SLACK, rate_per_minute: sixty}\n")  # fmt: skip
    channels, problems, limits = build_channels_from_file(path)
    assert sorted(channels) == ["ok", "slow"] and limits == {"ok": 6}
    assert problems == [f"channels file {path}: channel 'broken': must be a mapping with a 'kind'",
                        f"channels file {path}: channel 'slow': rate_per_minute: must be a positive integer (sends per minute)"]  # fmt: skip
    for channel in channels.values():
        channel.close()
