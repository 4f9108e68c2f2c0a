"""The admin rules file as pydantic models: receivers, escalation policies, the route tree,
inhibition, silences, quiet hours and missed check-ins.

Rules enforced at load time (a file breaking any of them is refused whole):
- unknown keys are errors everywhere; durations are strings like "90s", "5m", "1h30m", more than
  zero and at most 7d; ``timezone`` is an IANA time zone name the system knows;
- every receiver a policy or route names exists; every policy a route names exists;
- the root route is the mandatory catch-all: no matchers, a policy, and it pages;
- every policy has a failsafe receiver; a step waits at least 1 minute for an acknowledgement and
  its repeats fit inside that wait; ``repeats`` is a plain integer (not ``true`` or ``"1"``);
  ``repeat_every`` and ``failsafe_repeat_every`` are at least 1 minute (a policy frozen on an
  alert under older rules still loads);
- a silence needs a reason, an author, a ``patient_id`` or ``unit`` matcher with ``==`` or ``in``
  (it is a per-patient or per-unit window) and an end after its start, at most 7d later; it can
  mute at most urgent traffic, never an emergency;
- quiet hours only ever defer routine traffic, and a window's start and end differ;
- the route tree: see ``worker.rules.checks`` (cross-checks reported with the field errors).
Pure module: no I/O.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationInfo,
                      field_validator, model_validator)

from worker.rules.checks import Path, route_tree_errors
from worker.rules.matchers import Matcher, MatcherError

_DURATION = re.compile(r"(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?")  # ASCII digits only
_UNIT_SECONDS = (86400, 3600, 60, 1)
MIN_ACK_WITHIN = dt.timedelta(minutes=1)
MIN_REPEAT = dt.timedelta(minutes=1)  # repeat_every, failsafe_repeat_every: the scheduler ticks every few seconds
MAX_DURATION = dt.timedelta(days=7)  # every rules duration, and a silence window
SNAPSHOT = {"snapshot": True}  # validation context for a policy frozen on an alert (see _duration)


def parse_duration(value: Any, limit: dt.timedelta | None = MAX_DURATION) -> dt.timedelta:
    """A rules duration ("90s", "5m", "1h30m", "2d"): more than zero and at most ``limit`` (7d).

    Raises only ValueError, and its message never quotes the value: a value pasted in the wrong
    place (a phone number) must not be echoed into logs and terminals.
    """
    m = _DURATION.fullmatch(value.strip()) if isinstance(value, str) else None
    if not m or not any(m.groups()):
        raise ValueError("not a duration like '90s', '5m', '1h30m' or '2d'")
    too_long = f"a duration is at most {format_duration(limit)}" if limit else "the duration is too long"
    if any(len(x.lstrip("0")) > 12 for x in m.groups() if x):  # int() refuses >4300 digits
        raise ValueError(too_long)
    seconds = sum(int(x) * unit for x, unit in zip(m.groups(), _UNIT_SECONDS) if x)  # an int: no overflow
    if seconds == 0:
        raise ValueError("a duration must be more than zero")
    if seconds > (limit or dt.timedelta.max).total_seconds():  # beyond timedelta.max: OverflowError
        raise ValueError(too_long)
    return dt.timedelta(seconds=seconds)


def _snapshot(info: ValidationInfo) -> bool:
    """Whether a policy frozen on an alert is being loaded back: limits added later must not stop it."""
    return bool((info.context or {}).get("snapshot"))


def _duration(value: Any, info: ValidationInfo) -> dt.timedelta:
    # A policy frozen on an open alert before the 7d cap existed must still load, or that alert's
    # escalation would stop; alerting validates snapshots with context=SNAPSHOT.
    return parse_duration(value, None if _snapshot(info) else MAX_DURATION)


def format_duration(td: dt.timedelta) -> str:
    """The rules-file spelling of a duration ("1h30m"), so a frozen policy snapshot loads back."""
    total = int(td.total_seconds())
    parts = [(total // 86400, "d"), (total % 86400 // 3600, "h"), (total % 3600 // 60, "m"), (total % 60, "s")]
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"


def _matcher(value: Any) -> Matcher:
    try:
        return Matcher.parse(value)
    except MatcherError as exc:
        raise ValueError(str(exc)) from None


def _clock(value: Any) -> dt.time:
    if isinstance(value, str) and re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value):
        return dt.time.fromisoformat(value)
    raise ValueError("not a time of day HH:MM (24 h), e.g. '07:00'")


def _aware(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError("needs a UTC offset, e.g. 2026-11-25T08:00:00Z")
    return value


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except Exception:  # noqa: BLE001 - ZoneInfoNotFoundError, ValueError ("../x", ""), OSError: all unknown
        raise ValueError("unknown time zone; use an IANA name like Europe/London") from None
    return value


Duration = Annotated[dt.timedelta, BeforeValidator(_duration), PlainSerializer(format_duration)]
MatcherT = Annotated[Matcher, BeforeValidator(_matcher), PlainSerializer(lambda m: m.text)]
Clock = Annotated[dt.time, BeforeValidator(_clock)]
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
AwareDatetime = Annotated[dt.datetime, AfterValidator(_aware)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, populate_by_name=True)


class Contact(_Strict):
    channel: Name  # a channel name from the channels configuration (issue 5)
    to: str = ""  # address on that channel; empty for channels with a fixed target (webhooks)


class Receiver(_Strict):
    description: str = ""
    contacts: list[Contact] = Field(min_length=1)


class Step(_Strict):
    notify: list[Name] = Field(min_length=1)
    ack_within: Duration
    repeat_every: Duration | None = None
    repeats: int = Field(0, ge=0, le=10, strict=True)  # strict: `true` and "1" are typos, not 1

    @model_validator(mode="after")
    def _timing(self, info: ValidationInfo) -> Step:
        if self.ack_within < MIN_ACK_WITHIN:
            raise ValueError("ack_within must be at least 1m: nobody can acknowledge faster")
        if self.repeats and self.repeat_every is None:
            raise ValueError("repeats needs repeat_every")
        if self.repeat_every is not None and self.repeat_every < MIN_REPEAT and not _snapshot(info):
            raise ValueError("repeat_every must be at least 1m: a shorter repeat is a flood, not a reminder")
        if self.repeats and self.repeat_every * self.repeats >= self.ack_within:
            raise ValueError(
                f"{self.repeats} repeats every {format_duration(self.repeat_every)} do not fit before ack_within "
                f"{format_duration(self.ack_within)}; "
                "the step would escalate first"
            )
        return self


class Policy(_Strict):
    steps: list[Step] = Field(min_length=1)
    ack_timeout: Duration = dt.timedelta(minutes=30)  # acknowledged but unresolved: page again after this
    failsafe: Name  # paged when every step ran out unacknowledged (mandatory)
    failsafe_repeat_every: Duration = dt.timedelta(minutes=15)

    @model_validator(mode="after")
    def _failsafe_repeat(self, info: ValidationInfo) -> Policy:
        if self.failsafe_repeat_every < MIN_REPEAT and not _snapshot(info):
            raise ValueError("failsafe_repeat_every must be at least 1m: a shorter repeat is a flood, not a reminder")
        return self


class Route(_Strict):
    name: str | None = None
    match: list[MatcherT] = []  # all must hold
    match_any: list[MatcherT] = []  # at least one must hold (when given)
    policy: Name | None = None  # inherited from the parent when unset
    notify: list[Name] | None = None  # informational receivers (not escalated); inherited
    page: bool | None = None  # False: record and notify, open no paging alert; inherited
    continue_: bool = Field(False, alias="continue")
    routes: list[Route] = []


class Inhibit(_Strict):
    source: list[MatcherT] = Field(min_length=1)
    target: list[MatcherT] = Field(min_length=1)
    equal: list[Literal["patient_id", "unit"]] = ["patient_id"]


class Silence(_Strict):
    id: Name
    match: list[MatcherT] = Field(min_length=1)  # must name a patient or a unit (see _whom)
    starts: AwareDatetime
    ends: AwareDatetime
    max_urgency: Literal["routine", "urgent"] = "routine"  # never "emergency": an emergency always pages
    reason: str = Field(min_length=3)
    author: str = Field(min_length=1)

    @field_validator("match")
    @classmethod
    def _whom(cls, match: list[Matcher], info: ValidationInfo) -> list[Matcher]:
        if not any(m.field in ("patient_id", "unit") and m.op in ("==", "in") for m in match):
            raise ValueError(
                f"silence {info.data.get('id', '?')!r} must name whom it mutes: a silence is a per-patient or "
                "per-unit window, so its match needs 'patient_id == ...', 'patient_id in [...]', 'unit == ...' "
                "or 'unit in [...]'"
            )
        return match

    @model_validator(mode="after")
    def _window(self) -> Silence:
        if self.ends <= self.starts:
            raise ValueError("ends must be after starts")
        if self.ends - self.starts > MAX_DURATION:
            raise ValueError(f"ends at most {format_duration(MAX_DURATION)} after starts; renew it if it is still needed")
        return self


class QuietHours(_Strict):
    start: Clock
    end: Clock
    match: list[MatcherT] = []  # narrows which routine traffic is deferred; urgent/emergency never are

    @model_validator(mode="after")
    def _nonempty(self) -> QuietHours:
        if self.start == self.end:
            raise ValueError("start and end are the same time, so the window would never apply; e.g. 22:00 to 07:00")
        return self


class MissedCheckins(_Strict):
    enabled: bool = True
    grace: Duration = dt.timedelta(minutes=30)


class Rules(_Strict):
    version: Literal[1]
    timezone: Annotated[str, AfterValidator(_zone)] = "UTC"
    receivers: dict[Name, Receiver] = Field(min_length=1)
    escalation_policies: dict[Name, Policy] = Field(min_length=1)
    routes: Route
    inhibit: list[Inhibit] = []
    silences: list[Silence] = []
    quiet_hours: list[QuietHours] = []
    missed_checkins: MissedCheckins = MissedCheckins()


AddressCheck = Callable[[str], str | None]  # a contact's `to` -> why it cannot be used (no address), or None


def check_references(doc: Any, channels: Mapping[str, AddressCheck] | None = None) -> list[tuple[Path, str]]:
    """Cross-reference errors a single field cannot see, each with its path.

    Works on the raw document (not the validated model), so these errors are reported together
    with field errors; parts that are malformed are skipped here (the model reports them).
    ``channels``: configured channel name -> its kind's address rule; when given, every contact must
    use one of them, and its ``to`` must pass that channel's rule (the message never quotes ``to``).
    """
    errors: list[tuple[Path, str]] = []
    d = doc if isinstance(doc, dict) else {}
    receivers = d.get("receivers") if isinstance(d.get("receivers"), dict) else {}
    policies = d.get("escalation_policies") if isinstance(d.get("escalation_policies"), dict) else {}

    if channels is not None:
        for rname, rec in receivers.items():
            contacts = rec.get("contacts") if isinstance(rec, dict) and isinstance(rec.get("contacts"), list) else []
            for i, contact in enumerate(contacts):
                ch = contact.get("channel") if isinstance(contact, dict) else None
                if isinstance(ch, str) and ch not in channels:
                    errors.append((("receivers", rname, "contacts", i, "channel"),
                                   f"channel {ch!r} is not configured; configured: {', '.join(sorted(channels)) or 'none'}"))  # fmt: skip
                elif isinstance(ch, str) and isinstance(to := contact.get("to", ""), str) and (problem := channels[ch](to)):
                    errors.append((("receivers", rname, "contacts", i, "to"), f"{problem} (channel {ch!r})"))

    def receiver(path: Path, name: Any, used_as: str) -> None:
        if isinstance(name, str) and name not in receivers:
            errors.append((path, f"undefined receiver {name!r} used as {used_as}; {_defined(receivers)}"))

    for pname, policy in policies.items():
        if not isinstance(policy, dict):
            continue
        steps = policy.get("steps") if isinstance(policy.get("steps"), list) else []
        for i, step in enumerate(steps):
            notify = step.get("notify") if isinstance(step, dict) and isinstance(step.get("notify"), list) else []
            for j, name in enumerate(notify):
                receiver(("escalation_policies", pname, "steps", i, "notify", j), name, f"step {i + 1} of policy {pname!r}")
        receiver(("escalation_policies", pname, "failsafe"), policy.get("failsafe"), f"failsafe of policy {pname!r}")

    root = d.get("routes")
    if not isinstance(root, dict):
        return errors
    if root.get("match") or root.get("match_any"):
        errors.append((("routes", "match" if root.get("match") else "match_any"), "the root route is the catch-all: it must not have matchers"))
    if root.get("policy") is None:
        errors.append((("routes",), "the root route (catch-all) needs a policy: every alert must reach a human"))
    if root.get("page") is False:
        errors.append((("routes", "page"), "the root route (catch-all) must page"))
    if root.get("continue"):
        errors.append((("routes", "continue"), "the root route cannot 'continue': it has no siblings"))

    def walk(route: dict, path: Path) -> None:
        policy = route.get("policy")
        if isinstance(policy, str) and policy not in policies:
            errors.append((path + ("policy",), f"undefined policy {policy!r}; {_defined(policies)}"))
        notify = route.get("notify") if isinstance(route.get("notify"), list) else []
        for j, name in enumerate(notify):
            receiver(path + ("notify", j), name, "route notify")
        children = route.get("routes") if isinstance(route.get("routes"), list) else []
        for i, child in enumerate(children):
            if isinstance(child, dict):
                walk(child, path + ("routes", i))

    walk(root, ("routes",))
    return errors + route_tree_errors(root)


def _defined(names: dict[str, Any]) -> str:
    return f"defined: {', '.join(sorted(names))}" if names else "none defined"
