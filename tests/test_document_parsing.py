"""The document the pipeline stores verbatim is the same whichever JSON parser read it.

worker.pipeline.decode reads a valid check-in's document with orjson (fast) and falls back to
json.loads where orjson refuses. orjson differs from json.loads on integers beyond 64 bits (it
returns a float); a valid check-in cannot hold one because every number in it is bounded. These
tests hold both parsers to the same result, type for type, on everything a valid check-in can be.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.checkin_corpus import CORPUS, FULL
from tests.schema_strategy import from_schema
from tests.test_checkin_schema import SCHEMA
from worker.intake import PAYLOAD_FIELD, Entry
from worker.pipeline import Accepted, Refusal, decode


def _same(a: Any, b: Any) -> bool:
    """Equal and of the same JSON type at every level (1 and 1.0, True and 1 differ)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)


def _decode(text: str) -> Accepted | Refusal:
    return decode(Entry("1-0", {PAYLOAD_FIELD: text.encode("utf-8", "surrogatepass")}, 1))


@pytest.mark.parametrize("case", [c for c in CORPUS if c.valid], ids=lambda c: c.id)
def test_corpus_documents_read_as_json_loads_reads_them(case) -> None:
    text = json.dumps(case.doc)
    got = _decode(text)
    assert isinstance(got, Accepted), got
    assert _same(got.document, json.loads(text))


@pytest.mark.parametrize("text", [
    # numbers written every way JSON allows, within the bounds
    json.dumps(FULL).replace('"temperature_c": 38.4', '"temperature_c": 38.40000000000000000000001'),
    json.dumps(FULL).replace('"temperature_c": 38.4', '"temperature_c": 3.84e1'),
    json.dumps(FULL).replace('"temperature_c": 38.4', '"temperature_c": 3840E-2'),
    json.dumps(FULL).replace('"temperature_c": 38.4', '"temperature_c": 39'),
    json.dumps(FULL).replace('"ice_score": 9', '"ice_score": 9.0'),
    json.dumps(FULL).replace('"ice_score": 9', '"ice_score": 9e0'),
    # escapes: BMP, a surrogate pair (orjson and json agree), an escaped slash
    json.dumps({**FULL, "note": "caf\u00e9 \U0001F600 a/b"}),
    json.dumps({**FULL, "note": "caf\u00e9 \U0001F600 a/b"}, ensure_ascii=False),
    json.dumps({**FULL, "note": "a\\/b"}).replace("\\\\/", "\\/"),
    # a duplicate key: the last value wins in both parsers (and in PostgreSQL's jsonb)
    json.dumps(FULL)[:-1] + ', "patient_id": "P-002"}',
], ids=["long-fraction", "exponent", "exponent-negative", "integral", "int-as-float", "int-exponent",
        "escaped-unicode", "raw-unicode", "escaped-slash", "duplicate-key"])
def test_edge_spellings_read_identically(text: str) -> None:
    assert text != json.dumps(FULL)  # the spelling under test is in the document
    got = _decode(text)
    assert isinstance(got, Accepted), got
    assert _same(got.document, json.loads(text))


def test_lone_surrogate_escape_takes_the_standard_parser() -> None:
    text = json.dumps({**FULL, "note": "x"}).replace('"note": "x"', '"note": "x\\ud800y"')
    got = _decode(text)
    if isinstance(got, Accepted):  # the model refuses a lone surrogate; if it ever accepts one:
        assert got.suspect and _same(got.document, json.loads(text))
    else:
        assert got.reason == "invalid"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=from_schema(SCHEMA), compact=st.booleans())
def test_generated_documents_read_identically(doc: dict, compact: bool) -> None:
    text = json.dumps(doc, separators=(",", ":") if compact else None, ensure_ascii=compact)
    got = _decode(text)
    if isinstance(got, Accepted):
        assert _same(got.document, json.loads(text))


def test_the_stored_payload_is_the_text_or_the_data_whatever_was_asked_before() -> None:
    import orjson

    text = json.dumps(FULL)
    short = _decode(text)
    assert orjson.dumps(short.payload()) == text.encode()
    assert short.document == json.loads(text)  # parsed on demand ...
    assert orjson.dumps(short.payload()) == text.encode()  # ... the text is still what is stored
    hidden = _decode(text[:-1] + ', "note": NaN, "note": "x"}')
    assert hidden.payload() == json.loads(text[:-1] + ', "note": "x"}')
