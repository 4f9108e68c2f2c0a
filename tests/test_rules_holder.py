"""Hot reload: a valid change is used, a bad one keeps the last good rules and is reported once."""

import os
import signal
from pathlib import Path

import pytest

from worker.rules.loader import RulesError
from worker.rules_holder import RulesHolder

EXAMPLE = (Path(__file__).resolve().parents[1] / "config" / "rules.yaml").read_text()


def write(path, text, bump=1):
    path.write_text(text)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump * 1_000_000_000))  # a distinct mtime


def test_a_bad_file_at_start_refuses_to_start(tmp_path):
    p = tmp_path / "rules.yaml"
    p.write_text(EXAMPLE.replace("failsafe: unit-desk\n    failsafe_repeat_every: 5m", "failsafe: nobody\n    failsafe_repeat_every: 5m"))
    with pytest.raises(RulesError, match="undefined receiver 'nobody'"):
        RulesHolder(str(p))


def test_reload_on_change_keeps_last_good_and_reports_each_bad_content_once(tmp_path):
    p = tmp_path / "rules.yaml"
    p.write_text(EXAMPLE)
    failures = []
    holder = RulesHolder(str(p), on_failure=lambda errors, good: failures.append((errors, good.sha256)))
    good = holder.get()
    assert holder.get() is good  # unchanged: no reload

    write(p, EXAMPLE.replace("grace: 30m", "grace: 45m"))
    newer = holder.get()
    assert newer is not good and str(newer.rules.missed_checkins.grace) == "0:45:00"

    bad = EXAMPLE.replace('"crs_grade >= 3"', '"crs_grade >= 9"')
    write(p, bad, bump=2)
    assert holder.get() is newer  # last good kept
    assert len(failures) == 1 and "crs_grade is between 0 and 4" in failures[0][0][0]
    assert failures[0][1] == newer.sha256
    write(p, bad + "\n", bump=3)  # still broken, different content: reported again
    holder.get()
    assert len(failures) == 2
    holder.request_reload()
    holder.get()
    assert len(failures) == 2  # same bad content: not reported twice

    write(p, EXAMPLE, bump=4)
    assert holder.get().sha256 == good.sha256 and holder.last_error is None


def test_a_deleted_file_keeps_the_rules_and_reports(tmp_path):
    p = tmp_path / "rules.yaml"
    p.write_text(EXAMPLE)
    failures = []
    holder = RulesHolder(str(p), on_failure=lambda errors, good: failures.append(errors))
    p.unlink()
    assert holder.get() is holder.current
    assert "cannot read" in failures[0][0]


def test_rename_and_replace_is_seen(tmp_path):
    p = tmp_path / "rules.yaml"
    p.write_text(EXAMPLE)
    holder = RulesHolder(str(p))
    tmp = tmp_path / "rules.yaml.tmp"
    tmp.write_text(EXAMPLE.replace("grace: 30m", "grace: 40m"))
    os.replace(tmp, p)  # what editors do: a new inode
    assert str(holder.get().rules.missed_checkins.grace) == "0:40:00"


def test_sighup_forces_a_reload(tmp_path):
    p = tmp_path / "rules.yaml"
    p.write_text(EXAMPLE)
    holder = RulesHolder(str(p))
    holder.install_sighup()
    try:
        st = os.stat(p)
        p.write_text(EXAMPLE.replace("grace: 30m", "grace: 50m"))
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime and size: only SIGHUP reveals it
        assert str(holder.get().rules.missed_checkins.grace) == "0:30:00"
        os.kill(os.getpid(), signal.SIGHUP)
        assert str(holder.get().rules.missed_checkins.grace) == "0:50:00"
    finally:
        signal.signal(signal.SIGHUP, signal.SIG_DFL)


def test_an_unexpected_loader_exception_is_a_failed_reload_reported_once(tmp_path, monkeypatch):
    """A loader bug must not fail the caller, nor let the bad file be ignored unreported afterwards."""
    import worker.rules_holder as rules_holder

    p = tmp_path / "rules.yaml"
    p.write_text(EXAMPLE)
    failures = []
    holder = RulesHolder(str(p), on_failure=lambda errors, good: failures.append((errors, good.sha256)))
    good = holder.get()

    def broken(text, source="rules.yaml", channels=None):
        raise RuntimeError("secret-canary-value from the file")

    monkeypatch.setattr(rules_holder, "load_rules_text", broken)
    write(p, EXAMPLE.replace("grace: 30m", "grace: 45m"))
    assert holder.get() is good  # last good kept, no exception for the caller
    assert len(failures) == 1 and failures[0][1] == good.sha256
    assert holder.last_error == [f"{p}: could not be loaded (RuntimeError); the last good rules stay in force"]
    assert "canary" not in failures[0][0][0]
    holder.request_reload()
    assert holder.get() is good and len(failures) == 1  # same bad content: reported once
    write(p, EXAMPLE.replace("grace: 30m", "grace: 50m"), bump=2)
    assert holder.get() is good and len(failures) == 2  # different bad content: reported again

    monkeypatch.undo()
    write(p, EXAMPLE.replace("grace: 30m", "grace: 55m"), bump=3)
    assert str(holder.get().rules.missed_checkins.grace) == "0:55:00" and holder.last_error is None


def test_a_file_that_is_not_utf8_keeps_the_rules_and_reports(tmp_path):
    p = tmp_path / "rules.yaml"
    p.write_text(EXAMPLE)
    failures = []
    holder = RulesHolder(str(p), on_failure=lambda errors, good: failures.append(errors))
    good = holder.get()
    p.write_bytes(EXAMPLE.encode() + b"\xff\xfe")
    assert holder.get() is good and holder.get() is good
    assert failures == [[f"{p}: cannot read: not UTF-8 text"]]


def test_going_back_to_the_content_in_force_clears_the_error(tmp_path):
    p = tmp_path / "rules.yaml"
    p.write_text(EXAMPLE)
    holder = RulesHolder(str(p))
    write(p, EXAMPLE.replace('"crs_grade >= 3"', '"crs_grade >= 9"'))
    holder.get()
    assert holder.last_error
    write(p, EXAMPLE, bump=2)
    holder.get()
    assert holder.last_error is None


def test_a_reload_is_checked_against_the_process_channels_as_at_start(tmp_path):
    """A contact on a channel the process does not have, or with an address its kind refuses, is
    refused at start and on a reload (the last good rules stay); without channels nothing is checked."""
    from worker.channels.config_file import address_checks, read_channels_file

    channels = address_checks(read_channels_file(str(Path(__file__).resolve().parents[1] / "config" / "channels.yaml")))
    p = tmp_path / "rules.yaml"
    p.write_text(EXAMPLE)
    failures = []
    holder = RulesHolder(str(p), on_failure=lambda errors, good: failures.append(errors), channels=channels)
    good = holder.get()
    write(p, EXAMPLE.replace('{channel: pagerduty}', '{channel: pager}'))
    assert holder.get() is good
    assert len(failures) == 1 and "channel 'pager' is not configured" in "\n".join(failures[0])
    write(p, EXAMPLE.replace('"+447700900102"', '"07700 900102"'), bump=2)
    assert holder.get() is good and len(failures) == 2 and "contacts.0" in "\n".join(failures[1])
    start = tmp_path / "start.yaml"
    start.write_text(EXAMPLE.replace('{channel: pagerduty}', '{channel: pager}'))
    with pytest.raises(RulesError, match="not configured"):
        RulesHolder(str(start), channels=channels)
    unchecked = RulesHolder(str(p))  # no channels given: addresses are not checked (rules check does that)
    assert unchecked.get().sha256 != good.sha256
