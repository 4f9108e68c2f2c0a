"""Fault tests with real worker and scheduler processes, real Redis and real databases.

Each test runs `python -m worker.cli worker|scheduler` as child processes (worker.services), so
what is killed, cut or restarted is the real thing.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import redis as redis_lib
from sqlalchemy import func, select

from tests.integration.helpers import checkin, febrile, hypotensive, wait_for
from tests.integration.tcpproxy import TcpProxy
from worker.intake import backlog, submit
from worker.redis_bootstrap import start_private
from worker.services import Services
from worker.settings import load_settings
from worker.store import repo
from worker.store.db import make_engine, session_factory, upgrade
from worker.store.models import EvaluationRow


def _workload(n: int, patients: int = 30) -> list[dict]:
    out = []
    for i in range(n):
        pid = f"P-{i % patients:03d}"
        maker = (checkin, febrile, hypotensive)[i % 3]
        out.append(maker(f"k-{i:05d}", pid, minutes=i))
    return out


def _counts(sessions) -> dict[str, int]:
    with sessions() as s:
        return repo.counts(s)


def _settings(env: dict[str, str]):
    return load_settings(redis_url=env["REDIS_URL"], database_url=env["DATABASE_URL"], namespace=env["CRS_NAMESPACE"])


def test_kill_9_worker_mid_batch_then_restart_every_checkin_evaluated_exactly_once(db_url, service_env, tmp_path):
    engine = make_engine(db_url)
    upgrade(engine)
    sessions = session_factory(engine)
    env = service_env(db_url)
    s = _settings(env)
    r = redis_lib.Redis.from_url(env["REDIS_URL"])
    n = 4000
    submit(r, s.stream_name, _workload(n), group=s.group)
    scheduler = Services(env, components=("scheduler",), log_path=tmp_path / "scheduler.log").start()
    workers: list[Services] = []
    kills = 0
    try:
        for attempt in range(6):  # until a kill lands while a batch is in flight (almost always the first)
            worker = Services(env, components=("worker",), log_path=tmp_path / f"worker{attempt}.log").start()
            workers.append(worker)
            start = _counts(sessions)["evaluated"]
            wait_for(lambda: _counts(sessions)["evaluated"] >= start + 200, 60, what="the worker to make progress")
            wait_for(lambda: backlog(r, s.stream_name, s.group)["pending"] > 0, 10, interval=0.01, what="a batch in flight")
            os.killpg(worker.procs["worker"].pid, signal.SIGKILL)  # the worker and its pool children
            worker.procs["worker"].wait()
            time.sleep(0.3)
            at_kill = _counts(sessions)
            assert at_kill["evaluated"] < n, "the kill came after the end; raise n"
            # nothing acknowledged that is not committed: every entry gone from the stream is stored
            assert n - r.xlen(s.stream_name) <= at_kill["received"]
            if backlog(r, s.stream_name, s.group)["pending"] > 0:  # the dead worker left entries mid-batch
                kills += 1
                break
        assert kills == 1, "no kill landed in the middle of a batch"
        workers.append(Services(env, components=("worker",), log_path=tmp_path / "worker-final.log").start())
        wait_for(lambda: _counts(sessions)["evaluated"] >= n and backlog(r, s.stream_name, s.group) == {"pending": 0, "lag": 0},
                 120, interval=0.5, what="every check-in to be evaluated after the restart")
    finally:
        scheduler.stop()
        for w in workers:
            w.stop()
    c = _counts(sessions)
    assert (c["evaluated"], c["checkins"], c["rejected"], c["duplicates"]) == (n, n, 0, 0)
    with sessions() as session:
        assert session.scalar(select(func.count(func.distinct(EvaluationRow.checkin_id)))) == n
        transitions = repo.transitions(session)
    firsts = [t.patient_id for t in transitions if "first" in t.kinds]
    assert sorted(firsts) == sorted({f"P-{i:03d}" for i in range(30)})  # one "first" per patient, never two
    assert r.xlen(s.stream_name) == 0
    engine.dispose()


def test_database_down_during_drain_nothing_acknowledged_then_all_processed(pg_url, service_env, tmp_path):
    """PostgreSQL "goes down" for the worker (a TCP proxy between them is cut, resetting every
    connection mid-transaction) while a large backlog drains; the shared server keeps running."""
    engine = make_engine(pg_url)
    upgrade(engine)
    sessions = session_factory(engine)
    proxy = TcpProxy("127.0.0.1", 5432).start()
    worker_url = pg_url.replace("@127.0.0.1:5432/", f"@127.0.0.1:{proxy.port}/")
    env = service_env(worker_url)
    s = _settings(env)
    r = redis_lib.Redis.from_url(env["REDIS_URL"])
    n = 2000
    services = Services(env, log_path=tmp_path / "services.log").start()
    try:
        submit(r, s.stream_name, _workload(n), group=s.group)
        wait_for(lambda: _counts(sessions)["evaluated"] >= 200, 60, what="progress before the outage")
        proxy.stop()  # database down, in the middle of the drain
        time.sleep(0.5)
        down = _counts(sessions)
        assert down["evaluated"] < n
        time.sleep(4)  # ticks keep coming; every drain must fail without acknowledging anything
        still = _counts(sessions)
        assert still == down, "nothing can be committed while the database is down"
        assert n - r.xlen(s.stream_name) <= still["received"], "an entry was acknowledged without being committed"
        proxy.start()  # back up
        wait_for(lambda: _counts(sessions)["evaluated"] >= n and backlog(r, s.stream_name, s.group) == {"pending": 0, "lag": 0},
                 120, interval=0.5, what="everything to be processed once the database is back")
    finally:
        services.stop()
        proxy.stop()
    c = _counts(sessions)
    assert (c["evaluated"], c["checkins"], c["rejected"], c["duplicates"]) == (n, n, 0, 0)
    engine.dispose()


def test_redis_restart_worker_and_scheduler_reconnect(sqlite_url, service_env, tmp_path):
    """A PRIVATE redis-server (never the shared one) is shut down and started again on the same
    port with the same AOF directory; the worker and scheduler carry on (reconnecting, or started
    again by the supervision of `crs-alert run`) and nothing submitted is lost."""
    handle = start_private(tmp_path / "redis-data")
    port = int(handle.url.rsplit(":", 1)[1].split("/")[0])
    engine = make_engine(sqlite_url)
    upgrade(engine)
    sessions = session_factory(engine)
    env = service_env(sqlite_url, redis_url=handle.url)
    s = _settings(env)
    services = Services(env, log_path=tmp_path / "services.log").start()
    try:
        r = redis_lib.Redis.from_url(handle.url)
        submit(r, s.stream_name, [febrile(f"a-{i}", f"P-{i}") for i in range(20)], group=s.group)
        wait_for(lambda: _counts(sessions)["evaluated"] == 20, 60, what="the first 20 check-ins")
        handle.stop()  # SHUTDOWN: clients see their connections drop
        time.sleep(2)
        handle = start_private(tmp_path / "redis-data", port=port)
        r = redis_lib.Redis.from_url(handle.url)
        submit(r, s.stream_name, [febrile(f"b-{i}", f"P-{i}", minutes=10) for i in range(20)], group=s.group)
        restarted: dict[str, int] = {}

        def resumed() -> bool:
            # What `crs-alert run` does every 0.5 s (a container restart policy does the same):
            # kombu's Redis transport sometimes dies of an unrecoverable error when the broker
            # connection drops while a task is in flight; the process is then started again.
            again, given_up = services.revive()
            restarted.update(again)
            assert not given_up, given_up
            return _counts(sessions)["evaluated"] == 40

        wait_for(resumed, 90, interval=0.5, what="the worker to reconnect (or be restarted) and process the next 20")
        assert not services.dead()
        assert set(restarted) <= {"worker", "scheduler"}
    finally:
        services.stop()
        handle.stop()
    assert _counts(sessions)["evaluated"] == 40
    engine.dispose()


def _origins(r, key: str) -> list[int]:
    pids = []
    for raw in r.lrange(key, 0, -1):
        origin = json.loads(raw)["headers"]["origin"]  # "gen<pid>@<host>"
        pids.append(int(origin.split("@")[0].removeprefix("gen")))
    return pids


def test_scheduler_failover_standby_takes_over_within_seconds(sqlite_url, service_env, tmp_path):
    env = service_env(sqlite_url, CRS_DRAIN_INTERVAL_S="0.3", CRS_SCHEDULER_LOCK_TIMEOUT_S="3")
    s = _settings(env)
    r = redis_lib.Redis.from_url(env["REDIS_URL"])
    queue_key = f"{s.celery_key_prefix}{s.celery_queue}"  # no worker: ticks pile up where we can read them
    a = Services(env, components=("scheduler",), log_path=tmp_path / "a.log").start()
    time.sleep(0.5)
    b = Services(env, components=("scheduler",), log_path=tmp_path / "b.log").start()
    try:
        leader = wait_for(lambda: r.get(s.leader_key), 20, what="a leader").decode()
        leader_pid = int(leader.rsplit(":", 1)[1])
        pids = {a.procs["scheduler"].pid: a, b.procs["scheduler"].pid: b}
        assert leader_pid in pids
        standby_pid = next(p for p in pids if p != leader_pid)
        time.sleep(3)  # both running: only the leader sends ticks
        origins = _origins(r, queue_key)
        assert len(origins) >= 5 and set(origins) == {leader_pid}

        os.killpg(leader_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: r.get(s.leader_key) == f"{leader.rsplit(':', 1)[0]}:{standby_pid}".encode(), 15,
                 interval=0.05, what="the standby to take the lock")
        takeover = time.monotonic() - killed_at
        assert takeover < s.scheduler_lock_timeout_s + 2
        r.delete(queue_key)
        wait_for(lambda: standby_pid in _origins(r, queue_key), 5, what="ticks from the new leader")
        assert set(_origins(r, queue_key)) == {standby_pid}
    finally:
        a.stop()
        b.stop()
