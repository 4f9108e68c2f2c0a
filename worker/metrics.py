"""Prometheus metrics for every crs-alert process.

Two modes, chosen by the environment *before* prometheus_client is first imported:

* ``PROMETHEUS_MULTIPROC_DIR`` set (every container: the image entrypoint sets it and wipes the
  directory at start): counters and histograms are written to mmap files in that directory, one
  per process, and ``render_latest``/``serve`` aggregate them with ``MultiProcessCollector``.
  This is what makes Celery prefork children count correctly (one HTTP server, in the parent,
  summing all children; not one server per child).
* unset (tests, one-off commands): the ordinary in-process registry.

Where each piece runs:

* task code (worker children, scheduler, api) increments the counters below;
* the Celery parent process serves /metrics (``install_celery_metrics``), and every child calls
  ``mark_process_dead`` on exit (connected by ``install_celery_metrics`` too), which folds its
  files into one archive file so recycled children do not pile up files (worker.metrics_files);
* *state* gauges (stream lag, pending entries, ...) come from ``register_queue_collector``: a
  custom collector evaluated at scrape time in the process that serves /metrics. Custom
  collectors are not aggregated across processes, so register it in exactly one single-process
  service: the **scheduler** (which then calls ``serve``). Registered in a worker child it would
  never be scraped.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from worker.metrics_files import CompactingCollector, compact

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

CHECKINS_RECEIVED = Counter(
    "crs_checkins_received", "Check-ins read from the intake stream (deliveries, incl. redeliveries)"
)
CHECKINS_EVALUATED = Counter("crs_checkins_evaluated", "Check-ins parsed, evaluated and committed")
CHECKINS_REJECTED = Counter(
    "crs_checkins_rejected", "Check-ins refused by validation and stored as rejected"
)
CHECKINS_DUPLICATE = Counter(
    "crs_checkins_duplicate", "Check-ins skipped because their checkin_id was already stored"
)
BATCH_SECONDS = Histogram(
    "crs_batch_seconds",
    "Wall time of one intake batch: read, evaluate, commit, acknowledge",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)

_HELP = {
    "crs_queue_lag": "Intake stream entries not yet delivered to the consumer group (XINFO GROUPS lag)",
    "crs_pending_entries": "Intake stream entries delivered but not yet acknowledged (pending entries list)",
}
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def multiprocess_enabled() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


class _LiveCollector:
    """Gauges computed at scrape time from registered ``fn() -> {name: value}`` callables."""

    def __init__(self) -> None:
        self._fns: list[Callable[[], dict[str, float]]] = []
        self._lock = threading.Lock()

    def add(self, fn: Callable[[], dict[str, float]]) -> Callable[[], None]:
        with self._lock:
            self._fns.append(fn)

        def remove() -> None:
            with self._lock:
                if fn in self._fns:
                    self._fns.remove(fn)

        return remove

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            fns = list(self._fns)
        if not fns:
            return
        up = 1.0
        values: dict[str, float] = {}
        for fn in fns:
            try:
                for key, value in fn().items():
                    name = key if key.startswith("crs_") else f"crs_{key}"
                    if _NAME.match(name):
                        values[name] = float(value)
            except Exception:  # noqa: BLE001 - a failing source must not break the scrape
                up = 0.0
        for name, value in sorted(values.items()):
            yield GaugeMetricFamily(name, _HELP.get(name, f"Live value of {name}"), value=value)
        yield GaugeMetricFamily("crs_queue_collector_up", "1 if every queue collector answered", value=up)


_LIVE = _LiveCollector()
REGISTRY.register(_LIVE)  # plain mode; multiprocess registries add it in _registry()
_mp_registries: dict[str, CollectorRegistry] = {}


def _registry() -> CollectorRegistry:
    """The registry to expose: multiprocess aggregation plus live gauges, or the default one."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        return REGISTRY
    registry = _mp_registries.get(path)
    if registry is None:
        registry = CollectorRegistry()
        CompactingCollector(registry, path=path)
        registry.register(_LIVE)
        _mp_registries[path] = registry
    return registry


def register_queue_collector(fn: Callable[[], dict[str, float]]) -> Callable[[], None]:
    """Expose ``fn()``'s keys as gauges ``crs_<key>`` at scrape time; returns an unregister function.

    ``fn`` should return at least ``queue_lag`` and ``pending_entries``. Register it in the
    scheduler process only (see the module docstring). A raising ``fn`` sets
    ``crs_queue_collector_up`` to 0 instead of failing the scrape.
    """
    return _LIVE.add(fn)


def render_latest() -> tuple[bytes, str]:
    """The text exposition for /metrics and its content type (summed across processes)."""
    return generate_latest(_registry()), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int | None = None, **_: Any) -> None:
    """Bookkeeping for a process that has exited or is exiting (never one that will write again).

    Drops its live-gauge files and folds its counter/histogram files into the archive files
    (worker.metrics_files). Connect to Celery's ``worker_process_shutdown`` (it runs in the child
    just before exit and passes ``pid``/``exitcode``). Children that die without it (SIGKILL, OOM)
    are folded at the next scrape.
    """
    path = os.environ.get(MULTIPROC_ENV)
    if path:
        pid = os.getpid() if pid is None else pid
        multiprocess.mark_process_dead(pid, path)
        compact(path, [pid])


def serve(port: int, addr: str = "0.0.0.0") -> Any:
    """Serve /metrics from this process in a daemon thread; returns the server (``.shutdown()``)."""
    server, _thread = start_http_server(port, addr=addr, registry=_registry())
    return server


def install_celery_metrics(port: int | None) -> None:
    """Wire metrics into a Celery worker: children mark themselves dead on exit; the parent serves.

    ``port=None`` skips serving (e.g. when another process of the container serves /metrics).
    """
    from celery import signals

    signals.worker_process_shutdown.connect(mark_process_dead, weak=False)
    if port is not None:

        def _serve(**_: Any) -> None:
            serve(port)

        signals.worker_ready.connect(_serve, weak=False)
