"""`crs-alert rules check [PATH]` and `crs-alert rules test CHECKIN [--rules PATH]`.

- check: validates the whole rules file, and its contacts against the channels file (each contact's
  channel exists, its ``to`` is an address that channel's kind accepts); exit 0 and a summary
  (after any "warning: ..." lines, e.g. an unused receiver), or exit 1 and every error as
  file:line:column. The file holds no secrets by design, and error messages echo no values (names
  and matcher texts only, never addresses).
- test: evaluates each check-in and prints the route taken, the policy, the receivers and their
  contacts, the informational receivers, any silence/quiet-hours effect at --at, and the full
  escalation timeline that would follow if nobody acknowledges (pages a silence would hold back
  are marked as not sent). A malformed --label or --at is a usage error (exit 2).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys

from worker.checkin import IntakeError, parse_checkin
from worker.evaluation import evaluate
from worker.jsonstream import FramingError, documents
from worker.rules import escalation, policy, routing
from worker.rules.loader import LoadedRules, RulesError, load_rules_text
from worker.rules.models import format_duration

DEFAULT_RULES = "config/rules.yaml"
DEFAULT_CHANNELS = "config/channels.yaml"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("rules", help="check the admin rules file, or show what a check-in would trigger")
    rsub = p.add_subparsers(dest="rules_command", metavar="ACTION", required=True)
    c = rsub.add_parser("check", help="validate a rules file (exit 0, or 1 with every error as file:line)")
    c.add_argument("path", nargs="?", default=None, help=f"rules file (default: $CRS_RULES_PATH or {DEFAULT_RULES})")
    c.add_argument("--channels", default=None,
                   help=f"channels file the contacts (channel and address) must match (default: $CRS_CHANNELS_PATH, "
                        f"else {DEFAULT_CHANNELS} if it exists, else skipped with a warning; a named file that does not "
                        "exist is an error; 'none' skips the check)")  # fmt: skip
    c.add_argument("--templates", default=None, help="message templates directory to validate too (default: $CRS_TEMPLATES_DIR)")
    c.set_defaults(func=check)
    t = rsub.add_parser("test", help="evaluate check-ins and print route, receivers and escalation timeline")
    t.add_argument("checkins", metavar="CHECKIN", help='a check-in file (JSON object, array or JSON Lines), or "-"')
    t.add_argument("--rules", default=None, help=f"rules file (default: $CRS_RULES_PATH or {DEFAULT_RULES})")
    t.add_argument("--unit", default=None, help="the patient's unit, for unit matchers")
    t.add_argument("--label", action="append", default=[], type=_label, metavar="KEY=VALUE", help="a patient label (repeatable)")
    t.add_argument("--at", default=None, type=_instant,
                   help="time the alert opens (RFC 3339 with a UTC offset; default: now), for quiet hours and silences")
    t.set_defaults(func=test)


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (e.g. --label trial=ZUMA-7)")
    return key, value


def _instant(text: str) -> dt.datetime:
    try:
        at = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an RFC 3339 time, e.g. 2026-11-25T09:00:00Z") from None
    if at.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a UTC offset, e.g. 2026-11-25T09:00:00Z")
    return at


def rules_path(given: str | None) -> str:
    return given or os.environ.get("CRS_RULES_PATH") or DEFAULT_RULES


def read_rules(path: str) -> LoadedRules:
    """Load a rules file; raises RulesError (with positions) or OSError."""
    with open(path, encoding="utf-8") as fh:
        return load_rules_text(fh.read(), path)


def channel_checks(given: str | None) -> tuple[dict | None, list[str], str | None]:
    """(channel name -> address rule, or None when not checked; errors of the channels file; its path).

    --channels, else CRS_CHANNELS_PATH: that file must exist and be valid. Neither given: the default
    file when it exists; otherwise the check is skipped, with a warning on stderr. 'none' skips it.
    """
    from worker.channels.config_file import FILE, address_checks, read_channels_file

    path = given or os.environ.get("CRS_CHANNELS_PATH")
    if path == "none":
        return None, [], None
    if path is None:
        if not os.path.exists(DEFAULT_CHANNELS):
            print(f"warning: no channels file (--channels, CRS_CHANNELS_PATH, {DEFAULT_CHANNELS}): "
                  "contacts were not checked against channels", file=sys.stderr)  # fmt: skip
            return None, [], None
        path = DEFAULT_CHANNELS
    loaded = read_channels_file(path)
    if FILE in loaded.problems and not loaded.specs:  # unreadable or not a channels file: no names to check
        return None, loaded.errors, path
    return address_checks(loaded), loaded.errors, path


def check(args: argparse.Namespace) -> int:
    path = rules_path(args.path)
    channels, channel_errors, channels_path = channel_checks(args.channels)
    try:
        with open(path, encoding="utf-8") as fh:
            loaded = load_rules_text(fh.read(), path, channels)
    except OSError as exc:
        print(f"{path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except RulesError as exc:
        for err in [*exc.errors, *channel_errors]:
            print(err)
        print(f"{path}: {len(exc.errors) + len(channel_errors)} error(s); the file was not accepted", file=sys.stderr)
        return 1
    from worker.commands._common import template_problems

    channel_errors += template_problems(args.templates or os.environ.get("CRS_TEMPLATES_DIR"))
    if channel_errors:
        print("\n".join(channel_errors))
        print(f"{len(channel_errors)} error(s) in the channels or templates", file=sys.stderr)
        return 1
    for warning in loaded.warnings:
        print(f"warning: {warning}")
    r = loaded.rules
    routes = _count_routes(r.routes)
    print(f"{path}: OK (sha256 {loaded.sha256[:12]}; {len(r.receivers)} receivers, "
          f"{len(r.escalation_policies)} escalation policies, {routes} routes, {len(r.silences)} silences"
          f"{'; channels checked against ' + channels_path if channels_path else '; channels not checked'})")  # fmt: skip
    return 0


def _count_routes(route) -> int:  # type: ignore[no-untyped-def]
    return 1 + sum(_count_routes(c) for c in route.routes)


def test(args: argparse.Namespace) -> int:
    path = rules_path(args.rules)
    try:
        loaded = read_rules(path)
        data = sys.stdin.buffer.read() if args.checkins == "-" else open(args.checkins, "rb").read()  # noqa: SIM115
    except OSError as exc:
        print(f"cannot read: {exc.strerror or exc} ({exc.filename})", file=sys.stderr)
        return 2
    except RulesError as exc:
        print(exc, file=sys.stderr)
        return 1
    labels = dict(args.label)
    at = args.at or dt.datetime.now(dt.UTC)
    status = 0
    try:
        for doc in documents(data):
            value = doc.value.get("checkin", doc.value) if isinstance(doc.value, dict) and "checkin_id" not in doc.value else doc.value
            try:
                if doc.error:
                    raise IntakeError([], None)
                checkin = parse_checkin(value)
            except IntakeError as exc:
                print(f"check-in {doc.number}: invalid: {doc.error or exc}")
                status = 1
                continue
            _explain(evaluate(checkin), loaded, args.unit, labels, at)
    except FramingError as exc:
        print(f"{args.checkins}: {exc}", file=sys.stderr)
        return 2
    return status


def _explain(e, loaded: LoadedRules, unit: str | None, labels: dict[str, str], at: dt.datetime) -> None:  # type: ignore[no-untyped-def]
    rules = loaded.rules
    subj = policy.subject(e, unit=unit, labels=labels)
    d = routing.decide(rules.routes, subj)
    out = sys.stdout.write
    crs = f"{'>=' if e.crs_grade_is_minimum else ''}{e.crs_grade}"
    icans = e.icans_grade if e.icans_grade is not None else f"null (>= {e.icans_floor})"
    out(f"check-in {e.checkin_id} (patient {e.patient_id})\n")
    out(f"  evaluation: CRS {crs}, ICANS {icans}, NEWS2 {e.news2 if e.news2 is not None else '-'}, "
        f"urgency {e.urgency.value}, red flags: {', '.join(e.red_flags) or 'none'}\n")  # fmt: skip
    out(f"  route: {' -> '.join(['(root)', *('/'.join(m.path) for m in d.routes if m.path)])}\n")
    if d.guard:
        out(f"  guard: {d.guard}\n")
    if d.notify:
        out(f"  informational: {', '.join(d.notify)}\n")
    if not d.page:
        out("  paging: none (the route does not page; the evaluation is recorded)\n\n")
        return
    if (s := policy.silenced_by(subj, at, rules.silences)) is not None:
        out(f"  NOTE: silenced by {s.id} until {s.ends.isoformat()} ({s.reason}): no pages go out while it holds\n")
    if (until := policy.quiet_until(subj, at, rules.timezone, rules.quiet_hours)) is not None:
        out(f"  NOTE: quiet hours: pages deferred until {until.isoformat()}; the escalation starts then\n")
    pol = rules.escalation_policies[d.policy]
    out(f"  policy: {d.policy} (acknowledged but unresolved pages again after {format_duration(pol.ack_timeout)})\n")
    out("  timeline if nobody acknowledges:\n")
    for page in escalation.first_pages(pol, until or at, failsafe_repeats=1):  # as worker.alerting starts it
        offset = int((page.at - at).total_seconds())
        label = "failsafe" if page.kind == "failsafe" else f"step {page.step + 1}{' repeat ' + str(page.repeat) if page.repeat else ''}"
        contacts = "; ".join(f"{n}: " + ", ".join(f"{c.channel}{' ' + c.to if c.to else ''}" for c in rules.receivers[n].contacts)
                             for n in page.receivers)  # fmt: skip
        held = " (silenced: not sent)" if policy.silenced_by(subj, page.at, rules.silences) else ""
        out(f"    +{offset // 60:>4}m  {label:<16} {contacts}{held}\n")
    out("    ... (the failsafe repeats every " + f"{format_duration(pol.failsafe_repeat_every)} until someone acknowledges)\n\n")
