"""The intake queue: a Redis Stream read through a consumer group.

Producer contract: one stream entry per check-in, with the check-in's JSON text (UTF-8) in the
field ``checkin``. The producer assigns ``checkin_id``; submitting the same check-in twice (or a
redis-py retry duplicating an XADD) is harmless because the store keeps one row per id.

Consumer rules (the pipeline applies them):

* at-least-once: an entry is acknowledged (XACK) only after its effects are committed; a worker
  that dies leaves its entries pending, and another worker reclaims them with XAUTOCLAIM once they
  have been idle for ``claim_min_idle``;
* an entry is deleted (XDEL, in the same MULTI as its XACK) only after that commit. Nothing ever
  trims the stream (XTRIM/MAXLEN would drop pending entries on Redis 7);
* XAUTOCLAIM is called without JUSTID so the delivery counter grows and a poison entry can be
  recognised and set aside.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

PAYLOAD_FIELD = b"checkin"


@dataclass(slots=True)  # not frozen: built for every entry read, and frozen fields cost ~4x to set
class Entry:
    stream_id: str
    fields: Mapping[bytes, bytes]
    delivery_count: int = 1

    @property
    def payload(self) -> bytes | None:
        return self.fields.get(PAYLOAD_FIELD)


def default_consumer_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def ensure_group(r: redis.Redis, stream: str, group: str) -> None:
    """Create the stream and its consumer group if missing; a new group starts at the stream's
    beginning so entries submitted before any worker existed are processed."""
    try:
        r.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def encode(checkin: str | bytes | Mapping[str, Any]) -> bytes:
    if isinstance(checkin, bytes):
        return checkin
    if isinstance(checkin, str):
        return checkin.encode("utf-8")
    return json.dumps(checkin, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def submit(r: redis.Redis, stream: str, checkins: Iterable[str | bytes | Mapping[str, Any]], *, group: str | None = None,
           chunk: int = 500) -> list[str]:
    """XADD each check-in (JSON text, bytes or a dict) as it is; returns the stream ids in order.

    Nothing is validated here: the worker validates, and stores what it refuses with its errors.
    Never trims. With ``group``, the consumer group is created first if missing."""
    if group is not None:
        ensure_group(r, stream, group)
    ids: list[str] = []
    batch: list[bytes] = []

    def flush() -> None:
        pipe = r.pipeline(transaction=False)
        for data in batch:
            pipe.xadd(stream, {PAYLOAD_FIELD: data})
        ids.extend(i.decode() if isinstance(i, bytes) else str(i) for i in pipe.execute())
        batch.clear()

    for item in checkins:
        batch.append(encode(item))
        if len(batch) >= chunk:
            flush()
    if batch:
        flush()
    return ids


def _sid(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Consumer:
    """One named consumer in the group (a worker process)."""

    def __init__(self, r: redis.Redis, stream: str, group: str, name: str | None = None):
        self.r, self.stream, self.group = r, stream, group
        self.name = name or default_consumer_name()

    def ensure_group(self) -> None:
        ensure_group(self.r, self.stream, self.group)

    def read(self, count: int) -> list[Entry]:
        """New entries (never delivered to anyone), at most ``count``; does not block."""
        reply = self.r.xreadgroup(self.group, self.name, {self.stream: ">"}, count=count)
        entries: list[Entry] = []
        for _stream, messages in reply or []:
            for sid, fields in messages:
                entries.append(Entry(_sid(sid), fields or {}, 1))
        return entries

    def reclaim(self, min_idle_s: float, count: int) -> tuple[list[Entry], list[str]]:
        """Take over entries pending longer than ``min_idle_s`` with any consumer (XAUTOCLAIM).

        Returns the claimed entries with their delivery counts, and the ids of pending entries
        that no longer exist in the stream (deleted or trimmed before being committed)."""
        claimed: list[tuple[str, Mapping[bytes, bytes]]] = []
        deleted: list[str] = []
        cursor: bytes | str = "0-0"
        while len(claimed) < count:
            reply = self.r.xautoclaim(
                self.stream, self.group, self.name, int(min_idle_s * 1000), start_id=cursor, count=count - len(claimed)
            )
            cursor, messages = reply[0], reply[1]
            deleted.extend(_sid(d) for d in (reply[2] if len(reply) > 2 else []))
            for sid, fields in messages:
                if fields is None:  # Redis 6 style deleted entry
                    deleted.append(_sid(sid))
                else:
                    claimed.append((_sid(sid), fields))
            if _sid(cursor) == "0-0":
                break
        if not claimed:
            return [], deleted
        pipe = self.r.pipeline(transaction=False)
        for sid, _ in claimed:
            pipe.xpending_range(self.stream, self.group, min=sid, max=sid, count=1)
        counts = {}
        for rows in pipe.execute():
            for row in rows:
                counts[_sid(row["message_id"])] = int(row["times_delivered"])
        return [Entry(sid, fields, counts.get(sid, 1)) for sid, fields in claimed], deleted

    def release(self, stream_ids: Iterable[str], idle_s: float) -> int:
        """Hand entries read but not processed back to the group: they stay pending (nothing is
        lost) but look idle for ``idle_s`` (the reclaim threshold), so the next drain of any worker
        takes them over at once instead of after ``idle_s``. Delivery counts are not raised.
        (Redis drops an entry that no longer exists in the stream from the pending list here;
        nothing trims unacknowledged entries, so that cannot happen to one read ahead.)"""
        ids = list(stream_ids)
        if not ids:
            return 0
        return len(self.r.xclaim(self.stream, self.group, self.name, 0, ids, idle=int(idle_s * 1000), justid=True))

    def ack(self, stream_ids: Iterable[str]) -> int:
        """XACK then XDEL, atomically (MULTI): only ever called after the commit."""
        ids = list(stream_ids)
        if not ids:
            return 0
        pipe = self.r.pipeline(transaction=True)
        pipe.xack(self.stream, self.group, *ids)
        pipe.xdel(self.stream, *ids)
        acked, _deleted = pipe.execute()
        return int(acked)


def backlog(r: redis.Redis, stream: str, group: str) -> dict[str, int | None]:
    """``pending``: delivered but not acknowledged; ``lag``: not yet delivered to the group."""
    try:
        groups = r.xinfo_groups(stream)
    except redis.ResponseError:  # no such stream yet
        return {"pending": 0, "lag": 0}
    for g in groups:
        name = g.get("name")
        if _sid(name) == group:
            lag = g.get("lag")
            return {"pending": int(g.get("pending") or 0), "lag": None if lag is None else int(lag)}
    return {"pending": 0, "lag": int(r.xlen(stream))}


# Delete a consumer only if it still holds no pending entry, atomically (DELCONSUMER drops the
# consumer's pending entries, so a check-then-delete race could lose them).
_DELETE_IF_IDLE = """
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p == 0 then return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) end
return -1
"""


def prune_consumers(r: redis.Redis, stream: str, group: str, idle_s: float) -> int:
    """Forget consumers (dead worker processes) idle for ``idle_s`` that hold no pending entry.
    A consumer with pending entries is never removed: its entries would be lost."""
    removed = 0
    try:
        consumers = r.xinfo_consumers(stream, group)
    except redis.ResponseError:
        return 0
    for c in consumers:
        if int(c.get("pending") or 0) == 0 and int(c.get("idle") or 0) >= idle_s * 1000:
            if r.eval(_DELETE_IF_IDLE, 1, stream, group, c["name"]) == 0:
                removed += 1
    return removed
