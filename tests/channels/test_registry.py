"""Channel kinds from entry points: built-ins, a third-party distribution, duplicates, unknown kinds."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from worker.channels.base import Channel
from worker.channels.registry import (
    ChannelConfigError,
    RegistryError,
    build_channels,
    describe_channel_kinds,
    load_channel_kinds,
)

BUILT_IN = {"email", "twilio_sms", "http_sms", "webhook", "pagerduty", "slack", "teams"}

PLUGIN = '''
from pydantic import Field
from worker.channels.base import Channel, ChannelConfig, Receipt


class PagerConfig(ChannelConfig):
    pager_number: int = Field(ge=1000, le=9999)


class PagerChannel(Channel):
    kind = "{kind}"
    Config = PagerConfig
    sent = []

    def send(self, message):
        self.sent.append(message.reference)
        return Receipt(provider_id=f"pager-{{self.config.pager_number}}")
'''


def make_distribution(root: Path, dist: str, module: str, kind: str, *, attr: str = "PagerChannel") -> Path:
    """A distribution as pip would install it: the module plus ``<name>-<version>.dist-info`` with
    METADATA and entry_points.txt, in a directory that goes on sys.path."""
    (root / f"{module}.py").write_text(PLUGIN.format(kind=kind))
    info = root / f"{dist.replace('-', '_')}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[crs_alert.channels]\n{kind} = {module}:{attr}\n")
    return root


def test_builtin_kinds_are_registered():
    kinds = describe_channel_kinds()
    assert BUILT_IN <= set(kinds)
    for kind in BUILT_IN:
        info = kinds[kind]
        assert info.cls.kind == kind and issubclass(info.cls, Channel)
        assert info.cls.Config.model_config["extra"] == "forbid"
        assert info.distribution.startswith("crs-alert ")
        assert Path(__file__).with_name(f"test_{info.cls.__module__.rsplit('.', 1)[1]}.py").exists(), (
            f"kind {kind!r} needs a test file tests/channels/test_<module>.py"
        )


def test_third_party_distribution_loads(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(make_distribution(tmp_path, "acme-pager", "acme_pager", "acme_pager")))
    kinds = describe_channel_kinds()
    assert kinds["acme_pager"].distribution == "acme-pager 1.2.3"
    assert kinds["acme_pager"].target == "acme_pager:PagerChannel"
    channels = build_channels({"ward-pager": {"kind": "acme_pager", "pager_number": 4321}})
    from tests.channels.conftest import make_message

    assert channels["ward-pager"].send(make_message()).provider_id == "pager-4321"
    with pytest.raises(ChannelConfigError, match=r"channel 'ward-pager' \(acme_pager\): pager_number: Input should be less"):
        build_channels({"ward-pager": {"kind": "acme_pager", "pager_number": 123456}})


def test_third_party_kind_in_the_cli_listing(tmp_path):
    """End to end in a fresh interpreter: `crs-alert channels list` shows the plugin's distribution."""
    make_distribution(tmp_path, "acme-pager", "acme_pager", "acme_pager")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "worker.cli", "channels", "list"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "acme_pager   acme_pager:PagerChannel  (acme-pager 1.2.3; not secure)" in out.stdout


def test_duplicate_kind_names_both_distributions(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(make_distribution(tmp_path, "acme-email", "acme_email", "email")))
    with pytest.raises(RegistryError) as info:
        load_channel_kinds()
    message = str(info.value)
    assert "channel kind 'email' is registered twice" in message
    assert "crs-alert 0.1.0" in message and "acme-email 1.2.3" in message


def test_entry_point_name_must_match_kind(tmp_path, monkeypatch):
    root = make_distribution(tmp_path, "acme-odd", "acme_odd", "odd")
    (root / "acme_odd.py").write_text(PLUGIN.format(kind="other"))
    monkeypatch.syspath_prepend(str(root))
    with pytest.raises(RegistryError, match="the class's kind is 'other', not the entry point name 'odd'"):
        load_channel_kinds()


def test_broken_entry_point_is_an_error(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(make_distribution(tmp_path, "acme-bad", "acme_bad", "bad", attr="Missing")))
    with pytest.raises(RegistryError, match="entry point 'bad' = 'acme_bad:Missing' of acme-bad 1.2.3 cannot be loaded"):
        load_channel_kinds()


def test_unknown_kind_lists_known_kinds():
    with pytest.raises(ChannelConfigError) as info:
        build_channels({"pager": {"kind": "carrier_pigeon"}})
    message = str(info.value)
    assert "channel 'pager': unknown kind 'carrier_pigeon' (known kinds: email, http_sms, pagerduty, slack" in message


def test_every_problem_is_reported_with_the_channel_name(monkeypatch):
    monkeypatch.delenv("MISSING_SLACK_URL", raising=False)
    specs = {
        "a": {"kind": "slack", "url_env": "MISSING_SLACK_URL"},
        "b": {"kind": "email", "host": "smtp", "from_address": "x"},
        "c": {"url": "https://x"},
        "d": {"kind": "webhook", "url": "https://x", "secret_env": "S", "secret_file": "/s"},
    }
    with pytest.raises(ChannelConfigError) as info:
        build_channels(specs)
    errors = info.value.errors
    assert "channel 'b' (email): from_address: Value error, must be an e-mail address like alerts@hospital.example" in errors
    assert "channel 'c': kind is required (known kinds: email, http_sms, pagerduty, slack, teams, twilio_sms, webhook)" in errors
    assert "channel 'd' (webhook): (config): Value error, give either secret_env or secret_file, not both" in errors
    # secrets are resolved only once every config is valid: fix those, and the missing variable is named
    with pytest.raises(ChannelConfigError) as info:
        build_channels({"a": specs["a"]})
    assert info.value.errors == ["channel 'a' (slack): url_env: environment variable MISSING_SLACK_URL is not set or empty"]


def test_channel_modules_load_no_transport_library():
    """Config models can be validated (rules loader, `channels list`) without requests or smtplib."""
    code = textwrap.dedent(
        """
        import sys
        from worker.channels.registry import load_channel_kinds, validate_channel_specs
        validate_channel_specs({"e": {"kind": "email", "host": "h", "from_address": "a@b.example"}}, load_channel_kinds())
        print(sorted(m for m in ("requests", "urllib3", "smtplib", "redis", "celery", "sqlalchemy") if m in sys.modules))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
