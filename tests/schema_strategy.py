"""Hypothesis strategies that generate documents valid against a JSON Schema, driven by the schema itself.

hypothesis-jsonschema 0.23.1 (its latest release) fails against current hypothesis, so this covers
the keywords the check-in schema uses: type (object, string, number, integer, boolean, array),
properties/required/additionalProperties:false, enum, const, minimum/maximum, minLength/maxLength,
pattern, format (date-time, date), items, uniqueItems. An unsupported keyword raises, so the
generator can never silently produce documents that ignore part of the schema.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hypothesis import strategies as st

SUPPORTED = {
    "$schema", "$id", "title", "description", "default", "type", "properties", "required",
    "additionalProperties", "enum", "const", "minimum", "maximum", "minLength", "maxLength", "pattern",
    "format", "items", "uniqueItems",
}  # fmt: skip


def _offsets() -> st.SearchStrategy[str]:
    signed = st.builds(lambda s, h, m: f"{s}{h:02d}:{m:02d}", st.sampled_from("+-"), st.integers(0, 23), st.integers(0, 59))
    return st.one_of(st.sampled_from(["Z", "z", "+00:00", "-00:00"]), signed)


def rfc3339_datetimes() -> st.SearchStrategy[str]:
    stamp = st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2100, 12, 31))
    frac = st.one_of(st.just(""), st.integers(1, 9).flatmap(lambda n: st.text("0123456789", min_size=n, max_size=n).map(lambda d: "." + d)))
    sep = st.sampled_from("Tt")
    return st.builds(lambda d, s, f, o: d.strftime(f"%Y-%m-%d{s}%H:%M:%S") + f + o, stamp, sep, frac, _offsets())


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    unknown = set(schema) - SUPPORTED
    if unknown:
        raise NotImplementedError(f"schema keywords not supported by this generator: {sorted(unknown)}")
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema["type"]
    if kind == "object":
        if schema.get("additionalProperties", True) is not False:
            raise NotImplementedError("only closed objects (additionalProperties: false) are generated")
        props = {k: from_schema(v) for k, v in schema.get("properties", {}).items()}
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {k: s for k, s in props.items() if k in required},
            optional={k: s for k, s in props.items() if k not in required},
        )
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        ints = st.integers(schema.get("minimum"), schema.get("maximum"))
        return st.one_of(ints, ints.map(float))  # JSON Schema: 5.0 is an integer
    if kind == "number":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        return st.one_of(st.floats(lo, hi, allow_nan=False, allow_infinity=False), st.integers(lo, hi))
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            return rfc3339_datetimes()
        if fmt == "date":
            return st.dates(dt.date(1970, 1, 1), dt.date(2100, 12, 31)).map(dt.date.isoformat)
        lo, hi = schema.get("minLength", 0), schema.get("maxLength")
        if "pattern" in schema:
            # ECMA "$" does not match before a trailing newline, so generate full matches only.
            return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: lo <= len(s) <= (hi or len(s)))
        return st.text(min_size=lo, max_size=hi)
    if kind == "array":
        return st.lists(from_schema(schema["items"]), unique=bool(schema.get("uniqueItems")), max_size=8)
    raise NotImplementedError(f"type {kind!r}")
