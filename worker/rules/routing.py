"""Route an alert subject through the route tree (Alertmanager dispatch/route.go semantics).

Rules:
- The root matches everything (it is the mandatory catch-all).
- Children are tried in order, depth first; the first child that matches wins, unless it has
  ``continue: true``, in which case its later siblings are tried too.
- A node none of whose children matched is itself the match.
- Unset ``policy``, ``notify`` and ``page`` are inherited from the parent.
- The alert's escalation policy and paging decision come from the first matched route; the
  informational ``notify`` receivers of every matched route are united.
- Guard: an emergency always pages. A route with ``page: false`` that catches an emergency pages
  anyway, with its (inherited) policy, and the decision says so.
Pure module: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from worker.rules.matchers import all_match
from worker.rules.models import Route


@dataclass(frozen=True, slots=True)
class Matched:
    path: tuple[str, ...]  # route names (or indexes) from the root
    policy: str
    notify: tuple[str, ...]
    page: bool


@dataclass(frozen=True, slots=True)
class Decision:
    policy: str
    page: bool
    notify: tuple[str, ...]
    routes: tuple[Matched, ...]
    guard: str | None = None  # why a safety guard overrode the rules, if it did

    @property
    def route_name(self) -> str:
        return "/".join(self.routes[0].path) or "(root)"


def _matches(route: Route, subject: dict[str, Any]) -> bool:
    if not all_match(tuple(route.match), subject):
        return False
    return not route.match_any or any(m(subject) for m in route.match_any)


def match(root: Route, subject: dict[str, Any]) -> list[Matched]:
    """Every matched route, in tree order; never empty (the root catches all)."""
    return _match(root, subject, (), root.policy or "", tuple(root.notify or ()), root.page is not False)


def _match(route: Route, subject: dict[str, Any], path: tuple[str, ...], policy: str, notify: tuple[str, ...], page: bool) -> list[Matched]:
    if path and not _matches(route, subject):
        return []
    found: list[Matched] = []
    for i, child in enumerate(route.routes):
        child_found = _match(
            child,
            subject,
            path + (child.name or str(i),),
            child.policy or policy,
            tuple(child.notify) if child.notify is not None else notify,
            page if child.page is None else child.page,
        )
        found.extend(child_found)
        if child_found and not child.continue_:
            break
    return found or [Matched(path, policy, notify, page)]


def decide(root: Route, subject: dict[str, Any]) -> Decision:
    routes = tuple(match(root, subject))
    first = routes[0]
    notify = tuple(dict.fromkeys(n for r in routes for n in r.notify))
    if not first.page and subject.get("urgency") == "emergency":
        guard = f"route {'/'.join(first.path) or '(root)'} has page: false, but an emergency always pages"
        return Decision(first.policy, True, notify, routes, guard)
    return Decision(first.policy, first.page, notify, routes)
