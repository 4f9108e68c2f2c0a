"""Start, supervise and stop the worker and scheduler as child processes (``crs-alert run``,
``demo``, tests).

Each child runs ``python -m worker.cli worker|scheduler`` in its own session (process group), so a
stop reaches Celery's prefork children too. Stopping sends SIGTERM (Celery's warm shutdown: the
running drain finishes, commits and acknowledges), waits, and only then kills what is left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO


MAX_RESTARTS = 5  # per component within RESTART_WINDOW_S; then it is left stopped and reported
RESTART_WINDOW_S = 300.0


class Services:
    def __init__(self, env: Mapping[str, str], *, components: tuple[str, ...] = ("worker", "scheduler"),
                 log_path: Path | None = None, extra_args: Mapping[str, list[str]] | None = None):
        self.env = dict(env)
        self.components = components
        self.log_path = log_path
        self.extra_args = dict(extra_args or {})
        self.procs: dict[str, subprocess.Popen] = {}
        self._log: IO[bytes] | None = None
        self._out: int | IO[bytes] | None = None
        self._restarts: dict[str, list[float]] = {}

    def start(self) -> "Services":
        out: int | IO[bytes] | None = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
            out = self._log
        self._out = out
        for name in self.components:
            self._spawn(name)
        return self

    def _spawn(self, name: str) -> None:
        cmd = [sys.executable, "-m", "worker.cli", name, *self.extra_args.get(name, [])]
        self.procs[name] = subprocess.Popen(cmd, env=self.env, stdin=subprocess.DEVNULL, stdout=self._out,
                                            stderr=subprocess.STDOUT if self._out is not None else None,
                                            start_new_session=True)

    def dead(self) -> list[str]:
        return [name for name, p in self.procs.items() if p.poll() is not None]

    def revive(self, *, max_restarts: int = MAX_RESTARTS, window_s: float = RESTART_WINDOW_S,
               now: float | None = None) -> tuple[dict[str, int], list[str]]:
        """Start again every component that exited: ({name: its exit code} restarted, [names given
        up on]). A component that exited more than ``max_restarts`` times within ``window_s``
        seconds is left stopped and reported: something is wrong that a restart does not fix.

        Why: a process can die of a fault outside our code (e.g. kombu's Redis transport can raise
        an unrecoverable error while restoring an in-flight task when the broker connection
        drops); what was uncommitted is left pending on the stream and taken over, so starting the
        process again is safe, as a container restart policy would."""
        now = time.monotonic() if now is None else now
        restarted: dict[str, int] = {}
        given_up: list[str] = []
        for name in self.dead():
            recent = [t for t in self._restarts.get(name, []) if now - t < window_s]
            if len(recent) >= max_restarts:
                given_up.append(name)
                continue
            restarted[name] = self.procs[name].returncode
            _signal_group(self.procs[name], signal.SIGKILL)  # its prefork children, if any are left
            self._spawn(name)
            self._restarts[name] = [*recent, now]
        return restarted, given_up

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.procs.items()}

    def stop(self, timeout: float = 60.0) -> dict[str, int | None]:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()  # the main process only: Celery's warm shutdown lets its pool finish the task
        deadline = time.monotonic() + timeout
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(p, signal.SIGKILL)
                p.wait()
        for p in self.procs.values():  # leftovers in the group (prefork children of a killed parent)
            _signal_group(p, signal.SIGKILL)
        if self._log is not None:
            self._log.close()
        return {name: p.returncode for name, p in self.procs.items()}

    def __enter__(self) -> "Services":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _signal_group(p: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
