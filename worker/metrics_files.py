"""Keep the Prometheus multiprocess directory small: fold dead processes into one archive file.

prometheus_client writes ``counter_<pid>.db`` and ``histogram_<pid>.db`` for every process and
keeps them after the process exits (a counter must not go down). Celery recycles prefork children
(``worker_max_tasks_per_child``), so a long-running worker gathers thousands of files and every
scrape reads all of them. ``compact`` merges the files of dead processes into
``counter_archive.db`` / ``histogram_archive.db`` (same sums, same keys) and deletes them.

Scrapes and compactions take the same ``flock`` on ``<dir>/.lock``, so a scrape never sees a
process counted twice or not at all.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
from collections.abc import Iterable, Iterator

from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

ARCHIVED_TYPES = ("counter", "histogram")  # gauges are per-pid by design; summaries unused


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    with open(os.path.join(path, ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pid_of(filename: str) -> int | None:
    stem = os.path.basename(filename).removesuffix(".db")
    tail = stem.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_pids(path: str) -> set[int]:
    """Pids with counter/histogram files whose process no longer exists (same PID namespace)."""
    pids = set()
    for typ in ARCHIVED_TYPES:
        for f in glob.glob(os.path.join(path, f"{typ}_*.db")):
            pid = _pid_of(f)
            if pid is not None and pid != os.getpid() and not _alive(pid):
                pids.add(pid)
    return pids


def _write(target: str, metrics: Iterable) -> None:
    tmp = f"{target}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    out = MmapedDict(tmp)
    try:
        for metric in metrics:
            for sample in metric.samples:
                key = mmap_key(metric.name, sample.name, list(sample.labels), list(sample.labels.values()),
                               metric.documentation)
                out.write_value(key, sample.value, 0.0)
    finally:
        out.close()
    os.replace(tmp, target)


def compact(path: str, pids: Iterable[int], lock: bool = True) -> int:
    """Fold the counter/histogram files of ``pids`` into the archive files; returns files removed.

    Only pass pids that will not write again (exited, or exiting: Celery's
    ``worker_process_shutdown`` runs in the child just before it exits).
    """
    pids = set(pids)
    if not pids:
        return 0
    with locked(path) if lock else contextlib.nullcontext():
        removed = 0
        for typ in ARCHIVED_TYPES:
            candidates = (os.path.join(path, f"{typ}_{pid}.db") for pid in sorted(pids))
            dead = [f for f in candidates if os.path.exists(f)]
            if not dead:
                continue
            archive = os.path.join(path, f"{typ}_archive.db")
            sources = dead + ([archive] if os.path.exists(archive) else [])
            _write(archive, MultiProcessCollector.merge(sources, accumulate=False))
            for f in dead:
                os.unlink(f)
            removed += len(dead)
        return removed


class CompactingCollector(MultiProcessCollector):
    """MultiProcessCollector that first folds dead processes' files, under the directory lock."""

    def __init__(self, registry, path: str):
        super().__init__(registry, path=path)
        self._dir = path

    def collect(self):
        with locked(self._dir):
            compact(self._dir, dead_pids(self._dir), lock=False)
            return list(super().collect())
