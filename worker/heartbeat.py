"""Liveness heartbeats in Redis, read by `crs-alert health` (compose healthchecks).

A heartbeat is one Redis key per component instance, ``<namespace>:heartbeat:<component>:<instance>``
(namespace = CRS_NAMESPACE, default ``crs``),
holding the Unix time of the last proof of work. The instance defaults to the host name, which is
the container id in compose, so each replica's healthcheck reads its own key.

What counts as proof of work matters: the worker must write it from a *task that it consumed*
(for example at the end of every ``drain_checkins`` run, or from ``task_postrun``), not from a
timer thread. A worker that silently stops consuming after a broker reconnect (the celery#10205
class of hang) then goes stale and its healthcheck fails. The scheduler writes it from its tick
loop, whether or not it holds the leader lock (a standby is alive, just idle).
"""

from __future__ import annotations

import socket
import time
from typing import Any

DEFAULT_NAMESPACE = "crs"
COMPONENTS = ("worker", "scheduler")
# Default staleness limits (seconds) for `crs-alert health`; override with --max-age.
DEFAULT_MAX_AGE_S = {"worker": 120.0, "scheduler": 60.0}
# Keys of dead instances expire on their own after this many seconds.
KEY_TTL_S = 24 * 3600


def default_instance() -> str:
    return socket.gethostname()


def heartbeat_key(
    component: str, instance: str | None = None, namespace: str = DEFAULT_NAMESPACE
) -> str:
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}; expected one of {COMPONENTS}")
    return f"{namespace}:heartbeat:{component}:{instance or default_instance()}"


def write_heartbeat(
    redis: Any,
    component: str,
    now: float | None = None,
    instance: str | None = None,
    namespace: str = DEFAULT_NAMESPACE,
) -> str:
    """Record that ``component`` did real work at ``now`` (default: time.time()). Returns the key."""
    key = heartbeat_key(component, instance, namespace)
    redis.set(key, repr(float(time.time() if now is None else now)), ex=KEY_TTL_S)
    return key


def read_heartbeat(
    redis: Any, component: str, instance: str | None = None, namespace: str = DEFAULT_NAMESPACE
) -> float | None:
    """Unix time of the last heartbeat, or None when there is none (or it is unreadable)."""
    raw = redis.get(heartbeat_key(component, instance, namespace))
    if raw is None:
        return None
    try:
        return float(raw.decode() if isinstance(raw, bytes) else raw)
    except ValueError:
        return None


def heartbeat_age(
    redis: Any,
    component: str,
    now: float | None = None,
    instance: str | None = None,
    namespace: str = DEFAULT_NAMESPACE,
) -> float | None:
    """Seconds since the last heartbeat, or None when there is none."""
    last = read_heartbeat(redis, component, instance, namespace)
    if last is None:
        return None
    return (time.time() if now is None else now) - last
