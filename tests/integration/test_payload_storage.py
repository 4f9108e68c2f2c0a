"""How a valid check-in's document is stored (checkins.payload), on both databases.

Its JSON text goes in as the producer wrote it (key order, spacing, escapes), except where the
text holds a value that not every reader takes: then the document is stored as the data that
json.loads reads (the repeated key's last value wins, as the model saw it). Either way the stored
document reads back as json.loads reads the text, and the check-in is evaluated."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import text

from tests.integration.helpers import febrile
from worker import pipeline
from worker.intake import Consumer, submit
from worker.pipeline import drain_once

NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)


def _stored(sessions, cid: str) -> tuple[str, dict]:
    """(the payload's text as the database holds it, the payload as the ORM reads it)."""
    with sessions() as s:
        kind = s.get_bind().dialect.name
        raw = s.scalar(text("SELECT CAST(payload AS text) FROM checkins WHERE checkin_id = :c" if kind == "postgresql"
                            else "SELECT payload FROM checkins WHERE checkin_id = :c"), {"c": cid})
        doc = s.scalar(text("SELECT payload FROM checkins WHERE checkin_id = :c").columns(
            pipeline.CheckinRow.__table__.c.payload), {"c": cid})
    return raw, doc


def _drain(r, sessions, settings, texts: list[bytes]):
    submit(r, settings.stream_name, texts, group=settings.group)
    consumer = Consumer(r, settings.stream_name, settings.group, "c")
    return drain_once(r=r, sessions=sessions, settings=settings, consumer=consumer, now=NOW)


def test_the_producers_text_is_stored_as_it_is(r, sessions, make_settings):
    doc = febrile("c1", "P-1", note="caf\u00e9 \u2028 \"quoted\"")
    written = json.dumps(doc, indent=1, sort_keys=True)  # spacing, key order and \u escapes of its own
    report = _drain(r, sessions, make_settings(), [written.encode()])
    assert (report.evaluated, report.rejected) == (1, 0)
    raw, read = _stored(sessions, "c1")
    assert raw == written
    assert read == json.loads(written)


@pytest.mark.parametrize("hidden", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_a_repeated_key_hiding_a_value_json_refuses_is_stored_as_data(r, sessions, make_settings, hidden):
    """The model validates a repeated key's last value only; an earlier one can be a token strict
    JSON (and PostgreSQL) refuses. The check-in is evaluated and stored as json.loads reads it."""
    doc = febrile("c1", "P-1")
    written = json.dumps(doc)[:-1] + f', "note": {hidden}, "note": "last"}}'
    report = _drain(r, sessions, make_settings(), [written.encode()])
    assert (report.evaluated, report.rejected) == (1, 0)
    raw, read = _stored(sessions, "c1")
    assert hidden not in raw
    assert read == json.loads(written) and read["note"] == "last"


def test_a_long_document_is_stored_as_data(r, sessions, make_settings):
    """Past pipeline._VERBATIM_MAX_BYTES the text is not stored as it is (an integer json.loads
    refuses could hide under a repeated key); the document is, value for value."""
    doc = febrile("c1", "P-1", note="\u00e9" * 2000)
    written = json.dumps(doc)  # \u00e9 escapes: 6 bytes each
    assert len(written) > pipeline._VERBATIM_MAX_BYTES
    report = _drain(r, sessions, make_settings(), [written.encode()])
    assert (report.evaluated, report.rejected) == (1, 0)
    raw, read = _stored(sessions, "c1")
    assert raw != written and json.loads(raw) == doc
    assert read == doc
