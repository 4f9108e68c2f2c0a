"""Typed matchers for routes, inhibition and silences: ``"<field> <op> <value>"``.

Examples: ``crs_grade >= 3``, ``icans_grade >= 2``, ``red_flags has_any [seizure, hypotension]``,
``urgency >= urgent``, ``risk_tier in [high, medium]``, ``in_risk_window == true``,
``age_band == adult``, ``unit == 5B``, ``labels.trial == ZUMA-7``.

Rules:
- Every field has a type; the operator and the value are checked against it when the rules load
  (a grade is an integer 0-4, an urgency or a red flag must be in its vocabulary), so a typo is a
  load error with its line, never a matcher that silently never matches.
- ``urgency`` is ordered: none < routine < urgent < emergency.
- ``icans_grade`` matches the ICANS level: the grade, or its proven floor when the grade is null
  (an ungradable "at least 3" matches ``icans_grade >= 3``).
- A field the subject does not have (e.g. news2 not computable, no unit) is null: every operator
  is false on null except ``!=`` and ``not in``.
Pure module: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from worker.domain import RED_FLAGS, Urgency

URGENCY_ORDER = {u.value: u.rank for u in Urgency}
_COMPARE = ("==", "!=", "<", "<=", ">", ">=", "in", "not in")
_EQUALITY = ("==", "!=", "in", "not in")
_SETS = ("has_any", "has_all", "has_none")


@dataclass(frozen=True, slots=True)
class FieldType:
    kind: str  # int | number | bool | ordered | enum | set | str
    ops: tuple[str, ...]
    vocabulary: tuple[str, ...] = ()
    lo: float | None = None
    hi: float | None = None


FIELDS: dict[str, FieldType] = {
    "crs_grade": FieldType("int", _COMPARE, lo=0, hi=4),
    "icans_grade": FieldType("int", _COMPARE, lo=0, hi=4),
    "news2": FieldType("int", _COMPARE, lo=0, hi=20),
    "day_since_therapy": FieldType("int", _COMPARE, lo=-3650, hi=3650),
    "age_years": FieldType("number", _COMPARE, lo=0, hi=120),
    "crs_grade_is_minimum": FieldType("bool", ("==", "!=")),
    "in_risk_window": FieldType("bool", ("==", "!=")),
    "urgency": FieldType("ordered", _COMPARE, tuple(URGENCY_ORDER)),
    "risk_tier": FieldType("enum", _EQUALITY, ("high", "medium", "low", "unknown")),
    "therapy_class": FieldType("enum", _EQUALITY, ("car_t", "bispecific", "antibody", "other", "unknown")),
    "age_band": FieldType("enum", _EQUALITY, ("neonate", "infant", "toddler", "preschool", "school", "adolescent", "adult")),
    "condition": FieldType("enum", _EQUALITY, ("clinical", "missed_checkin", "system")),
    "red_flags": FieldType("set", _SETS, tuple(sorted(RED_FLAGS))),
    "unit": FieldType("str", _EQUALITY),
    "patient_id": FieldType("str", _EQUALITY),
}
LABEL_FIELD = FieldType("str", _EQUALITY)

_SYNTAX = re.compile(r"^\s*([a-z_][a-z0-9_]*(?:\.[A-Za-z0-9_.:-]+)?)\s+(==|!=|<=|>=|<|>|not in|in|has_any|has_all|has_none)\s+(.+?)\s*$")


class MatcherError(ValueError):
    """A matcher that cannot be used; the message names the rule it breaks."""


def field_type(name: str) -> FieldType:
    if name.startswith("labels."):
        return LABEL_FIELD
    try:
        return FIELDS[name]
    except KeyError:
        known = ", ".join(sorted(FIELDS)) + ", labels.<key>"
        raise MatcherError(f"unknown field {name!r}; fields are: {known}") from None


def _scalar(text: str, ft: FieldType, field: str) -> Any:
    text = text.strip().strip("'\"")
    if ft.kind in ("int", "number"):
        try:
            value = int(text) if ft.kind == "int" else float(text)
        except ValueError:
            raise MatcherError(f"{field} needs {'an integer' if ft.kind == 'int' else 'a number'}, not {text!r}") from None
        if (ft.lo is not None and value < ft.lo) or (ft.hi is not None and value > ft.hi):
            raise MatcherError(f"{field} is between {ft.lo:g} and {ft.hi:g}; {text} can never match")
        return value
    if ft.kind == "bool":
        if text.lower() not in ("true", "false"):
            raise MatcherError(f"{field} needs true or false, not {text!r}")
        return text.lower() == "true"
    if ft.vocabulary and text not in ft.vocabulary:
        raise MatcherError(f"{text!r} is not a valid {field}; valid values: {', '.join(ft.vocabulary)}")
    return text


@dataclass(frozen=True, slots=True)
class Matcher:
    field: str
    op: str
    value: Any  # scalar, or frozenset for in / not in / set operators
    text: str

    @classmethod
    def parse(cls, text: str) -> Matcher:
        m = _SYNTAX.match(text) if isinstance(text, str) else None
        if not m:
            raise MatcherError(f"matcher {text!r} is not '<field> <op> <value>' (e.g. 'crs_grade >= 3')")
        name, op, raw = m.groups()
        ft = field_type(name)
        if op not in ft.ops:
            raise MatcherError(f"operator {op!r} does not apply to {name}; use one of: {', '.join(ft.ops)}")
        if op in ("in", "not in") or op in _SETS:
            if not (raw.startswith("[") and raw.endswith("]")):
                raise MatcherError(f"{op!r} needs a list, e.g. [a, b]")
            items = [x for x in raw[1:-1].split(",") if x.strip()]
            if not items:
                raise MatcherError(f"{op!r} needs a non-empty list")
            value: Any = frozenset(_scalar(x, ft, name) for x in items)
        else:
            if raw.startswith("["):
                raise MatcherError(f"{op!r} compares with one value; use 'in' for a list")
            value = _scalar(raw, ft, name)
        return cls(name, op, value, text.strip())

    def __call__(self, subject: dict[str, Any]) -> bool:
        actual = subject.get(self.field)
        op = self.op
        if actual is None:
            return op in ("!=", "not in")
        if op in _SETS:
            flags = set(actual)
            return (
                bool(flags & self.value) if op == "has_any"
                else self.value <= flags if op == "has_all"
                else not flags & self.value
            )  # fmt: skip
        if op == "in":
            return actual in self.value
        if op == "not in":
            return actual not in self.value
        if self.field == "urgency":
            actual, value = URGENCY_ORDER[actual], URGENCY_ORDER[self.value]
        else:
            value = self.value
        if op == "==":
            return actual == value
        if op == "!=":
            return actual != value
        if op == "<":
            return actual < value
        if op == "<=":
            return actual <= value
        if op == ">":
            return actual > value
        return actual >= value


def all_match(matchers: tuple[Matcher, ...], subject: dict[str, Any]) -> bool:
    return all(m(subject) for m in matchers)


def contradiction(matchers: list[Matcher]) -> tuple[Matcher, ...]:
    """The matchers on one field that no value of that field satisfies together; () if none.

    Rules:
    - only fields with a finite domain are checked: int fields (lo..hi), ``urgency``, bool and
      enum fields; number, str, ``labels.*`` and ``red_flags`` are skipped rather than guessed;
    - the domain includes null (a missing field), which satisfies only ``!=`` and ``not in``.
    """
    by_field: dict[str, list[Matcher]] = {}
    for m in matchers:
        by_field.setdefault(m.field, []).append(m)
    for name, group in by_field.items():
        values = _domain(field_type(name))
        if values is not None and not any(all(m({name: v}) for m in group) for v in values):
            return tuple(group)
    return ()


def _domain(ft: FieldType) -> tuple[Any, ...] | None:
    if ft.kind == "int" and ft.lo is not None and ft.hi is not None:
        return (None, *range(int(ft.lo), int(ft.hi) + 1))
    if ft.kind == "bool":
        return (None, True, False)
    if ft.kind in ("ordered", "enum"):
        return (None, *ft.vocabulary)
    return None
