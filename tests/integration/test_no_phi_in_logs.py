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
            hypotensive("phi-1", note=f"dup {MARKER}"),  # duplicate
            json.dumps({**febrile("phi-2"), "note": MARKER, "vitals": {"temperature_c": 99}}),  # rejected
            f"not json {MARKER}",
            json.dumps(febrile("phi-3", minutes=-60, note=MARKER)),  # out of order after phi-1
        ], group=settings.group)
        drain(r=r, sessions=sessions, settings=settings, consumer=Consumer(r, settings.stream_name, settings.group, "p"))
    finally:
        root.handlers, _ = saved[0], root.setLevel(saved[1])
        structlog.reset_defaults()
    text = out.getvalue()
    assert "checkin_rejected" in text and "checkin_duplicate" in text  # the events were logged ...
    assert MARKER not in text and "called" not in text  # ... without the free text
