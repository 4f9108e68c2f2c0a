#!/usr/bin/env python3
"""End-to-end intake throughput: submit N check-ins, drain them until committed (issue 3, item 9).

Modes, all in one run, over the same N distinct check-ins (bench_evaluate.make_payloads: ~80 %
normal, ~12 % febrile, ~5 % grade 2-3, ~3 % emergencies; recorded_at rewritten to a realistic,
chronological sequence ending just before the run; about 60 % of the 5,000 patients enrolled, and
most check-ins of enrolled patients omit age/therapy so the enrollment context is really used):

1. raw      - the same N messages XADDed to a private stream; one process does XREADGROUP
              COUNT=batch + json.loads per message + one XACK per batch until drained.
2. pipeline - worker.intake.submit() then worker.pipeline.drain() (the call the Celery task makes)
              in THIS process until every check-in is committed; per backend (PostgreSQL, SQLite).
3. celery   - the same, but through the real ``crs.drain_checkins`` task run by a Celery worker
              subprocess (prefork, concurrency 1): time from sending the task to its heartbeat.
4. naive    - one Celery task per check-in (the task is defined below, ``naive_checkin``): it
              parses, evaluates and commits ONE check-in in its own transaction (it calls
              worker.pipeline.process on a one-entry list, i.e. the same store logic), run by a
              Celery worker subprocess (prefork, concurrency 1) on a private Redis queue.
              Rate = (committed - 1) / (last evaluated_at - first evaluated_at), so the worker's
              start-up is not counted; the queue is filled before the worker starts.

Every mode verifies afterwards that its database holds exactly the expected number of check-ins
and evaluations (no rejected input, no duplicate, nothing pending in Redis) and exits non-zero if
not. Each mode uses its own scratch PostgreSQL database ``crs_bench_<random>_<mode>`` (dropped at
the end) or SQLite file (temp dir), and its own Redis namespace ``crsbench-<random>-<mode>``
(keys deleted at the end; nothing is flushed).

usage: .venv/bin/python bench/bench_pipeline.py [--n 20000] [--batch 1000]
           [--backends postgresql,sqlite] [--naive-n 2000] [--no-celery] [--no-naive]
           [--profile FILE]   (cProfile around the pipeline drain on the first backend)
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import json
import os
import platform
import pstats
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import psycopg  # noqa: E402
import redis  # noqa: E402
from celery import Celery  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

from worker.celery_app import celery_config  # noqa: E402
from worker.settings import Settings, load_settings  # noqa: E402
from worker.store.db import make_engine, session_factory  # noqa: E402

REDIS_URL = os.environ.get("CRS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
PAYLOAD_FIELD = b"checkin"
GOAL_RATE = 10_000
DEFAULT_BATCH = Settings.model_fields["batch_size"].default  # what the worker runs with unless CRS_BATCH_SIZE says otherwise
GOAL_SPEEDUP = 20.0

# Long budgets so a single drain() call is never cut by its time budget (cross-checks in Settings).
TIMINGS = dict(drain_budget_s=3000, task_soft_time_limit_s=3100, task_time_limit_s=3200, visibility_timeout_s=3300,
               claim_min_idle_s=3500)


# -- the naive design: one Celery task per check-in ----------------------------------------------
# Imported by the worker subprocess as ``bench_pipeline`` (cwd/PYTHONPATH = bench/), configured from
# the environment the benchmark gives it. Same Celery settings as the project (acks_late, prefetch 1).

def _naive_app() -> Celery:
    settings = load_settings(**TIMINGS)
    app = Celery("crs_bench_naive")
    conf = celery_config(settings, settings.redis_url or REDIS_URL)
    conf.update(include=[], worker_concurrency=1)
    app.conf.update(conf)
    return app


naive_app = _naive_app()
NAIVE_TASK = "crs_bench.naive_checkin"
_naive_rt: dict = {}


@naive_app.task(name=NAIVE_TASK, ignore_result=True)
def naive_checkin(stream_id: str, payload: str) -> int:
    """Parse, evaluate and commit ONE check-in in its own transaction."""
    from worker import pipeline
    from worker.intake import Entry
    from worker.store.db import engine_for

    if _naive_rt.get("pid") != os.getpid():
        settings = load_settings(**TIMINGS)
        _naive_rt.update(pid=os.getpid(), sessions=session_factory(engine_for(settings)))
    report = pipeline.process([Entry(stream_id, {PAYLOAD_FIELD: payload.encode()}, 1)], sessions=_naive_rt["sessions"],
                              now=pipeline.utcnow())
    return report.evaluated


# -- workload ------------------------------------------------------------------------------------

def make_workload(n: int, seed: int = 11) -> tuple[list[bytes], list[dict], dict]:
    """N distinct check-ins (bytes, as submitted) in chronological order, and the enrollments."""
    from bench_evaluate import make_payloads

    rnd = random.Random(seed)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    step = max(1, int(6 * 3600 / n))  # the batch covers the last ~6 hours
    docs = [json.loads(p) for p in make_payloads(n)]
    pids = sorted({d["patient_id"] for d in docs})
    enrolled = {p: dict(age_years=round(rnd.uniform(18, 80), 1),
                        therapy=rnd.choice(["axicabtagene ciloleucel", "tisagenlecleucel", "teclistamab", "lisocabtagene maraleucel"]),
                        therapy_start=dt.date(2026, 11, 15)) for p in pids if rnd.random() < 0.6}  # fmt: skip
    out = []
    uses_context = 0
    for i, d in enumerate(docs):
        d["recorded_at"] = (now - dt.timedelta(seconds=(n - i) * step)).isoformat().replace("+00:00", "Z")
        if d["patient_id"] in enrolled and rnd.random() < 0.7:  # the app omits what the unit knows
            for k in ("age_years", "therapy", "therapy_start"):
                d.pop(k, None)
            uses_context += 1
        out.append(json.dumps(d, separators=(",", ":")).encode())
    assert len(set(out)) == n
    stats = dict(patients=len(pids), enrolled=len(enrolled), uses_context=uses_context,
                 bytes_avg=sum(map(len, out)) / n)
    return out, [dict(patient_id=p, **v) for p, v in enrolled.items()], stats


# -- scratch resources -----------------------------------------------------------------------------

class Scratch:
    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:8]
        self.tmp = Path(tempfile.mkdtemp(prefix=f"crs_bench_{self.tag}_"))
        self.databases: list[str] = []
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def namespace(self, mode: str) -> str:
        ns = f"crsbench-{self.tag}-{mode}"
        self.namespaces.append(ns)
        return ns

    def db_url(self, backend: str, mode: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{self.tmp / mode / 'crs-alert.db'}"
        name = f"crs_bench_{self.tag}_{mode}"
        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        self.databases.append(name)
        return f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"

    def cleanup(self) -> None:
        for p in self.procs:
            stop_worker(p)
        r = redis.Redis.from_url(REDIS_URL)
        for ns in self.namespaces:
            keys = list(r.scan_iter(match=f"*{ns}*", count=1000))
            if keys:
                r.delete(*keys)
        left = [k for ns in self.namespaces for k in r.scan_iter(match=f"*{ns}*", count=1000)]
        r.close()
        with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", autocommit=True) as c:
            for name in self.databases:
                c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(self.tmp, ignore_errors=True)
        if left:
            print(f"WARNING: redis keys left behind: {left[:5]}", file=sys.stderr)


def prepare_db(url: str, enrollments: list[dict]):
    from worker.store.db import upgrade
    from worker.store.models import Patient

    engine = make_engine(url)
    upgrade(engine)
    now = dt.datetime.now(dt.UTC)
    with session_factory(engine).begin() as s:
        s.execute(insert(Patient), [dict(e, labels={}, enrolled_at=now, updated_at=now) for e in enrollments])
    return engine


def db_counts(engine) -> dict:
    from worker.store import repo

    with session_factory(engine)() as s:
        return repo.counts(s)


def verify(engine, n: int, mode: str, r: redis.Redis | None = None, stream: str | None = None,
           group: str | None = None) -> dict:
    c = db_counts(engine)
    problems = [f"{k}={c[k]} (expected {want})" for k, want in
                (("checkins", n), ("evaluated", n), ("rejected", 0), ("duplicates", 0)) if c[k] != want]
    if r is not None:
        from worker.intake import backlog

        b = backlog(r, stream, group)
        if b["pending"] or b["lag"]:
            problems.append(f"redis backlog {b}")
        if r.xlen(stream):
            problems.append(f"stream still holds {r.xlen(stream)} entries")
    if problems:
        raise SystemExit(f"VERIFY FAILED [{mode}]: " + "; ".join(problems))
    return c


# -- Celery worker subprocesses ----------------------------------------------------------------------

def start_worker(scratch: Scratch, app: str, queue: str, env: dict, log: Path, cwd: Path) -> subprocess.Popen:
    cmd = [str(ROOT / ".venv/bin/celery"), "-A", app, "worker", "--pool", "prefork", "--concurrency", "1",
           "-Q", queue, "-n", f"{queue}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat",
           "--loglevel", LOG_LEVEL]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    scratch.procs.append(proc)
    return proc


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)  # our own session: the worker and its prefork child
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


LOG_LEVEL = "INFO"  # production default (CRS_LOG_LEVEL); --log-level changes it for every mode


def worker_env(ns: str, db_url: str, batch: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRS_") and k not in ("REDIS_URL", "DATABASE_URL")}
    env.update(REDIS_URL=REDIS_URL, DATABASE_URL=db_url, CRS_NAMESPACE=ns, CRS_BATCH_SIZE=str(batch),
               CRS_WORKER_CONCURRENCY="1", CRS_LOG_LEVEL=LOG_LEVEL, PYTHONPATH=f"{ROOT}:{ROOT / 'bench'}",
               **{f"CRS_{k.upper()}": str(v) for k, v in TIMINGS.items()})
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def wait_for(cond, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None,
             poll: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(poll)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise SystemExit(f"TIMEOUT waiting for {what}\n{tail}")


# -- modes ---------------------------------------------------------------------------------------------

def run_floor(payloads: list[bytes], enrollments: list[dict], repeats: int = 3) -> dict:
    """The CPU floor of the pipeline: decode + evaluate every check-in (with its enrollment context),
    no queue and no database, in this process; best of ``repeats``. No pipeline on this machine can
    beat it, so ``pipeline / floor`` says how much of the machine's speed the rest costs, whatever
    the machine (its single-core speed has differed five-fold between sessions)."""
    from worker.domain import PatientContext
    from worker.evaluation import evaluate
    from worker.intake import Entry
    from worker.pipeline import decode

    ctx = {e["patient_id"]: PatientContext(e["age_years"], e["therapy"], e["therapy_start"]) for e in enrollments}
    entries = [Entry(f"{i + 1}-0", {b"checkin": p}, 1) for i, p in enumerate(payloads)]
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for entry in entries:
            checkin = decode(entry).checkin
            evaluate(checkin, ctx.get(checkin.patient_id))
        best = min(best, time.perf_counter() - t0)
    return dict(rate=len(entries) / best, drain_s=best, submit_s=0.0)


def run_raw(scratch: Scratch, payloads: list[bytes], batch: int) -> dict:
    r = redis.Redis.from_url(REDIS_URL)
    stream = f"{scratch.namespace('raw')}:checkins"
    t0 = time.perf_counter()
    for i in range(0, len(payloads), batch):
        p = r.pipeline(transaction=False)
        for data in payloads[i:i + batch]:
            p.xadd(stream, {PAYLOAD_FIELD: data})
        p.execute()
    t_submit = time.perf_counter() - t0
    r.xgroup_create(stream, "g", id="0")
    t0 = time.perf_counter()
    got = 0
    while True:
        resp = r.xreadgroup("g", "c1", {stream: ">"}, count=batch)
        if not resp or not resp[0][1]:
            break
        entries = resp[0][1]
        for _, fields in entries:
            json.loads(fields[PAYLOAD_FIELD])
        r.xack(stream, "g", *[mid for mid, _ in entries])
        got += len(entries)
    t_drain = time.perf_counter() - t0
    pending = r.xpending(stream, "g")["pending"]
    r.delete(stream)
    r.close()
    if got != len(payloads) or pending:
        raise SystemExit(f"VERIFY FAILED [raw]: read {got}, pending {pending}")
    return dict(submit_s=t_submit, drain_s=t_drain, rate=got / t_drain, n=got)


def run_pipeline(scratch: Scratch, backend: str, payloads, enrollments, batch: int, profile: str | None,
                 alerting: bool = True, run: int = 0) -> dict:
    from worker import alert_jobs, pipeline, runtime
    from worker.intake import Consumer, submit

    tag = f"{backend[:2]}{'' if alerting else '-noal'}{f'-r{run}' if run else ''}"
    ns = scratch.namespace(f"pipe-{tag}")
    url = scratch.db_url(backend, f"pipe_{tag.replace('-', '_')}")
    engine = prepare_db(url, enrollments)
    settings = load_settings(redis_url=REDIS_URL, database_url=url, namespace=ns, batch_size=batch, **TIMINGS)
    r = redis.Redis.from_url(REDIS_URL)
    sessions = session_factory(engine)
    hook = None
    if alerting:  # what the drain_checkins task passes: alerting in the batch's transaction
        runtime._runtime = None  # this mode's database, the project's rules file
        alerting_rt = alert_jobs.get_runtime(sessions=sessions, settings=settings)
        alerting_rt.rules.get()

        def hook(session, stored, now):
            alert_jobs.on_batch(session, stored, now, alerting_rt)
    consumer = Consumer(r, settings.stream_name, settings.group)
    t0 = time.perf_counter()
    submit(r, settings.stream_name, payloads, group=settings.group, chunk=batch)
    t_submit = time.perf_counter() - t0

    prof = cProfile.Profile() if profile else None
    total = pipeline.DrainReport()
    c0 = time.process_time()
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    while True:  # drain() stops at a short batch; loop until a call reads nothing
        rep = pipeline.drain(r=r, sessions=sessions, settings=settings, consumer=consumer, alerts=hook)
        total.add(rep)
        if rep.read == 0:
            break
    if prof:
        prof.disable()
    t_drain = time.perf_counter() - t0
    cpu = time.process_time() - c0
    t0 = time.perf_counter()
    counts = verify(engine, len(payloads), f"pipeline/{backend}", r, settings.stream_name, settings.group)
    t_verify = time.perf_counter() - t0
    if total.evaluated != len(payloads) or total.acked != len(payloads):
        raise SystemExit(f"VERIFY FAILED [pipeline/{backend}]: drain report {total.as_dict()}")
    if prof:
        prof.dump_stats(profile)
    r.close()
    engine.dispose()
    alerts = {}
    if alerting:
        runtime._runtime = None
        with engine.connect() as c:
            alerts = dict(c.exec_driver_sql("SELECT 'alerts', count(*) FROM alerts UNION ALL "
                                            "SELECT 'notifications', count(*) FROM notifications").all())
    return dict(submit_s=t_submit, drain_s=t_drain, verify_s=t_verify, rate=len(payloads) / t_drain,
                batches=total.batches, transitions=counts["transitions"], out_of_order=counts["out_of_order"], cpu_s=cpu,
                **alerts)


def run_celery_drain(scratch: Scratch, backend: str, payloads, enrollments, batch: int) -> dict:
    from worker.celery_app import DRAIN_TASK, make_app
    from worker.heartbeat import heartbeat_key
    from worker.intake import submit

    mode = f"cel_{backend[:2]}"
    ns = scratch.namespace(mode.replace("_", "-"))
    url = scratch.db_url(backend, mode)
    engine = prepare_db(url, enrollments)
    env = worker_env(ns, url, batch)
    settings = load_settings(redis_url=REDIS_URL, database_url=url, namespace=ns, batch_size=batch, **TIMINGS)
    client = make_app(settings, REDIS_URL)
    r = redis.Redis.from_url(REDIS_URL)
    hb = heartbeat_key("worker", namespace=ns)
    log = scratch.tmp / f"{mode}.log"
    proc = start_worker(scratch, "worker.celery_app", settings.celery_queue, env, log, ROOT)
    try:
        client.send_task(DRAIN_TASK)  # warm-up on the empty stream: worker ready, child initialised
        wait_for(lambda: r.get(hb), 120, "the Celery worker's first drain", proc, log)
        t0 = time.perf_counter()
        submit(r, settings.stream_name, payloads, group=settings.group, chunk=batch)
        t_submit = time.perf_counter() - t0
        before = r.get(hb)
        t0 = time.perf_counter()
        client.send_task(DRAIN_TASK)
        wait_for(lambda: r.get(hb) != before, 600, "drain_checkins", proc, log, poll=0.005)
        t_drain = time.perf_counter() - t0
        wait_for(lambda: r.xlen(settings.stream_name) == 0 or None, 5, "the stream to empty")
    finally:
        stop_worker(proc)
    t0 = time.perf_counter()
    verify(engine, len(payloads), f"celery/{backend}", r, settings.stream_name, settings.group)
    t_verify = time.perf_counter() - t0
    r.close()
    engine.dispose()
    return dict(submit_s=t_submit, drain_s=t_drain, verify_s=t_verify, rate=len(payloads) / t_drain)


def run_naive(scratch: Scratch, backend: str, payloads, enrollments) -> dict:
    from worker.store.models import EvaluationRow

    mode = f"naive_{backend[:2]}"
    ns = scratch.namespace(mode.replace("_", "-"))
    url = scratch.db_url(backend, mode)
    engine = prepare_db(url, enrollments)
    env = worker_env(ns, url, 1)
    settings = load_settings(redis_url=REDIS_URL, database_url=url, namespace=ns, **TIMINGS)
    client = Celery("crs_bench_naive_client")
    client.conf.update(celery_config(settings, REDIS_URL))
    n = len(payloads)
    t0 = time.perf_counter()
    with client.producer_or_acquire() as producer:
        for i, p in enumerate(payloads):
            client.send_task(NAIVE_TASK, args=(f"{i + 1}-0", p.decode()), producer=producer)
    t_submit = time.perf_counter() - t0
    log = scratch.tmp / f"{mode}.log"
    sessions = session_factory(engine)

    def committed() -> int:
        with sessions() as s:
            return int(s.scalar(select(func.count()).select_from(EvaluationRow)))

    t0 = time.perf_counter()
    proc = start_worker(scratch, "bench_pipeline:naive_app", settings.celery_queue, env, log, ROOT / "bench")
    try:
        wait_for(lambda: committed() >= n, 1800, f"{n} naive tasks", proc, log, poll=0.25)
        t_wall = time.perf_counter() - t0
    finally:
        stop_worker(proc)
    t0 = time.perf_counter()
    verify(engine, n, f"naive/{backend}")
    t_verify = time.perf_counter() - t0
    with sessions() as s:
        first, last = s.execute(select(func.min(EvaluationRow.evaluated_at), func.max(EvaluationRow.evaluated_at))).one()
    span = (last - first).total_seconds()
    engine.dispose()
    return dict(submit_s=t_submit, drain_s=span, wall_s=t_wall, verify_s=t_verify, rate=(n - 1) / span, n=n)


# -- report ----------------------------------------------------------------------------------------------

def gc_tuning_threshold() -> int:
    from worker import gc_tuning

    return gc_tuning.GEN0_THRESHOLD


def machine() -> str:
    r = redis.Redis.from_url(REDIS_URL)
    rv = r.info("server")["redis_version"]
    aof = r.config_get("appendonly").get("appendonly")
    r.close()
    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres") as c:
        pv = c.execute("SHOW server_version").fetchone()[0]
        sc = c.execute("SHOW synchronous_commit").fetchone()[0]
        fs = c.execute("SHOW fsync").fetchone()[0]
    import celery as celery_mod
    import sqlalchemy

    cpu = ""
    with contextlib.suppress(OSError):
        cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "")
    return (f"machine: nproc={os.cpu_count()} ({cpu}), Python {platform.python_version()}, Redis {rv} (appendonly={aof}), "
            f"PostgreSQL {pv} (synchronous_commit={sc}, fsync={fs}), SQLite {__import__('sqlite3').sqlite_version}, "
            f"redis-py {redis.__version__} (hiredis={redis.utils.HIREDIS_AVAILABLE}), SQLAlchemy {sqlalchemy.__version__}, "
            f"psycopg {psycopg.__version__}, Celery {celery_mod.__version__}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=DEFAULT_BATCH, help=f"entries per batch (default {DEFAULT_BATCH}: the worker's default, CRS_BATCH_SIZE)")
    ap.add_argument("--backends", default="postgresql,sqlite")
    ap.add_argument("--naive-n", type=int, default=2_000, help="check-ins for the task-per-check-in mode")
    ap.add_argument("--no-celery", action="store_true", help="skip the drain-through-Celery mode")
    ap.add_argument("--no-naive", action="store_true", help="skip the task-per-check-in mode")
    ap.add_argument("--no-alerting", action="store_true", help="skip the in-process mode with the alerting hook")
    ap.add_argument("--log-level", default="INFO", help="worker log level, every mode (default INFO, as in production); "
                    "logs go to files in the scratch dir, JSON, as in production")
    ap.add_argument("--repeats", type=int, default=3, help="runs of the in-process pipeline per backend, each beside a "
                    "floor measured just before it; the median run is reported and judged (default 3: this machine "
                    "kind's speed varies by tens of percent within minutes)")
    ap.add_argument("--profile", metavar="FILE", help="cProfile the pipeline drain (first backend) into FILE and print the top")
    a = ap.parse_args()
    backends = [b.strip() for b in a.backends.split(",") if b.strip()]
    if any(b not in ("postgresql", "sqlite") for b in backends):
        raise SystemExit("--backends: postgresql and/or sqlite")
    if a.repeats < 1:
        raise SystemExit("--repeats: at least 1")

    global LOG_LEVEL
    LOG_LEVEL = a.log_level.upper()
    payloads, enrollments, wl = make_workload(a.n)
    naive_payloads = payloads[: min(a.naive_n, a.n)]
    print(machine())
    print(f"workload: N={a.n} distinct check-ins ({wl['bytes_avg']:.0f} B avg), {wl['patients']} patients, "
          f"{wl['enrolled']} enrolled, {wl['uses_context']} check-ins rely on the enrollment context; batch={a.batch}; "
          f"task-per-check-in N={len(naive_payloads)}; log level {LOG_LEVEL} (JSON, to files); gc threshold "
          f"{gc_tuning_threshold()} in every worker process (worker/gc_tuning.py)")
    load0 = os.getloadavg()
    scratch = Scratch()
    from worker import gc_tuning
    from worker.logs import configure_logging

    gc_tuning.tune()  # as every worker process does (the Celery modes' children tune themselves)
    log_file = (scratch.tmp / "in-process.log").open("a")
    configure_logging(json=True, level=LOG_LEVEL, stream=log_file)  # as the worker does; not on the console
    results: dict = {}
    started = time.perf_counter()
    try:
        results["raw"] = run_raw(scratch, payloads, a.batch)
        results["floor"] = run_floor(payloads, enrollments)
        for i, b in enumerate(backends):
            prof = a.profile if (a.profile and i == 0) else None
            runs = []
            for k in range(a.repeats):
                floor_k = results["floor"] if k == 0 else run_floor(payloads, enrollments)
                res = run_pipeline(scratch, b, payloads, enrollments, a.batch, prof if k == 0 else None, alerting=False, run=k)
                runs.append(dict(res, floor_rate=floor_k["rate"]))
            by_rate = sorted(runs, key=lambda x: x["rate"])
            results[("pipeline", b)] = dict(by_rate[(len(by_rate) - 1) // 2], runs=runs)  # the median (lower middle)
            if not a.no_alerting:
                results[("alerting", b)] = run_pipeline(scratch, b, payloads, enrollments, a.batch, None)
            if not a.no_celery:
                results[("celery", b)] = run_celery_drain(scratch, b, payloads, enrollments, a.batch)
            if not a.no_naive:
                results[("naive", b)] = run_naive(scratch, b, naive_payloads, enrollments)
    finally:
        log_file.close()
        scratch.cleanup()

    raw, floor = results["raw"]["rate"], results["floor"]["rate"]
    print()
    hdr = (f"{'mode':52s} {'N':>6s} {'submit s':>9s} {'drain s':>8s} {'verify s':>8s} {'items/s':>9s} {'vs raw':>7s} "
           f"{'vs floor':>8s} {'vs naive':>9s}")
    print(hdr)
    print("-" * len(hdr))

    def row(name: str, res: dict, n: int, naive: float | None) -> None:
        vs_naive = f"{res['rate'] / naive:8.1f}x" if naive else f"{'-':>9s}"
        verify_s = f"{res['verify_s']:8.2f}" if "verify_s" in res else f"{'-':>8s}"
        print(f"{name:52s} {n:6d} {res['submit_s']:9.2f} {res['drain_s']:8.2f} {verify_s} {res['rate']:9,.0f} "
              f"{res['rate'] / raw:6.3f}x {res['rate'] / res.get('floor_rate', floor):7.0%} {vs_naive}")

    row(f"raw redis-py XREADGROUP+json+XACK (COUNT={a.batch})", results["raw"], a.n, None)
    row("floor: decode+evaluate only, no queue, no database", results["floor"], a.n, None)
    for b in backends:
        naive = results.get(("naive", b), {}).get("rate")
        row(f"pipeline drain() in-process, {b}", results[("pipeline", b)], a.n, naive)
        if ("alerting", b) in results:
            row(f"  the same + alerting hook (worker's full job), {b}", results[("alerting", b)], a.n, None)
        if ("celery", b) in results:
            row(f"pipeline via Celery drain_checkins task, {b}", results[("celery", b)], a.n, naive)
        if ("naive", b) in results:
            row(f"task-per-check-in (Celery, concurrency 1), {b}", results[("naive", b)], len(naive_payloads), None)
    print()
    for b in backends:
        p = results[("pipeline", b)]
        if ("alerting", b) in results:
            al = results[("alerting", b)]
            print(f"{b} + alerting: {al['alerts']} alerts opened, {al['notifications']} notification rows "
                  f"(rules: config/rules.yaml); {al['cpu_s']:.2f} s CPU over {al['drain_s']:.2f} s wall")
        print(f"{b}: {p['batches']} batches, {p['transitions']} transitions, {p['out_of_order']} out-of-order; all "
              f"{a.n} check-ins committed and evaluated, nothing pending; in-process drain used {p['cpu_s']:.2f} s CPU "
              f"in this process over {p['drain_s']:.2f} s wall ({p['cpu_s'] / p['drain_s']:.0%}; the rest is waiting "
              f"for the database or for a CPU)")
        if ("naive", b) in results:
            nv = results[("naive", b)]
            print(f"{b} task-per-check-in: rate from the evaluated_at span ({nv['drain_s']:.2f} s); wall time incl. "
                  f"worker start-up {nv['wall_s']:.2f} s = {nv['n'] / nv['wall_s']:,.0f}/s")
    for b in backends:
        runs = results[("pipeline", b)]["runs"]
        if len(runs) > 1:
            print(f"{b} pipeline, {len(runs)} runs (each beside a floor measured just before it; the median run is the row "
                  f"above): " + ", ".join(f"{x['rate']:,.0f}/s ({x['rate'] / x['floor_rate']:.0%} of {x['floor_rate']:,.0f})"
                                           for x in runs))
    print()
    if "postgresql" in backends:
        pg = results[("pipeline", "postgresql")]
        best = max(x["rate"] for x in pg["runs"])
        print(f"goal >= {GOAL_RATE:,}/s per worker process on PostgreSQL: {'met' if pg['rate'] >= GOAL_RATE else 'NOT met'} "
              f"(median of {len(pg['runs'])} run(s) {pg['rate']:,.0f}/s, {pg['rate'] / pg['floor_rate']:.0%} of the floor measured "
              f"beside it; best run {best:,.0f}/s)")
        print(f"  per check-in: the goal allows {1e6 / GOAL_RATE:.0f} us; the median run took {1e6 * pg['drain_s'] / a.n:.0f} us "
              f"({1e6 * pg['cpu_s'] / a.n:.0f} us of this process's CPU), of which decode+evaluate alone (the floor) take "
              f"{1e6 / pg['floor_rate']:.0f} us")
        if floor < GOAL_RATE:
            print(f"  (on this machine, now, decode+evaluate alone runs at {floor:,.0f}/s, below the goal: no pipeline "
                  f"with a queue and a database can reach it here; compare 'vs floor' between machines)")
        if ("naive", "postgresql") in results:
            sp = pg["rate"] / results[("naive", "postgresql")]["rate"]
            print(f"goal >= {GOAL_SPEEDUP:.0f}x task-per-check-in (PostgreSQL): {'met' if sp >= GOAL_SPEEDUP else 'NOT met'} ({sp:.1f}x)")
    if ("alerting", "postgresql") in results:
        print(f"(info) the worker's full job (+ alerting) on PostgreSQL: {results[('alerting', 'postgresql')]['rate']:,.0f}/s")
    for b in backends:
        if b != "postgresql" and ("naive", b) in results:
            sp = results[("pipeline", b)]["rate"] / results[("naive", b)]["rate"]
            print(f"(info) {b}: {results[('pipeline', b)]['rate']:,.0f}/s, {sp:.1f}x task-per-check-in")
    print(f"total benchmark time {time.perf_counter() - started:.0f} s; load average (1/5/15 min) at start "
          f"{'/'.join(f'{x:.2f}' for x in load0)}, at end {'/'.join(f'{x:.2f}' for x in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs (other processes' load lowers every figure)")
    if a.profile:
        print(f"\ncProfile of the pipeline drain ({backends[0]}), top 30 by internal time:")
        pstats.Stats(a.profile).sort_stats("tottime").print_stats(30)
        print("top 25 by cumulative time:")
        pstats.Stats(a.profile).sort_stats("cumulative").print_stats(25)


if __name__ == "__main__":
    main()
