"""The Redis side of intake: submit, consumer group, reclaim, ack+delete, consumer pruning."""

from __future__ import annotations

import time

from tests.integration.helpers import febrile
from worker.intake import PAYLOAD_FIELD, Consumer, backlog, ensure_group, prune_consumers, submit


def test_submit_accepts_dicts_text_and_bytes_and_never_trims(r, make_settings):
    s = make_settings()
    ids = submit(r, s.stream_name, [febrile("a"), '{"x": 1}', b"\xff"], group=s.group, chunk=2)
    assert len(ids) == 3 and r.xlen(s.stream_name) == 3
    [(_, fields)] = r.xrange(s.stream_name, ids[2], ids[2])
    assert fields == {PAYLOAD_FIELD: b"\xff"}
    assert backlog(r, s.stream_name, s.group) == {"pending": 0, "lag": 3}


def test_group_created_late_still_sees_earlier_entries(r, make_settings):
    s = make_settings()
    submit(r, s.stream_name, [febrile("early")])  # no group yet
    ensure_group(r, s.stream_name, s.group)
    ensure_group(r, s.stream_name, s.group)  # idempotent
    assert [e.stream_id for e in Consumer(r, s.stream_name, s.group, "c").read(10)] != []


def test_ack_deletes_only_the_acknowledged_entries(r, make_settings):
    s = make_settings()
    submit(r, s.stream_name, [febrile(f"c{i}") for i in range(3)], group=s.group)
    c = Consumer(r, s.stream_name, s.group, "c")
    entries = c.read(3)
    assert c.ack([entries[0].stream_id]) == 1
    assert r.xlen(s.stream_name) == 2 and backlog(r, s.stream_name, s.group)["pending"] == 2


def test_reclaim_reports_delivery_counts(r, make_settings):
    s = make_settings()
    submit(r, s.stream_name, [febrile("c1")], group=s.group)
    Consumer(r, s.stream_name, s.group, "dead").read(1)
    time.sleep(0.12)
    claimed, deleted = Consumer(r, s.stream_name, s.group, "alive").reclaim(0.1, 10)
    assert [e.delivery_count for e in claimed] == [2] and deleted == []


def test_prune_forgets_idle_consumers_but_never_one_holding_entries(r, make_settings):
    s = make_settings()
    submit(r, s.stream_name, [febrile("c1")], group=s.group)
    Consumer(r, s.stream_name, s.group, "holder").read(1)  # holds a pending entry
    r.xgroup_createconsumer(s.stream_name, s.group, "empty")  # a worker that never got an entry
    time.sleep(0.05)
    assert prune_consumers(r, s.stream_name, s.group, idle_s=0.01) == 1
    names = {c["name"] for c in r.xinfo_consumers(s.stream_name, s.group)}
    assert names == {b"holder"} and backlog(r, s.stream_name, s.group)["pending"] == 1
