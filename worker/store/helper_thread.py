"""A helper thread for a batch's blocking database work, so the drain thread can compute meanwhile.

The caller hands the helper jobs that use one connection (or one session) and does not touch that
connection itself until ``wait`` has returned: a connection is never used by two threads at once.
``wait`` forgets a job only once it is done, so a wait cut short (e.g. by Celery's soft time limit)
is resumed by the next ``wait``; callers call it in a ``finally``.

While jobs run, the interpreter's switch interval is lowered: the helper wakes up a few times per
job (the server took data or answered) and each time needs the GIL, which the drain thread holds
while it evaluates; with the default 5 ms interval every wake-up could wait that long.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
SWITCH_INTERVAL_S = 0.0001


class HelperThread:
    def __init__(self, name: str = "crs-db") -> None:
        self._name = name
        self._pool: ThreadPoolExecutor | None = None
        self._jobs: list[Future[Any]] = []
        self._switch = sys.getswitchinterval()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run ``fn(*args)`` in the helper thread, after the jobs submitted before."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._name)
            self._switch = sys.getswitchinterval()
            sys.setswitchinterval(min(self._switch, SWITCH_INTERVAL_S))
        job = self._pool.submit(fn, *args)
        self._jobs.append(job)
        return job

    def wait(self) -> None:
        """Wait for every job (their results stay in their futures), then end the thread."""
        while self._jobs:
            self._jobs[0].exception()  # waits; the job's own error is its caller's business
            self._jobs.pop(0)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
            sys.setswitchinterval(self._switch)
