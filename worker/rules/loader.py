"""Load and validate a rules file as a whole, with file:line:column in every error.

Rules:
- YAML 1.2 (ruamel.yaml): a duplicate key is an error (PyYAML would silently keep the last one);
  ``no``/``08:00`` stay strings.
- The whole document is validated (pydantic models, then cross-references) and every error is
  reported, not just the first; nothing is used unless everything is valid.
- Error messages quote only names (of keys, receivers, policies, routes, silences, channels),
  matcher texts (rule syntax) and the expected values or limits; never a duration, a time, an
  address or any other value, so a value pasted in the wrong place (a token, a phone number) is
  not echoed back. (A YAML syntax error may quote the one character the parser stopped at.)
- Warnings (unused receivers and policies) do not refuse the file; they come with the rules.
The caller reads the file (this module does no I/O) and keeps the last good rules on failure.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from worker.rules.checks import unused_definitions
from worker.rules.models import AddressCheck, Rules, check_references


_DUPLICATE = re.compile(r'found duplicate key "(.*?)" with value')


@dataclass(frozen=True, slots=True)
class RuleError:
    source: str
    line: int  # 1-based; 0 when the position is unknown
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}:{self.column}" if self.line else self.source
        return f"{where}: {self.path + ': ' if self.path else ''}{self.message}"


class RulesError(ValueError):
    def __init__(self, errors: list[RuleError]):
        self.errors = errors
        super().__init__("\n".join(map(str, errors)))


@dataclass(frozen=True, slots=True)
class LoadedRules:
    rules: Rules
    sha256: str
    source: str
    warnings: tuple[RuleError, ...] = ()  # the file is accepted; `rules check` prints them


def load_rules_text(text: str, source: str = "rules.yaml", channels: Mapping[str, AddressCheck] | None = None) -> LoadedRules:
    """Parse and validate rules; raise RulesError listing every problem with its position.

    ``channels``: configured channel name -> its address rule, when known; contacts must use those
    channels with addresses their rule accepts (``check_references``)."""
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        doc = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p).replace("\n", " ")
        if dup := _DUPLICATE.search(problem):  # ruamel quotes both values; they may hold contact data
            first = exc.context_mark.line + 1 if exc.context_mark else "?"
            problem = f"duplicate key {dup.group(1)!r} (the mapping starting at line {first} already has it)"
        raise RulesError([RuleError(source, line, col, "", problem)]) from None
    if not isinstance(doc, dict):
        raise RulesError([RuleError(source, 1, 1, "", "the rules file must be a mapping (version, receivers, ...)")])
    problems = [_error(doc, source, path, msg) for path, msg in check_references(doc, channels)]
    try:
        rules = Rules.model_validate(doc)
    except ValidationError as exc:
        problems += _from_pydantic(exc, doc, source)
    if problems:
        raise RulesError(sorted(problems, key=lambda e: (e.line, e.column)))
    warnings = tuple(_error(doc, source, path, msg) for path, msg in unused_definitions(doc))
    return LoadedRules(rules, hashlib.sha256(text.encode()).hexdigest(), source, warnings)


def _from_pydantic(exc: ValidationError, doc: Any, source: str) -> list[RuleError]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        path = tuple(p for p in err["loc"] if p != "[key]")
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not part of the rules format)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        out.append(_error(doc, source, path, msg))
    return out


def _error(doc: Any, source: str, path: tuple[Any, ...], msg: str) -> RuleError:
    line, col = _position(doc, path)
    return RuleError(source, line, col, ".".join(str(p) for p in path), msg)


def _position(doc: Any, path: tuple[Any, ...]) -> tuple[int, int]:
    """The deepest node of ``path`` that exists in the YAML document, as (line, column), 1-based."""
    node, pos = doc, (doc.lc.line, doc.lc.col) if isinstance(doc, CommentedMap) else (0, 0)
    for key in path:
        if isinstance(node, CommentedMap) and key in node:
            pos = node.lc.key(key)
            node = node[key]
        elif isinstance(node, CommentedSeq) and isinstance(key, int) and 0 <= key < len(node):
            pos = node.lc.item(key)
            node = node[key]
        else:
            break
    return pos[0] + 1, pos[1] + 1
