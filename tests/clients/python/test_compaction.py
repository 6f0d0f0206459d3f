"""Compacted topics through confluent-kafka: the cleaner keeps each key's latest value, drops
tombstoned keys after delete.retention.ms, refuses records without a key, and a kill -9 in
the middle of a compaction leaves a log that reads cleanly with nothing it must keep lost.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, KafkaError
from confluent_kafka.admin import NewTopic

import ck
from helpers import Record, now_ms, wait_until

KEYS = 50
RECORDS = 5_000
TOMBSTONED = 10

FAST_CLEANER = {"log.cleaner.backoff.ms": "100"}
COMPACTED = {
    "cleanup.policy": "compact",
    "segment.bytes": "16384",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "1000",
}


def create_compacted(bootstrap: str, topic: str) -> None:
    admin = ck.admin(bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1, config=COMPACTED)])[topic].result(ck.TIMEOUT_S)


def feed(bootstrap: str, topic: str) -> dict[bytes, bytes | None]:
    """5,000 records over 50 keys, then tombstones for 10 of them; returns each key's latest."""
    records = [Record(f"key-{i % KEYS:02d}".encode(), f"value-{i:05d}".encode(), (), now_ms())
               for i in range(RECORDS)]
    records += [Record(f"key-{k:02d}".encode(), None, (), now_ms()) for k in range(TOMBSTONED)]
    ck.produce(bootstrap, topic, records, partition=0, config={"linger.ms": 5, "batch.size": 4096})
    latest: dict[bytes, bytes | None] = {}
    for record in records:
        latest[record.key] = record.value
    return latest


def roll_active_segment(bootstrap: str, topic: str) -> None:
    """The active segment is never cleaned: push the fed records out of it with fillers whose
    keys are all different (and are ignored by the checks)."""
    fillers = [Record(f"filler-{i}".encode(), b"f" * 1024, (), now_ms()) for i in range(24)]
    ck.produce(bootstrap, topic, fillers, partition=0, config={"linger.ms": 5, "batch.size": 4096})


def read_all(bootstrap: str, topic: str):
    return ck.consume_all(bootstrap, topic, partitions=1, start=OFFSET_BEGINNING)


def fed(stored):
    return [s for s in stored if s.record.key.startswith(b"key-")]


def compacted_view_matches(bootstrap: str, topic: str, latest: dict) -> bool:
    stored = fed(read_all(bootstrap, topic))
    keys = Counter(s.record.key for s in stored)
    live = {k: v for k, v in latest.items() if v is not None}
    return (all(n == 1 for n in keys.values())
            and {s.record.key: s.record.value for s in stored} == live)


def test_compaction_keeps_the_latest_value_per_key_and_drops_tombstones(broker_factory):
    broker = broker_factory(FAST_CLEANER)
    topic = "compacted"
    create_compacted(broker.bootstrap, topic)
    latest = feed(broker.bootstrap, topic)
    roll_active_segment(broker.bootstrap, topic)

    wait_until(lambda: compacted_view_matches(broker.bootstrap, topic, latest), 60,
               "one record per live key, each key's latest value, tombstoned keys gone")
    stored = read_all(broker.bootstrap, topic)
    offsets = [s.offset for s in stored]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    assert len(fed(stored)) == KEYS - TOMBSTONED

    # A record without a key is refused.
    errors = []
    p = ck.producer(broker.bootstrap, {"retries": 0})
    p.produce(topic, value=b"no key", partition=0, on_delivery=lambda e, m: errors.append(e))
    assert p.flush(ck.TIMEOUT_S) == 0
    assert errors[0] is not None and errors[0].code() == KafkaError.INVALID_RECORD, errors


def cleaning_files(data_dir: Path, topic: str) -> list[Path]:
    directory = data_dir / f"{topic}-0"
    return [p for p in directory.glob("*") if p.name.endswith((".cleaned", ".swap"))]


def test_kill_during_compaction_leaves_a_readable_log(broker_factory):
    broker = broker_factory({"log.cleaner.backoff.ms": "5000"})
    topic = "compacted-crash"
    create_compacted(broker.bootstrap, topic)
    latest = feed(broker.bootstrap, topic)
    roll_active_segment(broker.bootstrap, topic)
    acked = read_all(broker.bootstrap, topic)
    # Kill the broker the moment a compaction's temporary files exist (the cleaner's first
    # pass starts about 5 s after start); if the pass is too quick to be seen, the kill lands
    # after it, which the checks below must survive too.
    try:
        seen = wait_until(lambda: cleaning_files(broker.data_dir, topic), 20,
                          "a compaction in progress", interval=0.001)
    except AssertionError:
        seen = []
    broker.kill()
    print(f"killed with compaction files present: {[p.name for p in seen]}")
    broker.start()

    stored = read_all(broker.bootstrap, topic)
    by_offset = {s.offset: s.record for s in acked}
    # Everything read is a record that was written, at its offset, in order.
    assert all(by_offset.get(s.offset) == s.record for s in stored)
    assert [s.offset for s in stored] == sorted(s.offset for s in stored)
    # Nothing compaction must keep is gone: every live key's latest record is still there.
    last_offset = {}
    for s in acked:
        last_offset[s.record.key] = s.offset
    kept = {s.offset for s in stored}
    missing = [key for key, offset in last_offset.items()
               if latest.get(key, b"filler") is not None and offset not in kept]
    assert not missing, missing
    # And the log continues.
    (new,) = ck.produce(broker.bootstrap, topic, [Record(b"key-00", b"after", (), now_ms())],
                        partition=0)
    assert new.offset == acked[-1].offset + 1
