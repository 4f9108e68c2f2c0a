"""Split an input into JSON documents: JSON Lines, one JSON object, or one JSON array of objects.

Rules (evaluate.md "Input"):
- Starts with "[" -> one JSON array; each element is a document numbered 1, 2, ... If the array
  itself cannot be parsed, that is a framing error (FramingError), not an invalid document.
- Otherwise JSON Lines: each non-blank line is a document numbered by its line. A line that is not
  JSON (or not UTF-8) is an invalid document that still gets a number, so nothing is dropped.
- One pretty-printed object spanning several lines is recognised when its first line alone is not
  JSON but the whole input is one object.
Pure: works on bytes already read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from worker.checkin import BOM, not_utf8


class FramingError(ValueError):
    """The input cannot be split into documents at all (exit status 2 in the CLI)."""


@dataclass(frozen=True, slots=True)
class Document:
    number: int  # line number (JSON Lines, single object) or 1-based array index
    value: Any = None
    error: str | None = None  # why the document is not JSON; value is then None
    raw: bytes = b""


def documents(data: bytes) -> Iterator[Document]:
    stripped = data.lstrip()
    if not stripped:
        return
    if stripped[:1] == b"[":
        try:
            items = loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FramingError(f"the input starts with '[' but is not one JSON array: {exc}") from None
        if not isinstance(items, list):  # pragma: no cover - "[" always decodes to a list
            raise FramingError("the input starts with '[' but is not one JSON array")
        for i, item in enumerate(items, 1):
            yield Document(i, item, raw=json.dumps(item).encode())
        return
    lines = data.split(b"\n")
    first = next(i for i, line in enumerate(lines) if line.strip())
    if _loads(lines[first])[1] is not None:
        whole, error = _loads(data)
        if error is None and isinstance(whole, dict):
            yield Document(first + 1, whole, raw=data)
            return
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        value, error = _loads(line)
        yield Document(number, value, error, line)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(data: bytes | str) -> Any:
    """json.loads that refuses NaN and Infinity (not JSON, and not in the wire format)."""
    return json.loads(data, parse_constant=_no_constants)


def _loads(data: bytes) -> tuple[Any, str | None]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, not_utf8(data, exc).msg  # the worker's wording (worker.pipeline.decode)
    try:
        return loads(text), None
    except ValueError as exc:
        return None, BOM.msg if text.startswith("\ufeff") else f"Invalid JSON: {exc}"
