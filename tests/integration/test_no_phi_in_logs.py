"""No free text (``note``) and no raw payload reaches a log line, whatever happens to the entry."""

from __future__ import annotations

import io
import json
import logging

import structlog

from tests.integration.helpers import febrile, hypotensive
from worker.intake import Consumer, submit
from worker.logs import configure_logging
from worker.pipeline import drain

MARKER = "Jane-Q-Public-555-0199"


def test_notes_and_payloads_never_logged(r, sessions, make_settings):
    settings = make_settings()
    out = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging(json=True, level="DEBUG", stream=out)
    try:
        submit(r, settings.stream_name, [
            febrile("phi-1", note=f"called {MARKER} at home"),
            febrile("phi-1", note=f"called {MARKER} at home"),  # duplicate
            hypotensive("phi-1", note=f"dup {MARKER}"),  # the id reused for other content: rejected
            json.dumps({**febrile("phi-2"), "note": MARKER, "vitals": {"temperature_c": 99}}),  # rejected
            f"not json {MARKER}",
            json.dumps({**febrile(f"id {MARKER}"), f"key_{MARKER}": 1}),  # free text in the id and a key name: rejected
            febrile(f"called {MARKER}", "P-009"),  # a valid check-in whose id holds free text
            json.dumps(febrile("phi-3", minutes=-60, note=MARKER)),  # out of order after phi-1
        ], group=settings.group)
        drain(r=r, sessions=sessions, settings=settings, consumer=Consumer(r, settings.stream_name, settings.group, "p"))
    finally:
        root.handlers, _ = saved[0], root.setLevel(saved[1])
        structlog.reset_defaults()
    text = out.getvalue()
    assert "checkin_rejected" in text and "checkin_duplicate" in text  # the events were logged ...
    assert MARKER not in text and "called" not in text  # ... without the free text
    assert '"checkin_id": "sha256:' in text and "(unknown field)" in text  # hashed, named generically


def _drain_logged(r, sessions, settings, level: str, payloads) -> list[dict]:
    out = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure_logging(json=True, level=level, stream=out)
    try:
        submit(r, settings.stream_name, payloads, group=settings.group)
        drain(r=r, sessions=sessions, settings=settings, consumer=Consumer(r, settings.stream_name, settings.group, "p"))
    finally:
        root.handlers, _ = saved[0], root.setLevel(saved[1])
        structlog.reset_defaults()
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_transitions_are_counted_at_info_and_listed_at_debug(r, sessions, make_settings):
    """At INFO (production) a batch logs its counts, not one line per patient transition (the
    transitions table holds each); at DEBUG every transition gets its line, without free text."""
    settings = make_settings()
    info = _drain_logged(r, sessions, settings, "INFO",
                         [febrile("lv-c1", "lv-1", minutes=-10, note=MARKER), hypotensive("lv-c2", "lv-2", minutes=-10),
                          febrile("lv-c3", "lv-3", minutes=-10)])
    assert not [e for e in info if e["event"] == "patient_transition"]
    done = [e for e in info if e["event"] == "drain_done"]
    assert len(done) == 1 and done[0]["transitions"] == 3 and done[0]["evaluated"] == 3
    debug = _drain_logged(r, sessions, settings, "DEBUG", [hypotensive("lv-c4", "lv-1"), febrile("lv-c5", "lv-4")])
    lines = [e for e in debug if e["event"] == "patient_transition"]
    assert sorted(e["patient_id"] for e in lines) == ["lv-1", "lv-4"]
    assert all(e["level"] == "debug" and "transition" in e for e in lines)
    assert MARKER not in json.dumps(info + debug)
