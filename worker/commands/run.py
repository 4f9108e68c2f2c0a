"""`crs-alert worker`, `crs-alert scheduler` and `crs-alert run` (both, for one machine).

All three find Redis the same way (REDIS_URL, else localhost:6379, else a private redis-server
under CRS_VAR_DIR) and migrate the embedded SQLite database on start.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading

from worker.commands import _common


def register(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser("worker", help="run a Celery worker that drains the intake queue")
    w.add_argument("--concurrency", type=int, default=None, help="worker processes (default CRS_WORKER_CONCURRENCY)")
    w.add_argument("--pool", default="prefork", choices=["prefork", "solo", "threads"])
    w.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus /metrics on this port")
    w.set_defaults(func=worker)
    s = sub.add_parser("scheduler", help="run the scheduler (leader-locked; a second one stands by)")
    s.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus /metrics on this port")
    s.set_defaults(func=scheduler)
    r = sub.add_parser("run", help="run a worker and the scheduler together (one machine); Ctrl-C stops both")
    r.set_defaults(func=run)


def _prepare():  # type: ignore[no-untyped-def]
    s = _common.settings()
    _common.configure_logging(s)  # first: the start-up check logs channels with a missing secret
    _common.check_rules(s)  # a worker that cannot route a page (rules, channels file, contacts) must not start
    # exports REDIS_URL before the Celery app is imported; a service waits for Redis (Celery and
    # the scheduler retry) rather than exit when it is not up yet
    handle = _common.redis_handle(s, check=False)
    _common.store(s)
    return s, handle


def worker(args: argparse.Namespace) -> int:
    try:
        s, handle = _prepare()
    except _common.CommandError as exc:
        return _common.fail(exc)
    from worker import metrics
    from worker.celery_app import app

    metrics.install_celery_metrics(args.metrics_port)
    argv = ["worker", "--loglevel", s.log_level.upper(), "-Q", s.celery_queue, "--pool", args.pool,
            "-c", str(args.concurrency or s.worker_concurrency), "-n", f"crs-{os.getpid()}@%h", "--without-gossip",
            "--without-mingle"]
    try:
        app.worker_main(argv)
    finally:
        handle.stop()
    return 0


def scheduler(args: argparse.Namespace) -> int:
    try:
        s, handle = _prepare()
    except _common.CommandError as exc:
        return _common.fail(exc)
    from worker import metrics
    from worker.celery_app import app
    from worker.scheduler import Scheduler, install_stop_signals, queue_gauges

    r = _common.redis_client(handle.url)
    stop = threading.Event()
    restore = install_stop_signals(stop)
    metrics.register_queue_collector(queue_gauges(r, s))
    server = metrics.serve(args.metrics_port) if args.metrics_port else None
    try:
        Scheduler(s, r, app, stop).run()
    finally:
        restore()
        if server is not None:
            server.shutdown()
        handle.stop()
    return 0


def run(args: argparse.Namespace) -> int:
    from worker.services import MAX_RESTARTS, RESTART_WINDOW_S, Services

    try:
        s, handle = _prepare()
    except _common.CommandError as exc:
        return _common.fail(exc)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    services = Services(os.environ).start()
    print(f"crs-alert: worker pid {services.procs['worker'].pid}, scheduler pid {services.procs['scheduler'].pid}, "
          f"redis {handle.source}; Ctrl-C stops both", flush=True)
    status = 0
    try:
        while not stop.wait(0.5):
            restarted, given_up = services.revive()
            for name, code in restarted.items():
                print(f"crs-alert: {name} exited unexpectedly (exit {code}); started again, pid "
                      f"{services.procs[name].pid}", flush=True)
            if given_up:
                print(f"crs-alert: {', '.join(given_up)} keeps exiting ({MAX_RESTARTS} restarts within "
                      f"{RESTART_WINDOW_S:.0f} s); stopping", flush=True)
                status = 1
                break
    finally:
        codes = services.stop()
        handle.stop()
    print(f"crs-alert: stopped ({', '.join(f'{k} {v}' for k, v in codes.items())})", flush=True)
    return status
