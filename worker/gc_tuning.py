"""Cyclic garbage collection tuned for a worker that handles check-ins in batches.

With CPython's default threshold (a young-generation collection every 700 net allocations), a
batch of 500 check-ins, each a validated model, a document, an evaluation and its rows, triggers
hundreds of collections that each walk the young objects and, every tenth time, the older ones:
measured, that was a third of the worker's CPU (validating one check-in: 16 us with collection
off, 37 us with the default). Reference counting still frees every object the moment it is no
longer used; the threshold only decides how often reference *cycles* are looked for. At 50,000
the cycles a batch leaves wait a little longer, a bounded amount of memory; the older generations
keep their default ratios.

Called once per process that processes batches: each Celery child (worker_process_init) and
``crs-alert drain``.

Within a batch, ``paused`` goes further: no automatic collection at all while the batch is
handled. Each young-generation collection walks every young object still alive, and mid-batch
that is the whole batch (its check-ins, evaluations and rows, alive until it is committed): about
ten walks over it per batch of 1,000. Between batches the collector runs again, once, over what
is left (reference counting has freed the batch by then), so the cycles a batch leaves are still
collected, one batch later at most.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

GEN0_THRESHOLD = 50_000


def tune() -> None:
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)


@contextmanager
def paused() -> Iterator[None]:
    """No automatic collection inside the block (one batch); as it was before, after it. Nests:
    only the outermost block that found collection enabled enables it again."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
