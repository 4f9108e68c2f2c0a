"""worker.metrics: real processes writing to one multiprocess directory, summed at scrape time."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from worker import metrics


def samples(text: str) -> dict[str, float]:
    """{sample name (with sorted labels): value} from an exposition text."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def run_py(code: str, mp_dir: Path, timeout: float = 30) -> subprocess.CompletedProcess:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mp_dir)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env, capture_output=True, text=True, timeout=timeout, check=True,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


INCREMENT = """
    import os
    from worker import metrics
    metrics.CHECKINS_RECEIVED.inc({n})
    metrics.CHECKINS_EVALUATED.inc({evaluated})
    metrics.CHECKINS_REJECTED.inc(1)
    metrics.BATCH_SECONDS.observe({seconds})
    print(os.getpid())
"""


def test_counters_from_two_processes_are_summed(tmp_path):
    pid_a = int(run_py(INCREMENT.format(n=3, evaluated=2, seconds=0.2), tmp_path).stdout)
    pid_b = int(run_py(INCREMENT.format(n=4, evaluated=4, seconds=7.0), tmp_path).stdout)
    assert pid_a != pid_b
    assert {p.name for p in tmp_path.iterdir()} == {
        f"counter_{pid_a}.db", f"counter_{pid_b}.db", f"histogram_{pid_a}.db", f"histogram_{pid_b}.db"
    }
    out = run_py(
        """
        import sys
        from worker import metrics
        body, content_type = metrics.render_latest()
        sys.stdout.write(content_type + "\\n" + body.decode())
        """,
        tmp_path,
    ).stdout
    content_type, body = out.split("\n", 1)
    assert content_type.startswith("text/plain")
    got = samples(body)
    assert got["crs_checkins_received_total"] == 7
    assert got["crs_checkins_evaluated_total"] == 6
    assert got["crs_checkins_rejected_total"] == 2
    assert got["crs_checkins_duplicate_total"] == 0
    assert got["crs_batch_seconds_count"] == 2
    assert got["crs_batch_seconds_sum"] == pytest.approx(7.2)
    assert got["crs_batch_seconds_bucket{le=0.25}"] == 1
    assert got["crs_batch_seconds_bucket{le=10.0}"] == 2


def test_serving_process_sums_other_processes_and_adds_live_gauges(tmp_path):
    run_py(INCREMENT.format(n=5, evaluated=5, seconds=0.01), tmp_path)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from worker import metrics
            metrics.register_queue_collector(
                lambda: {{"queue_lag": 11, "pending_entries": 3, "oldest_pending_age_s": 42.5}}
            )
            metrics.serve({port}, addr="127.0.0.1")
            metrics.CHECKINS_DUPLICATE.inc(2)   # the serving process counts too
            print("ready", flush=True)
            time.sleep(60)
        """)],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert server.stdout.readline().strip() == "ready"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
        got = samples(body)
        assert got["crs_checkins_received_total"] == 5
        assert got["crs_checkins_duplicate_total"] == 2
        assert got["crs_queue_lag"] == 11
        assert got["crs_pending_entries"] == 3
        assert got["crs_oldest_pending_age_s"] == 42.5
        assert got["crs_queue_collector_up"] == 1
    finally:
        server.kill()
        server.wait(timeout=10)


def test_mark_process_dead_removes_that_process_live_gauge_files_only(tmp_path):
    code = """
        import os
        from prometheus_client import Gauge
        Gauge("crs_test_inflight", "test", multiprocess_mode="livesum").set(3)
        print(os.getpid())
    """
    pid_a = int(run_py(code, tmp_path).stdout)
    pid_b = int(run_py(code, tmp_path).stdout)
    run_py(f"from worker import metrics; metrics.mark_process_dead(pid={pid_a}, exitcode=0)", tmp_path)
    names = {p.name for p in tmp_path.iterdir()}
    assert f"gauge_livesum_{pid_a}.db" not in names
    assert f"gauge_livesum_{pid_b}.db" in names


def test_dead_processes_are_folded_into_archive_files_without_changing_totals(tmp_path):
    pids = [int(run_py(INCREMENT.format(n=n, evaluated=n, seconds=seconds), tmp_path).stdout)
            for n, seconds in ((1, 0.02), (2, 0.3), (4, 3.0))]
    assert {p.name for p in tmp_path.glob("counter_*.db")} == {f"counter_{pid}.db" for pid in pids}
    render = """
        import sys
        from worker import metrics
        sys.stdout.write(metrics.render_latest()[0].decode())
    """
    got = samples(run_py(render, tmp_path).stdout)
    names = {p.name for p in tmp_path.glob("*.db")}
    assert {"counter_archive.db", "histogram_archive.db"} <= names
    assert not any(str(pid) in name for pid in pids for name in names), names
    assert got["crs_checkins_received_total"] == 7
    assert got["crs_checkins_rejected_total"] == 3
    assert got["crs_batch_seconds_count"] == 3
    assert got["crs_batch_seconds_sum"] == pytest.approx(3.32)
    assert got["crs_batch_seconds_bucket{le=0.025}"] == 1
    assert got["crs_batch_seconds_bucket{le=0.5}"] == 2
    assert got["crs_batch_seconds_bucket{le=+Inf}"] == 3

    run_py(INCREMENT.format(n=10, evaluated=0, seconds=0.02), tmp_path)
    again = samples(run_py(render, tmp_path).stdout)
    assert again["crs_checkins_received_total"] == 17
    assert again["crs_batch_seconds_bucket{le=0.025}"] == 2
    assert again["crs_batch_seconds_count"] == 4
    assert samples(run_py(render, tmp_path).stdout) == again  # folding twice changes nothing


def test_mark_process_dead_folds_the_exiting_process_files(tmp_path):
    out = run_py(
        """
        import os
        from worker import metrics
        metrics.CHECKINS_EVALUATED.inc(5)
        metrics.mark_process_dead(pid=os.getpid(), exitcode=0)   # as Celery calls it, in the child
        print(os.getpid())
        """,
        tmp_path,
    )
    pid = int(out.stdout)
    names = {p.name for p in tmp_path.glob("*.db")}
    assert f"counter_{pid}.db" not in names and "counter_archive.db" in names
    from worker.metrics_files import MultiProcessCollector

    (family,) = [m for m in MultiProcessCollector.merge([str(tmp_path / "counter_archive.db")])
                 if m.name == "crs_checkins_evaluated"]
    assert [s.value for s in family.samples] == [5]


def test_queue_collector_in_plain_mode_reports_and_unregisters():
    assert not metrics.multiprocess_enabled()  # the test process runs without the env variable
    remove = metrics.register_queue_collector(lambda: {"queue_lag": 7, "crs_pending_entries": 2})
    try:
        got = samples(metrics.render_latest()[0].decode())
        assert got["crs_queue_lag"] == 7
        assert got["crs_pending_entries"] == 2
        assert got["crs_queue_collector_up"] == 1
    finally:
        remove()
    got = samples(metrics.render_latest()[0].decode())
    assert "crs_queue_lag" not in got and "crs_queue_collector_up" not in got


def test_failing_queue_collector_marks_down_without_breaking_the_scrape():
    def broken() -> dict[str, float]:
        raise ConnectionError("redis is down")

    remove_bad = metrics.register_queue_collector(broken)
    remove_ok = metrics.register_queue_collector(lambda: {"pending_entries": 1, "bad name!": 5})
    try:
        got = samples(metrics.render_latest()[0].decode())
        assert got["crs_queue_collector_up"] == 0
        assert got["crs_pending_entries"] == 1
        assert not any("bad" in name for name in got)
        assert "crs_checkins_received_total" in got
    finally:
        remove_bad()
        remove_ok()


def test_counters_increment_in_plain_mode():
    before = samples(metrics.render_latest()[0].decode())["crs_checkins_rejected_total"]
    metrics.CHECKINS_REJECTED.inc()
    with metrics.BATCH_SECONDS.time():
        time.sleep(0.001)
    after = samples(metrics.render_latest()[0].decode())
    assert after["crs_checkins_rejected_total"] == before + 1
    assert after["crs_batch_seconds_count"] >= 1


CELERY_APP = """
import os
from celery import Celery
from worker import metrics

