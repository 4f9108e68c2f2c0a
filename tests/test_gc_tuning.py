"""The worker's garbage-collection tuning (worker/gc_tuning.py) is applied where batches run."""

from __future__ import annotations

import gc
import subprocess
import sys

from worker import gc_tuning


def test_tune_raises_only_the_young_generation_threshold() -> None:
    saved = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        gc_tuning.tune()
        assert gc.get_threshold() == (gc_tuning.GEN0_THRESHOLD, 10, 10)
        assert gc.isenabled()  # cycles are still collected, less often
    finally:
        gc.set_threshold(*saved)


def test_celery_worker_processes_are_tuned_at_start() -> None:
    """worker_init (the worker process; prefork children inherit it) and worker_process_init
    (each child) both run the tuning; checked in a fresh interpreter."""
    code = (
        "import gc\n"
        "from celery import signals\n"
        "import worker.celery_app\n"
        "for sig in (signals.worker_init, signals.worker_process_init):\n"
        "    gc.set_threshold(700, 10, 10)\n"
        "    sig.send(sender=None)\n"
        "    assert gc.get_threshold()[0] == 50_000, (sig, gc.get_threshold())\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_paused_turns_automatic_collection_off_for_the_block_only() -> None:
    assert gc.isenabled()
    with gc_tuning.paused():
        assert not gc.isenabled()
        with gc_tuning.paused():  # nested: the inner block leaves it off
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    try:
        with gc_tuning.paused():
            raise KeyError("batch failed")
    except KeyError:
        pass
    assert gc.isenabled()  # also after an error


def test_paused_leaves_collection_off_where_it_was_off() -> None:
    gc.disable()
    try:
        with gc_tuning.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_drained_batch_runs_with_collection_paused(monkeypatch) -> None:
    """pipeline._commit_and_ack (every batch, and the read-ahead inside it) runs inside paused()."""
    from worker import pipeline

    seen = []
    monkeypatch.setattr(pipeline, "process", lambda *a, **k: seen.append(gc.isenabled()) or pipeline.DrainReport())

    class Consumer:
        def ack(self, ids):
            return len(list(ids))

    pipeline._commit_and_ack(Consumer(), [], None, None, prepared=pipeline.Prepared([], []))
    assert seen == [False] and gc.isenabled()
