"""`crs-alert health`: exit 0 when a component is healthy, 1 with a one-line reason otherwise.

Used by compose healthchecks. Components:

* ``redis``: PING on REDIS_URL, 2 s timeout, no retries;
* ``db``: ``SELECT 1`` on DATABASE_URL (a missing SQLite file is unhealthy, never created);
* ``worker`` / ``scheduler``: Redis reachable and this instance's heartbeat (worker.heartbeat)
  younger than ``--max-age`` seconds;
* ``delivery``: pages can reach people. Unhealthy when a channel of the channels file cannot be
  built (a missing secret, a bad option: the reason names the channel and the variable, never a
  value), when a page reached nobody in the last ``--window`` seconds (audit
  ``delivery.unreachable``: its notification dead-lettered and no failsafe contact on another
  channel was left), or when a due notification has waited longer than ``--max-age`` seconds
  (default 120: the dispatcher is not running or cannot keep up). For monitoring: restarting a
  container does not fix any of these, so compose does not use it as a healthcheck.

Without ``--component`` both ``redis`` and ``db`` are checked.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from collections.abc import Callable

from worker import heartbeat

DEFAULT_REDIS_URL = "redis://localhost:6379/0"
TIMEOUT_S = 2.0

Result = tuple[bool, str]


def _one_line(exc: BaseException) -> str:
    from worker.logs import scrub  # strips URL credentials, e-mails and phone numbers

    text = " ".join(str(exc).split()) or "no detail"
    return f"{type(exc).__name__}: {scrub(text)[:300]}"


class _Config:
    """The three settings health needs, from worker.settings (the same source as the services)."""

    def __init__(self) -> None:
        from worker.settings import load_settings

        settings = load_settings()
        self.redis_url = settings.redis_url or DEFAULT_REDIS_URL
        self.database_url = settings.sqlalchemy_url
        self.namespace = settings.namespace
        self.channels_path = settings.channels_path


def _redis_client(url: str):
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        url,
        socket_timeout=TIMEOUT_S,
        socket_connect_timeout=TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )


def check_redis(url: str) -> Result:
    client = _redis_client(url)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy"
        return False, f"redis PING failed: {_one_line(exc)}"
    finally:
        client.close()
    return True, "redis PING ok"


def check_db(url: str) -> Result:
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except Exception as exc:  # noqa: BLE001
        return False, f"invalid DATABASE_URL: {type(exc).__name__}"
    connect_args: dict[str, object] = {}
    if parsed.get_backend_name() == "sqlite":
        path = parsed.database
        if path and path != ":memory:" and not os.path.exists(path):
            return False, f"sqlite database file not found: {path}"
        connect_args["timeout"] = TIMEOUT_S
    elif parsed.get_backend_name() == "postgresql":
        connect_args["connect_timeout"] = int(TIMEOUT_S)
    engine = sa.create_engine(parsed, connect_args=connect_args, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1")).scalar_one()
    except Exception as exc:  # noqa: BLE001
        return False, f"database SELECT 1 failed: {_one_line(exc)}"
    finally:
        engine.dispose()
    return True, f"database SELECT 1 ok ({parsed.get_backend_name()})"


def check_heartbeat(
    url: str,
    component: str,
    max_age_s: float,
    instance: str | None = None,
    now: float | None = None,
    namespace: str = heartbeat.DEFAULT_NAMESPACE,
) -> Result:
    client = _redis_client(url)
    key = heartbeat.heartbeat_key(component, instance, namespace)
    try:
        age = heartbeat.heartbeat_age(client, component, now, instance, namespace)
    except Exception as exc:  # noqa: BLE001
        return False, f"redis unreachable while reading {component} heartbeat: {_one_line(exc)}"
    finally:
        client.close()
    if age is None:
        return False, f"no {component} heartbeat at {key}"
    if age > max_age_s:
        return False, f"{component} heartbeat stale: {age:.0f}s old (max {max_age_s:.0f}s) at {key}"
    return True, f"{component} heartbeat {age:.0f}s old"


DELIVERY_MAX_DUE_S = 120.0
DELIVERY_WINDOW_S = 900.0


def check_delivery(database_url: str, channels_path: str | None, *, max_due_s: float = DELIVERY_MAX_DUE_S,
                   window_s: float = DELIVERY_WINDOW_S, now: dt.datetime | None = None) -> Result:
    import sqlalchemy as sa

    from worker.runtime import build_channels_from_file
    from worker.store.alert_tables import Notification
    from worker.store.models import AuditEntry

    now = now or dt.datetime.now(dt.UTC)
    try:
        channels, problems, _ = build_channels_from_file(channels_path)
    except Exception as exc:  # noqa: BLE001 - an unreadable file is a reason, not a crash
        return False, f"channels file {channels_path!r} unreadable: {_one_line(exc)}"
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return False, f"delivery impaired: {problems[0]}{more}"
    if not channels:
        return False, f"no channel configured in {channels_path!r}: nothing can be delivered"
    ok, message = check_db(database_url)
    if not ok:
        return ok, message
    engine = sa.create_engine(database_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            unreachable = conn.execute(
                sa.select(sa.func.count(), sa.func.max(AuditEntry.at)).where(
                    AuditEntry.action == "delivery.unreachable", AuditEntry.at >= now - dt.timedelta(seconds=window_s))
            ).one()
            oldest_due = conn.scalar(sa.select(sa.func.min(Notification.next_attempt_at)).where(
                Notification.status == "pending", Notification.next_attempt_at <= now))
    except Exception as exc:  # noqa: BLE001
        return False, f"delivery query failed: {_one_line(exc)}"
    finally:
        engine.dispose()
    if unreachable[0]:
        return False, (f"{unreachable[0]} page(s) reached nobody in the last {window_s:.0f}s (audit delivery.unreachable; "
                       f"latest at {unreachable[1]:%Y-%m-%dT%H:%M:%SZ}): see crs-alert alerts list")
    if oldest_due is not None:
        waited = (now - _aware(oldest_due)).total_seconds()
        if waited > max_due_s:
            return False, f"a due notification has waited {waited:.0f}s (max {max_due_s:.0f}s): is the dispatcher running?"
    return True, f"delivery ok: {len(channels)} channel(s) usable, no undeliverable page in the last {window_s:.0f}s, outbox current"


def _aware(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value


def check(component: str | None, max_age_s: float | None = None, instance: str | None = None,
          window_s: float | None = None) -> Result:
    try:
        config = _Config()
    except Exception as exc:  # noqa: BLE001 - SettingsError names the variables, never secrets
        return False, f"settings: {_one_line(exc)}"
    if component in heartbeat.COMPONENTS:
        limit = max_age_s if max_age_s is not None else heartbeat.DEFAULT_MAX_AGE_S[component]
        return check_heartbeat(config.redis_url, component, limit, instance, namespace=config.namespace)
    if component == "delivery":
        return check_delivery(config.database_url, config.channels_path,
                              max_due_s=DELIVERY_MAX_DUE_S if max_age_s is None else max_age_s,
                              window_s=DELIVERY_WINDOW_S if window_s is None else window_s)
    checks: list[Callable[[], Result]] = []
    if component in (None, "redis"):
        checks.append(lambda: check_redis(config.redis_url))
    if component in (None, "db"):
        checks.append(lambda: check_db(config.database_url))
    if not checks:
        return False, f"unknown component {component!r}"
    messages = []
    for run_check in checks:
        ok, message = run_check()
        if not ok:
            return False, message
        messages.append(message)
    return True, "; ".join(messages)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    ok, message = check(args.component, args.max_age, args.instance, args.window)
    elapsed_ms = (time.monotonic() - started) * 1000
    if ok:
        print(f"healthy: {message} ({elapsed_ms:.0f} ms)")
        return 0
    print(f"unhealthy: {message}", file=sys.stderr)
    return 1


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "health",
        help="exit 0 if a component is healthy, else 1 with a reason (compose healthchecks)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--component",
        choices=["worker", "scheduler", "redis", "db", "delivery"],
        default=None,
        help="component to check (default: redis and db)",
    )
    parser.add_argument(
        "--max-age",
        type=float,
        default=None,
        metavar="SECONDS",
        help="heartbeat staleness limit for worker/scheduler "
        f"(default: {', '.join(f'{k} {v:g}' for k, v in heartbeat.DEFAULT_MAX_AGE_S.items())}); for delivery, how long a due notification may "
        f"wait (default: {DELIVERY_MAX_DUE_S:.0f})",
    )
    parser.add_argument(
        "--window",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"delivery: how far back an undeliverable page makes it unhealthy (default: {DELIVERY_WINDOW_S:.0f})",
    )
    parser.add_argument(
        "--instance",
        default=None,
        help="heartbeat instance name (default: this host name, i.e. the container id)",
    )
    parser.set_defaults(func=run)