app = Celery("crs_metrics_test", broker=os.environ["TEST_BROKER_URL"])
app.conf.update(
    broker_transport_options={"global_keyprefix": os.environ["TEST_PREFIX"]},
    task_default_queue=os.environ["TEST_PREFIX"] + "q",
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=1,
    worker_max_tasks_per_child=4,   # children are recycled: their files are folded on exit
)
metrics.install_celery_metrics(int(os.environ["TEST_METRICS_PORT"]))


@app.task(name="count")
def count(n):
    metrics.CHECKINS_RECEIVED.inc(n)
    return os.getpid()
"""


def test_prefork_worker_children_are_summed_by_the_parent_server(tmp_path):
    """The PostHog failure mode: N prefork children, one /metrics in the parent, nothing lost."""
    import uuid

    import redis

    prefix = f"crs-test-metrics-{uuid.uuid4().hex[:10]}:"
    port = free_port()
    mp_dir = tmp_path / "mp"
    mp_dir.mkdir()
    (tmp_path / "crs_metrics_test_app.py").write_text(CELERY_APP)
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(mp_dir),
        "TEST_BROKER_URL": "redis://127.0.0.1:6379/0",
        "TEST_PREFIX": prefix,
        "TEST_METRICS_PORT": str(port),
        "PYTHONPATH": str(tmp_path),
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "crs_metrics_test_app", "worker", "--pool", "prefork",
         "--concurrency", "3", "--without-gossip", "--without-mingle", "--without-heartbeat",
         "--loglevel", "WARNING", "-Q", prefix + "q"],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    try:
        sender = subprocess.run(
            [sys.executable, "-c", textwrap.dedent("""
                from crs_metrics_test_app import count
                for n in range(1, 31):   # 1 + 2 + ... + 30 = 465
                    count.delay(n)
            """)],
            env={k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )
        assert sender.returncode == 0, sender.stderr
        deadline = time.monotonic() + 60
        total = None
        while time.monotonic() < deadline:
            assert worker.poll() is None, worker.stderr.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                    total = samples(resp.read().decode()).get("crs_checkins_received_total")
            except OSError:
                total = None
            if total == 465:
                break
            time.sleep(0.2)
        assert total == 465
        assert (mp_dir / "counter_archive.db").exists(), "recycled children were folded"
        live = [p for p in mp_dir.glob("counter_*.db") if p.name != "counter_archive.db"]
        assert len(live) <= 3 + 1, "only the parent and the 3 current children keep their own files"
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        client.close()
