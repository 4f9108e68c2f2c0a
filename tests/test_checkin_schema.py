"""The pydantic check-in model and the shared JSON Schema accept and reject the same documents.

The reference is the shared schema (``shared/spec/checkin.schema.json``, JSON Schema 2020-12)
run by python-jsonschema with format checking, corrected where python-jsonschema deviates from
the JSON Schema specification (both corrections are proved necessary by
``test_reference_corrects_python_jsonschema_quirks``):

* ``pattern`` uses ECMA-262 regular expressions (the ``regress`` package), as JSON Schema
  specifies, not Python's ``re.search``, whose ``$`` also matches before a trailing newline
  (so stock python-jsonschema accepts the patient_id "P1\\n").
* ``format: date-time`` refuses a trailing newline, which stock python-jsonschema lets through
  for the same reason (rfc3339-validator's regex ends in ``$`` and is applied with ``match``).

Documented differences from RFC 3339 shared by BOTH sides (so not a disagreement): a leap
second ("23:59:60") and year 0000 are refused; rfc3339-validator refuses them and Python's
datetime cannot represent them. See test_leap_second_is_refused_with_a_clear_message.

Each corpus document (tests/checkin_corpus.py) is checked three ways: the reference gives the
verdict the corpus states; the model gives the same verdict from the decoded object AND from the
JSON text; and a refusal names the offending field. Hypothesis then checks generated valid
documents and mutations of them.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema.validators
import pytest
import regress
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from jsonschema import Draft202012Validator, ValidationError
from rfc3339_validator import validate_rfc3339

from tests.checkin_corpus import (
    BASE, BOOLEANS, CORPUS, ENUMS, FULL, INTEGER_BOUNDS, NUMBER_BOUNDS, OBJECTS, OPTIONAL, REQUIRED, Case, with_,
)  # fmt: skip
from worker.checkin import CheckIn, FieldError, IntakeError, parse_checkin

SCHEMA_PATH = Path(__file__).resolve().parents[1].parent / "shared" / "spec" / "checkin.schema.json"
SCHEMA: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


# --- the reference validator ----------------------------------------------------------------


@functools.cache
def _ecma_regex(pattern: str) -> regress.Regex:
    return regress.Regex(pattern, flags="u")  # "u": patterns are matched against code points


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and _ecma_regex(pattern).find(instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r} (ECMA-262)")


def _rfc3339_date_time(instance: object) -> bool:
    # As python-jsonschema's own date-time check (upper-casing: RFC 3339 5.6 allows "t" and "z"),
    # minus the trailing-newline hole of rfc3339-validator's "$".
    if not isinstance(instance, str):
        return True
    return not instance.endswith("\n") and validate_rfc3339(instance.upper())


FORMAT_CHECKER = copy.deepcopy(Draft202012Validator.FORMAT_CHECKER)
FORMAT_CHECKER.checks("date-time")(_rfc3339_date_time)

SpecValidator = jsonschema.validators.extend(Draft202012Validator, validators={"pattern": _ecma_pattern})
Draft202012Validator.check_schema(SCHEMA)
REFERENCE = SpecValidator(SCHEMA, format_checker=FORMAT_CHECKER)
STOCK = Draft202012Validator(SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)


# --- the model's verdicts ---------------------------------------------------------------------


def model_verdicts(doc: Any) -> dict[str, tuple[bool, list[FieldError]]]:
    """{"object"|"json": (accepted, errors)}: parse_checkin on the decoded value and on its JSON text.

    A decoded top-level string has no "object" verdict: parse_checkin(str) reads JSON text by
    contract, so the JSON-text path is the one that says what the model does with that document.
    Any exception other than IntakeError propagates and fails the test.
    """
    inputs = {"json": json.dumps(doc)}
    if not isinstance(doc, str):
        inputs["object"] = doc
    out = {}
    for name, raw in inputs.items():
        try:
            parse_checkin(raw)
        except IntakeError as exc:
            assert exc.errors, f"{name}: IntakeError without field errors"
            out[name] = (False, exc.errors)
        else:
            out[name] = (True, [])
    return out


def explain(doc: Any, reference: bool, verdicts: dict[str, tuple[bool, list[FieldError]]]) -> str:
    shown = repr(doc)
    if len(shown) > 1500:
        shown = shown[:1500] + f"... ({len(shown)} chars)"
    lines = [f"document: {shown}", f"JSON Schema (reference): {'valid' if reference else 'INVALID'}"]
    for name, (accepted, errors) in verdicts.items():
        lines.append(f"model from {name}: {'accepts' if accepted else 'REJECTS'} {[e.as_dict() for e in errors]}")
    return "\n".join(lines)


def names_path(errors: list[FieldError], path: str) -> bool:
    return any(e.loc == path or e.loc.startswith(f"{path}.") for e in errors)


# --- the corpus -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_model_and_schema_agree_on_corpus(case: Case) -> None:
    reference = REFERENCE.is_valid(case.doc)
    verdicts = model_verdicts(case.doc)
    detail = explain(case.doc, reference, verdicts)
    assert reference == case.valid, f"the corpus says {'valid' if case.valid else 'invalid'}\n{detail}"
    for name, (accepted, errors) in verdicts.items():
        assert accepted == reference, f"model ({name}) and schema disagree\n{detail}"
        if not reference:
            assert case.loc in [e.loc for e in errors], f"model ({name}) error does not name {case.loc!r}\n{detail}"
    if reference and "object" in verdicts:  # both paths build the same check-in
        assert parse_checkin(case.doc) == parse_checkin(json.dumps(case.doc)), detail


def _assertion_keywords(schema: dict[str, Any], at: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every place in the schema where a keyword can refuse a document."""
    assertions = {"type", "enum", "const", "required", "additionalProperties", "minimum", "maximum",
                  "minLength", "maxLength", "pattern", "format", "uniqueItems"}  # fmt: skip
    annotations = {"$schema", "$id", "title", "description", "default"}
    for key, value in schema.items():
        if key in assertions:
            yield (*at, key)
        elif key == "properties":
            for name, sub in value.items():
                yield from _assertion_keywords(sub, (*at, key, name))
        elif key == "items":
            yield from _assertion_keywords(value, (*at, key))
        else:
            assert key in annotations, f"schema keyword {key!r} at {at}: not handled; extend the corpus and this test"


