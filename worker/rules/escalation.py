"""The escalation timeline of a policy: who is paged when, if nobody acknowledges.

Rules:
- Step 1 is paged when the escalation starts; it is repeated every ``repeat_every`` up to
  ``repeats`` times while waiting; after ``ack_within`` the next step is paged, and so on.
- An upgrade restarts the timeline at the step already reached, never earlier.
- When every step ran out, the failsafe receiver is paged, then again every
  ``failsafe_repeat_every`` until someone acknowledges (the timeline never ends by itself).
- Catching up after downtime takes the latest page due (one pass over the pages skipped).
- The timeline is a pure function of the policy (frozen on the alert when it opens) and the start
  time, so the database stores only (started_at, next page number): a stale or duplicate
  scheduler run recomputes the same page and its conditional update finds nothing to do.
Pure module: no I/O.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from worker.rules.models import Policy


@dataclass(frozen=True, slots=True)
class Page:
    seq: int  # position in the timeline, 0 = the first page
    at: dt.datetime
    step: int  # 0-based step; len(policy.steps) is the failsafe
    repeat: int  # 0 = first page of the step, then 1, 2, ...
    receivers: tuple[str, ...]
    kind: str  # "page", "repeat" or "failsafe"


def timeline(policy: Policy, start: dt.datetime, first_step: int = 0) -> Iterator[Page]:
    """Every page of the policy from ``start`` on, in time order (infinite: the failsafe repeats).

    ``first_step`` restarts an escalation at the step it had reached (an upgrade re-pages with fresh
    content without falling back to earlier receivers); past the last step it is the failsafe.
    """
    seq = itertools.count()
    at = start
    for index, step in enumerate(policy.steps):
        if index < first_step:
            continue
        receivers = tuple(step.notify)
        yield Page(next(seq), at, index, 0, receivers, "page")
        for r in range(1, step.repeats + 1):
            yield Page(next(seq), at + step.repeat_every * r, index, r, receivers, "repeat")
        at += step.ack_within
    failsafe = (policy.failsafe,)
    for r in itertools.count():
        yield Page(next(seq), at + policy.failsafe_repeat_every * r, len(policy.steps), r, failsafe, "failsafe")


def page_at(policy: Policy, start: dt.datetime, seq: int, first_step: int = 0) -> Page:
    """The page number ``seq`` of the timeline."""
    return next(itertools.islice(timeline(policy, start, first_step), seq, None))


def latest_due(policy: Policy, start: dt.datetime, seq: int, now: dt.datetime, first_step: int = 0) -> tuple[Page, Page]:
    """(the latest page due by ``now`` from number ``seq`` on, the page after it): one pass over
    the timeline, however many pages a stopped scheduler let fall due (``seq`` itself is assumed
    due)."""
    pages = itertools.islice(timeline(policy, start, first_step), seq, None)
    page = next(pages)
    for following in pages:
        if following.at > now:
            return page, following
        page = following
    raise AssertionError("unreachable: the timeline is infinite")  # pragma: no cover


def first_pages(policy: Policy, start: dt.datetime, failsafe_repeats: int = 1) -> list[Page]:
    """The timeline up to and including the failsafe page and ``failsafe_repeats`` repeats of it."""
    out = []
    for page in timeline(policy, start):
        out.append(page)
        if page.kind == "failsafe" and page.repeat >= failsafe_repeats:
            return out
    raise AssertionError("unreachable: the timeline is infinite")  # pragma: no cover
