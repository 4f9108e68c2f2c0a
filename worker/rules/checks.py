"""Whole-file checks of the route tree, and the unused definitions a file is still accepted with.

Rules (errors, each with the route's path, reported together with the other errors):
- a child route with no ``match``, no ``match_any`` and no ``continue: true`` catches everything,
  so it must be the last of its siblings (the ones after it could never match);
- route names are unique across the whole tree (they name the route in alerts and audits);
- a route's ``match`` matchers can hold together, and each ``match_any`` entry can hold on its
  own (``matchers.contradiction``: only fields with a finite domain are checked).
Warnings (the file is accepted): a receiver no policy or route names, a policy no route names.
Works on the raw document; malformed parts are skipped (the models report them).
Pure module: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from worker.rules.matchers import Matcher, MatcherError, contradiction

Path = tuple[str | int, ...]


def route_tree_errors(root: dict) -> list[tuple[Path, str]]:
    errors: list[tuple[Path, str]] = []
    seen: dict[str, Path] = {}
    for route, path in _routes(root, ("routes",)):
        name = route.get("name")
        if isinstance(name, str):
            if name in seen:
                errors.append((path + ("name",), f"route name {name!r} is already used by the route at "
                                                 f"{_dotted(seen[name])}; route names must be unique"))  # fmt: skip
            else:
                seen[name] = path
        if path != ("routes",):  # the root's matchers are reported as root errors
            errors += _contradictions(route, path)
        children = _children(route)
        for i, child in enumerate(children[:-1]):
            if not child.get("match") and not child.get("match_any") and child.get("continue") is not True:
                later = ", ".join(_label(c, path + ("routes", j)) for j, c in enumerate(children) if j > i)
                errors.append((path + ("routes", i), f"route {_label(child, path + ('routes', i))} matches everything, "
                               f"so the routes after it ({later}) can never match: give it matchers, set continue: true, "
                               "or move it last"))  # fmt: skip
    return errors


def unused_definitions(doc: Any) -> list[tuple[Path, str]]:
    """Warnings: receivers that no policy step, failsafe or route ``notify`` names; policies no route names."""
    d = doc if isinstance(doc, dict) else {}
    receivers = d.get("receivers") if isinstance(d.get("receivers"), dict) else {}
    policies = d.get("escalation_policies") if isinstance(d.get("escalation_policies"), dict) else {}
    root = d.get("routes") if isinstance(d.get("routes"), dict) else {}
    used_receivers: set[str] = set()
    for policy in policies.values():
        if isinstance(policy, dict):
            used_receivers.update(_names([policy.get("failsafe")]))
            for step in policy.get("steps") if isinstance(policy.get("steps"), list) else []:
                used_receivers.update(_names(step.get("notify") if isinstance(step, dict) else None))
    used_policies: set[str] = set()
    for route, _ in _routes(root, ("routes",)):
        used_policies.update(_names([route.get("policy")]))
        used_receivers.update(_names(route.get("notify")))
    warnings: list[tuple[Path, str]] = [
        (("receivers", name), f"receiver {name!r} is not used by any escalation policy or route; remove it or use it")
        for name in receivers if name not in used_receivers
    ]  # fmt: skip
    warnings += [(("escalation_policies", name), f"escalation policy {name!r} is not used by any route; remove it or route to it")
                 for name in policies if name not in used_policies]  # fmt: skip
    return warnings


def _contradictions(route: dict, path: Path) -> list[tuple[Path, str]]:
    label = _label(route, path)
    errors: list[tuple[Path, str]] = []
    match = _parsed(route.get("match"))
    if group := contradiction([m for _, m in match]):
        first = next(i for i, m in match if m in group)
        texts = " and ".join(repr(m.text) for m in group)
        errors.append((path + ("match", first), f"route {label} can never match: {texts} can never hold"
                                                f"{' together' if len(group) > 1 else ''}"))  # fmt: skip
    for j, m in _parsed(route.get("match_any")):
        if contradiction([m]):
            errors.append((path + ("match_any", j), f"route {label}: the match_any entry {m.text!r} can never hold"))
    return errors


def _parsed(items: Any) -> list[tuple[int, Matcher]]:
    out = []
    for i, text in enumerate(items if isinstance(items, list) else []):
        try:
            out.append((i, Matcher.parse(text)))
        except MatcherError:
            continue  # the model reports it
    return out


def _routes(route: dict, path: Path) -> Iterator[tuple[dict, Path]]:
    yield route, path
    for i, child in enumerate(route.get("routes") if isinstance(route.get("routes"), list) else []):
        if isinstance(child, dict):
            yield from _routes(child, path + ("routes", i))


def _children(route: dict) -> list[dict]:
    children = route.get("routes") if isinstance(route.get("routes"), list) else []
    return [c if isinstance(c, dict) else {"match": ["?"]} for c in children]  # malformed: not a catch-all


def _label(route: dict, path: Path) -> str:
    return repr(route["name"]) if isinstance(route.get("name"), str) else _dotted(path)


def _names(items: Any) -> list[str]:
    return [n for n in items if isinstance(n, str)] if isinstance(items, list) else []


def _dotted(path: Path) -> str:
    return ".".join(map(str, path))