def test_corpus_trips_every_keyword_in_the_schema() -> None:
    tripped = {
        tuple(error.absolute_schema_path)
        for case in CORPUS
        if not case.valid
        for error in REFERENCE.iter_errors(case.doc)
    }
    everywhere = set(_assertion_keywords(SCHEMA))
    assert len(everywhere) > 60
    assert everywhere - tripped == set(), "keywords no invalid corpus document trips"


def _leaves(schema: dict[str, Any], at: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    for name, sub in schema.get("properties", {}).items():
        path = f"{at}{name}"
        yield path, sub
        yield from _leaves(sub, f"{path}.")
        if "items" in sub:
            yield f"{path}.0", sub["items"]


def test_corpus_tables_match_the_schema() -> None:
    leaves = dict(_leaves(SCHEMA))
    by_type = lambda t: {p: s for p, s in leaves.items() if s.get("type") == t}  # noqa: E731
    assert sorted(NUMBER_BOUNDS) == sorted((p, s["minimum"], s["maximum"]) for p, s in by_type("number").items())
    assert sorted(INTEGER_BOUNDS) == sorted((p, s["minimum"], s["maximum"]) for p, s in by_type("integer").items())
    assert sorted(BOOLEANS) == sorted(by_type("boolean"))
    assert ENUMS == {p: s["enum"] for p, s in leaves.items() if "enum" in s}
    assert sorted(OBJECTS[1:]) == sorted(by_type("object"))
    required = list(SCHEMA["required"]) + [
        f"{p}.{r}" for p, s in by_type("object").items() for r in s.get("required", [])
    ]
    assert sorted(REQUIRED) == sorted(required)
    assert sorted(OPTIONAL) == sorted(p for p in leaves if not p.endswith(".0") and p not in required)
    assert not any(s.get("type") == "null" or "null" in s.get("enum", []) for s in leaves.values())


# --- documented differences and the corrections of the reference ------------------------------


def test_reference_corrects_python_jsonschema_quirks() -> None:
    # Stock python-jsonschema lets a trailing newline through "$" (Python re semantics); the JSON
    # Schema spec (ECMA-262 "$", RFC 3339 grammar) refuses it, and so do the reference and the model.
    # If this fails because python-jsonschema fixed the quirk, the overrides above can go.
    for path, value in [("patient_id", "P1\n"), ("recorded_at", "2026-11-20T06:15:00Z\n")]:
        doc = with_(path, value, BASE)
        assert STOCK.is_valid(doc), f"stock python-jsonschema no longer accepts {value!r}"
        assert not REFERENCE.is_valid(doc)
        verdicts = model_verdicts(doc)
        assert all(not accepted and names_path(errors, path) for accepted, errors in verdicts.values()), verdicts
    # The corrections change nothing else: same verdict as stock on the rest of the corpus.
    differ = [c.id for c in CORPUS if STOCK.is_valid(c.doc) != REFERENCE.is_valid(c.doc)]
    assert sorted(differ) == ["patient_id-trailing-newline", "recorded_at-trailing-newline"]


def test_leap_second_is_refused_with_a_clear_message() -> None:
    # RFC 3339 (hence JSON Schema's date-time) allows 23:59:60 at the end of a UTC month. The
    # reference (rfc3339-validator) refuses it, and Python's datetime cannot hold it, so the model
    # refuses it too, saying why. An explicit expectation, not a skip.
    doc = with_("recorded_at", "2016-12-31T23:59:60Z", BASE)
    assert not REFERENCE.is_valid(doc)
    for accepted, errors in model_verdicts(doc).values():
        assert not accepted
        assert [e.loc for e in errors] == ["recorded_at"]
        assert "Leap second" in errors[0].msg


def test_lone_surrogate_is_refused_by_the_model() -> None:
    # "\ud800" is a legal JSON escape but not a Unicode scalar value: RFC 8259 8.2 calls its
    # handling unpredictable and I-JSON (RFC 7493 2.1) forbids it. python-jsonschema sees a
    # one-character str and accepts; the model refuses it from an object and from JSON text (it
    # could not be stored as UTF-8). A deliberate, documented difference.
    doc = with_("checkin_id", "\ud800", BASE)
    assert REFERENCE.is_valid(doc)
    verdicts = model_verdicts(doc)
    assert not any(accepted for accepted, _ in verdicts.values()), verdicts
    assert [e.loc for e in verdicts["object"][1]] == ["checkin_id"]


def test_source_default_is_the_schemas() -> None:
    assert SCHEMA["properties"]["source"]["default"] == "patient"
    assert parse_checkin(BASE).source == "patient"
    assert parse_checkin(json.dumps(BASE)).source == "patient"
    assert parse_checkin(FULL).source == "caregiver"
    assert CheckIn.model_fields["source"].default == SCHEMA["properties"]["source"]["default"]


# --- hypothesis: generated valid documents ------------------------------------------------------


def _documents(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    # hypothesis-jsonschema 0.23.1 cannot build objects with this Hypothesis (6.170): its object
    # strategy calls cu.many(...).more(), a Hypothesis internal since removed (AttributeError). So
    # objects are assembled here from "properties"/"required" ("additionalProperties": false:
    # nothing else), and hypothesis_jsonschema.from_schema generates every other subschema
    # (strings with lengths, pattern and formats, bounded numbers, enums, unique arrays). The
    # 2020-12 "$schema" is not an issue: the subschemas carry none and use draft-07 keywords only.
    if schema.get("type") == "object":
        required = set(schema.get("required", ()))
        properties = schema["properties"]
        return st.fixed_dictionaries(
            {k: _documents(v) for k, v in properties.items() if k in required},
            optional={k: _documents(v) for k, v in properties.items() if k not in required},
        )
    return from_schema(schema)


SCHEMA_DOCUMENTS = _documents(SCHEMA)
FIELD_VALUES = {name: _documents(sub) for name, sub in SCHEMA["properties"].items()}


@st.composite
def valid_documents(draw: Any) -> dict[str, Any]:
    """Generated valid documents, plus valid spellings hypothesis-jsonschema never draws:
    integers as integral floats (5.0 is a JSON Schema integer) and a lower-case "t"/"z"."""
    doc = draw(SCHEMA_DOCUMENTS)
    for path, _, _ in INTEGER_BOUNDS:
        obj, field = path.split(".")
        if field in doc.get(obj, {}) and draw(st.booleans()):
            doc[obj][field] = float(doc[obj][field])
    if draw(st.booleans()):
        doc["recorded_at"] = doc["recorded_at"].lower()
    return doc


VALID_DOCUMENTS = valid_documents()
HYPOTHESIS = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@HYPOTHESIS
@given(doc=VALID_DOCUMENTS)
def test_model_accepts_generated_valid_documents(doc: dict[str, Any]) -> None:
    reference = REFERENCE.is_valid(doc)
    verdicts = model_verdicts(doc)
    detail = explain(doc, reference, verdicts)
    assert reference, f"generator produced an invalid document\n{detail}"
    assert all(accepted for accepted, _ in verdicts.values()), detail
    assert parse_checkin(doc) == parse_checkin(json.dumps(doc)), detail


# --- hypothesis: mutations of valid documents ---------------------------------------------------

LEAVES = dict(_leaves(SCHEMA))
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)  # fmt: skip
# Values a lax parser would coerce: numeric and boolean strings, bools, integral floats...
TRICKY = st.sampled_from(
    ["1", "5", "5.0", "37.5", "true", "false", "null", "", "2026-11-20T06:15:00Z", "2026-11-16", "fever",
     0, 1, -1, 5.0, 5.5, True, False, None, [], {}, ["fever"], [1], {"device": "room_air"}]
)  # fmt: skip
KINDS = ["drop_required", "unknown_key", "wrong_type", "null", "past_bound", "too_long", "malformed", "duplicate"]


def _malformed(draw: Any, path: str, value: str) -> str:
    """A string the format or pattern of ``path`` refuses, made from a valid ``value``."""
    if path == "recorded_at":
        date, time = value[:10], value[11:]
        offset = time[8:].lstrip(".0123456789")
        return draw(st.sampled_from([
            value[: len(value) - len(offset)],  # naive: no offset
            f"{date} {time}",
            f"{date}T{time[:5]}{offset}",  # no seconds
            f"{date}T{time[:8]}.{offset}",  # empty fraction
            value + "\n",
            value + " ",
            value.replace("-", "", 2),
            date,
        ]))  # fmt: skip
    if path == "therapy_start":
        return draw(st.sampled_from([value.replace("-", ""), value + "T00:00:00Z", value + "\n", value[:7]]))
    assert path == "patient_id"
    bad = draw(st.sampled_from([" ", "\n", "\t", "/", "é", "Ｐ", "١"]) | st.characters(codec="utf-8").filter(
        lambda c: not (c.isascii() and (c.isalnum() or c in "._:-"))
    ))
    if len(value) == 64:
        value = value[:-1]  # stay within maxLength: only the pattern may refuse
    at = draw(st.integers(0, len(value)))
    return value[:at] + bad + value[at:]


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        return "integer"  # JSON Schema: 5.0 is an integer
    return {float: "number", str: "string", list: "array", dict: "object"}[type(value)]


def allowed_types(schema: dict[str, Any]) -> set[str]:
    if "type" in schema:
        return {"number", "integer"} if schema["type"] == "number" else {schema["type"]}
    values = schema.get("enum", [schema.get("const")])
    return {t for v in values for t in ({"number", "integer"} if json_type(v) == "integer" else {json_type(v)})}


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    if path.startswith("oxygen.") and "oxygen" not in doc:
        doc = {**doc, "oxygen": {"device": "room_air"}}  # a new oxygen object needs its device
    return with_(path, value, doc)


def _drop(doc: dict[str, Any], path: str) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node[part]
    del node[last]
    return doc


@st.composite
def mutations(draw: Any) -> tuple[str, str, dict[str, Any]]:
    """(what was done, the path it was done at, the mutated document) - always an invalid document."""
    doc = draw(VALID_DOCUMENTS)
    kind = draw(st.sampled_from(KINDS))
    if kind == "drop_required":
        path = draw(st.sampled_from([p for p in REQUIRED if "." not in p or p.split(".")[0] in doc]))
        return kind, path, _drop(doc, path)
    if kind == "unknown_key":
        obj = draw(st.sampled_from([o for o in OBJECTS if not o or o in doc]))
        known = LEAVES[obj]["properties"] if obj else SCHEMA["properties"]
        key = draw(st.text(max_size=12).filter(lambda k: k not in known))  # may hold "." or be ""
        doc = copy.deepcopy(doc)
        (doc[obj] if obj else doc)[key] = draw(JSON_VALUES)
        return kind, f"{obj}.{key}" if obj else key, doc
    if kind == "wrong_type":
        items = [f"{p}.{i}" for p in ("symptoms", "premedication") for i in range(len(doc.get(p, [])))]
        path = draw(st.sampled_from(sorted(p for p in LEAVES if not p.endswith(".0")) + items))
        schema = LEAVES[path if not path[-1].isdigit() else f"{path.rsplit('.', 1)[0]}.0"]
        value = draw((TRICKY | JSON_VALUES).filter(lambda v: json_type(v) not in allowed_types(schema)))
        return kind, path, _set(doc, path, value)
    if kind == "null":
        path = draw(st.sampled_from(OPTIONAL + REQUIRED))
        return kind, path, _set(doc, path, None)
    if kind == "past_bound":
        path, lo, hi = draw(st.sampled_from(NUMBER_BOUNDS + INTEGER_BOUNDS))
        integral = (path, lo, hi) in INTEGER_BOUNDS
        small = st.sampled_from([1e-6, 0.01, 0.1, 0.5])  # just past the bound, not only far past it
        delta = draw(st.integers(1, 10**6) if integral else small | st.floats(1e-6, 1e6))
        if integral and draw(st.booleans()):
            delta = float(delta)  # an integral float is still an integer, and still out of range
        value = draw(st.sampled_from([lo - delta, hi + delta]))
        assert not lo <= value <= hi
        return kind, path, _set(doc, path, value)
    if kind == "duplicate":
        path = draw(st.sampled_from(["symptoms", "premedication"]))
        items = doc.get(path) or [draw(st.sampled_from(ENUMS[f"{path}.0"]))]
        repeated = draw(st.sampled_from(items))
        at = draw(st.integers(0, len(items)))
        return kind, path, _set(doc, path, [*items[:at], repeated, *items[at:]])
    if kind == "malformed":
        path = draw(st.sampled_from(["recorded_at", "therapy_start", "patient_id"]))
        valid = doc.get(path) or draw(FIELD_VALUES[path])
        return kind, path, _set(doc, path, _malformed(draw, path, valid))
    assert kind == "too_long"
    path = draw(st.sampled_from([p for p, s in LEAVES.items() if "maxLength" in s]))
    limit = LEAVES[path]["maxLength"]
    alphabet = "abcXYZ019._:-" if path == "patient_id" else st.characters(codec="utf-8")  # pattern-safe
    value = draw(st.text(alphabet, min_size=limit + 1, max_size=limit + 5))
    return kind, path, _set(doc, path, value)


@HYPOTHESIS
@given(mutation=mutations())
def test_model_and_schema_agree_on_mutated_documents(mutation: tuple[str, str, dict[str, Any]]) -> None:
    kind, path, doc = mutation
    reference = REFERENCE.is_valid(doc)
    verdicts = model_verdicts(doc)
    detail = f"mutation: {kind} at {path!r}\n" + explain(doc, reference, verdicts)
    assert not reference, f"the mutation should make the document invalid\n{detail}"
    for name, (accepted, errors) in verdicts.items():
        assert not accepted, f"model ({name}) accepts what the schema refuses\n{detail}"
        assert names_path(errors, path), f"model ({name}) error does not name {path!r}\n{detail}"


def test_mutations_cover_every_kind() -> None:
    # Guards the strategy above against silently degenerating (e.g. a filter that never passes).
    seen: set[str] = set()

    @settings(max_examples=200, deadline=None, database=None)
    @given(mutation=mutations())
    def collect(mutation: tuple[str, str, dict[str, Any]]) -> None:
        seen.add(mutation[0])

    collect()
    assert seen == set(KINDS)
