"""`crs-alert status [--json]`: counts (received, evaluated, rejected, duplicates, pending) and
each patient's latest evaluation. ``pending`` is null when Redis cannot be reached."""

from __future__ import annotations

import argparse
import json

from worker.commands import _common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="counts and the latest evaluation of each patient")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--latest", type=int, default=20, help="how many patients to list (default 20)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import redis

    from worker import summary
    from worker.intake import backlog
    from worker.store.db import session_factory

    try:
        s = _common.settings()
        engine = _common.store(s, must_exist=True)
        back = None
        url = s.redis_url
        if not url:
            from worker.redis_bootstrap import LOCAL_URL, answers

            port_file = s.var_dir / "redis" / "redis.port"
            candidates = [LOCAL_URL] + ([f"redis://127.0.0.1:{port_file.read_text().strip()}/0"] if port_file.exists() else [])
            url = next((u for u in candidates if answers(u)), None)
        if url:
            try:
                back = backlog(redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=2), s.stream_name, s.group)
            except redis.RedisError:
                back = None
        with session_factory(engine)() as session:
            st = summary.status(session, back, latest=args.latest)
    except _common.CommandError as exc:
        return _common.fail(exc)
    print(json.dumps(st, indent=None if args.json else 2) if args.json else summary.render_status(st))
    return 0
