"""`crs-alert drain`: process what is on the intake stream once, in this process (no Celery), and exit.

Prints the counts as JSON. Before anything is read, the rules, the channels file (CRS_CHANNELS_PATH)
and the contacts are checked together, as at worker start-up.

Exit status:
  0  done; every notification of this run was sent, or is waiting for a retry
  1  done, but at least one notification of this run failed permanently (dead-lettered; the
     failsafe is paged on another channel when one is left): see `crs-alert alerts list`
  2  configuration or usage error (settings, rules, channels file, contacts); nothing was read
  3  the database did not answer (nothing was read or acknowledged then)
"""

from __future__ import annotations

import argparse
import json
import sys

from worker.commands import _common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("drain", help="process the pending check-ins once, in-process, then exit",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget", type=float, default=None, help="stop after this many seconds (default: until empty)")
    p.add_argument("--no-deliver", action="store_true", help="do not deliver the notifications the alerts wrote")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from worker import alert_jobs, gc_tuning, pipeline
    from worker.intake import Consumer
    from worker.store.db import session_factory

    gc_tuning.tune()

    try:
        s = _common.settings()
        _common.configure_logging(s)
        _common.check_rules(s)  # before any check-in is read: a drain that cannot route a page must not open alerts
        engine = _common.store(s)
        handle = _common.redis_handle(s)
        try:
            r = _common.redis_client(handle.url)
            consumer = Consumer(r, s.stream_name, s.group)
            sessions = session_factory(engine)
            alerting = _common.alerting_runtime(s, sessions)
            report = pipeline.drain(r=r, sessions=sessions, settings=s, consumer=consumer,
                                    budget_s=args.budget if args.budget is not None else 10**9,
                                    alerts=lambda session, stored, now: alert_jobs.on_batch(session, stored, now, alerting))
            delivered = None if args.no_deliver else alert_jobs.dispatch(alerting)
        except pipeline.StoreUnavailable as exc:
            print(json.dumps({"error": "database unavailable", "error_type": type(exc).__name__}))
            return 3
        finally:
            handle.stop()
    except _common.CommandError as exc:
        return _common.fail(exc)
    out = report.as_dict()
    if delivered is not None:
        out["notifications_sent"] = delivered.sent
        out["notifications_failed"] = delivered.dead
    print(json.dumps(out))
    if delivered is not None and delivered.dead:
        print(f"crs-alert: {delivered.dead} notification(s) of this run failed permanently (dead-lettered); "
              "see `crs-alert alerts list`", file=sys.stderr)
        return 1
    return 0
