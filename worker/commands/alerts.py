"""`crs-alert alerts list|show|ack|resolve`: see and act on alerts from a terminal.

Acknowledging stops the escalation (the policy's ack timeout pages again if the alert is not
resolved); resolving needs a note. Both are recorded with who did it (``--by``) in the audit log.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json

from worker.commands._common import CommandError, fail, settings, store


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("alerts", help="list, show, acknowledge or resolve alerts")
    a = p.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)
    ls = a.add_parser("list", help="alerts, newest first")
    ls.add_argument("--state", default="open", choices=["open", "triggered", "acknowledged", "resolved", "all"])
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=list_alerts)
    sh = a.add_parser("show", help="one alert with its notifications and history")
    sh.add_argument("ref", help="alert id or code")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=show)
    ack = a.add_parser("ack", help="acknowledge: take responsibility, stop the escalation")
    ack.add_argument("ref", help="alert id or code")
    ack.add_argument("--by", required=True, type=_who, help="who acknowledges (recorded)")
    ack.set_defaults(func=acknowledge)
    res = a.add_parser("resolve", help="resolve (a clinician's decision; a note is required)")
    res.add_argument("ref", help="alert id or code")
    res.add_argument("--by", required=True, type=_who, help="who resolves (recorded)")
    res.add_argument("--note", required=True, help="why it is resolved")
    res.set_defaults(func=resolve)


def _who(value: str) -> str:
    """--by: the audit log must say who acted; an empty or blank name is a usage error (exit 2)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must name who acts (it is recorded in the audit log); got an empty or blank name")
    return value.strip()


def _sessions():  # type: ignore[no-untyped-def]
    from worker.store.db import session_factory

    return session_factory(store(settings(), must_exist=True))  # never creates an empty database


def list_alerts(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from worker.api import alert_json
    from worker.store.alert_tables import OPEN_STATES, Alert

    try:
        sessions = _sessions()
    except CommandError as exc:
        return fail(exc)
    with sessions() as s:
        q = select(Alert).order_by(Alert.id.desc()).limit(200)
        if args.state != "all":
            q = q.where(Alert.state.in_(OPEN_STATES if args.state == "open" else (args.state,)))
        alerts = list(s.scalars(q))
        if args.json:
            print(json.dumps([alert_json(a) for a in alerts], indent=2))
            return 0
        if not alerts:
            print(f"no {args.state} alerts")
            return 0
        print(f"{'id':>5}  {'code':5}  {'state':12}  {'urgency':9}  {'patient':12}  {'condition':14}  {'opened (UTC)':16}  route")
        for a in alerts:
            print(f"{a.id:>5}  {a.code:5}  {a.state:12}  {a.urgency:9}  {a.patient_id:12}  {a.condition:14}  "
                  f"{a.opened_at:%Y-%m-%d %H:%M}  {a.route}")  # fmt: skip
    return 0


def show(args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from worker import alerting
    from worker.api import alert_json
    from worker.store.alert_tables import Notification
    from worker.store.models import AuditEntry

    try:
        sessions = _sessions()
        with sessions() as s:
            a = alerting.find(s, args.ref)
            notes = list(s.scalars(select(Notification).where(Notification.alert_id == a.id).order_by(Notification.id)))
            history = list(s.scalars(select(AuditEntry).where(AuditEntry.subject == f"alert:{a.id}").order_by(AuditEntry.id)))
            data = alert_json(a)
    except CommandError as exc:
        return fail(exc)
    except alerting.AlertError as exc:
        print(f"crs-alert: {exc}")
        return 1
    if args.json:
        data["notifications"] = [{"id": n.id, "event": n.event, "receiver": n.receiver, "channel": n.channel,
                                  "status": n.status, "reason": n.status_reason, "created_at": n.created_at.isoformat()}
                                 for n in notes]  # fmt: skip
        data["history"] = [{"at": h.at.isoformat(), "actor": h.actor, "action": h.action, "detail": h.detail} for h in history]
        print(json.dumps(data, indent=2))
        return 0
    crs = f"{'>=' if data['crs_grade_is_minimum'] else ''}{data['crs_grade']}" if data["crs_grade"] is not None else "-"
    print(f"alert {data['id']} ({data['code']}): {data['state']}, {data['urgency']}, patient {data['patient_id']}, {data['condition']}")
    print(f"  CRS {crs}, ICANS {data['icans_grade'] if data['icans_grade'] is not None else '-'}, "
          f"red flags: {', '.join(data['red_flags']) or 'none'}")  # fmt: skip
    print(f"  route {data['route']}, policy {data['policy']}; opened {data['opened_at']}")
    for reason in data["reasons"]:
        print(f"  - {reason}")
    print("  history:")
    for h in history:
        print(f"    {h.at:%Y-%m-%d %H:%M:%S}  {h.action:20} {h.actor}")
    print("  notifications:")
    for n in notes:
        why = f" ({n.status_reason})" if n.status_reason else ""
        print(f"    {n.created_at:%Y-%m-%d %H:%M:%S}  {n.event:18} {n.receiver:16} {n.channel:12} {n.status}{why}")
    return 0


def acknowledge(args: argparse.Namespace) -> int:
    return _act(args, lambda s, alerting, now: alerting.acknowledge(s, args.ref, actor=f"cli:{args.by}", via="cli", now=now))


def resolve(args: argparse.Namespace) -> int:
    return _act(args, lambda s, alerting, now: alerting.resolve(s, args.ref, actor=f"cli:{args.by}", note=args.note, now=now))


def _act(args: argparse.Namespace, action) -> int:  # type: ignore[no-untyped-def]
    from worker import alerting

    try:
        sessions = _sessions()
        with sessions.begin() as s:
            result = action(s, alerting, dt.datetime.now(dt.UTC))
    except CommandError as exc:
        return fail(exc)
    except alerting.AlertError as exc:
        print(f"crs-alert: {exc}")
        return 1
    verb = "acknowledged" if args.alerts_command == "ack" else "resolved"
    print(f"alert {args.ref}: {verb}" + (" (it already was)" if result is False else ""))
    return 0
