"""Compacted topics through confluent-kafka: the cleaner keeps each key's latest value, drops
tombstoned keys after delete.retention.ms, refuses records without a key, removes aborted
transactions' records and the transaction markers no data is left for, and a kill -9 in the
middle of a compaction leaves a log that reads cleanly with nothing it must keep lost.
"""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, KafkaError
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic, ResourceType

import ck
from helpers import Record, now_ms, partition_dir, wait_until

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


def control_batches(data_dir: Path, topic: str) -> list[tuple[int, int]]:
    """(base offset, records count) of every control batch in the partition's segment files,
    read from the files themselves (librdkafka never hands control records to the
    application): the transaction markers a read_uncommitted fetch would return."""
    found = []
    for path in partition_dir(data_dir, topic, 0).glob("*.log"):
        data = path.read_bytes()
        at = 0
        while at + 61 <= len(data):
            base_offset, length = struct.unpack_from(">qi", data, at)
            if length < 49 or at + 12 + length > len(data):
                break
            (attributes,) = struct.unpack_from(">h", data, at + 21)
            (count,) = struct.unpack_from(">i", data, at + 57)
            if attributes & 0x20:
                found.append((base_offset, count))
            at += 12 + length
    return sorted(found)


def txn_view(bootstrap: str, topic: str, isolation: str) -> list[tuple[bytes, bytes]]:
    stored = ck.consume_all(bootstrap, topic, partitions=1, start=OFFSET_BEGINNING,
                            config={"isolation.level": isolation})
    return [(s.record.key, s.record.value) for s in stored
            if not s.record.key.startswith(b"filler-")]


def test_transaction_markers_go_once_no_data_of_their_transaction_is_left(broker_factory):
    """Kafka's cleaner on a compacted topic written by a transactional producer
    (CleanedTransactionMetadata, KIP-534): an aborted transaction's records go in the first
    pass; a COMMIT or ABORT marker goes once a pass finds no batch of its transaction left and
    delete.retention.ms (0 here) has passed since; the marker of a transaction with a record
    still its key's latest stays. read_committed reads each key's latest committed value
    throughout and after a restart, and the next transaction is read (nothing left open)."""
    broker = broker_factory(FAST_CLEANER)
    topic = "compacted-txn"
    admin = ck.admin(broker.bootstrap)
    # Written as a plain topic, so that the markers can be counted before any pass.
    config = {**COMPACTED, "cleanup.policy": "delete", "delete.retention.ms": "0"}
    admin.create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result(ck.TIMEOUT_S)
    producer = ck.producer(broker.bootstrap, {"transactional.id": "compacted-txn-app"})
    producer.init_transactions(ck.TIMEOUT_S)
    rounds, aborted_rounds = 12, {1, 4, 7, 10}
    latest: dict[bytes, bytes] = {}
    for r in range(rounds):
        producer.begin_transaction()
        values = {f"txn-{k}".encode(): f"round-{r}-{k}".encode() for k in range(8)}
        if r == 0:
            values[b"only-round-0"] = b"stays"  # keeps round 0's marker
        if r in aborted_rounds:
            values[b"aborted-only"] = f"aborted-{r}".encode()
        for key, value in values.items():
            producer.produce(topic, key=key, value=value, partition=0)
        assert producer.flush(ck.TIMEOUT_S) == 0
        if r in aborted_rounds:
            producer.abort_transaction(ck.TIMEOUT_S)
        else:
            producer.commit_transaction(ck.TIMEOUT_S)
            latest.update(values)
    roll_active_segment(broker.bootstrap, topic)
    markers = wait_until(lambda: (m := control_batches(broker.data_dir, topic)) and
                         len(m) == rounds and m, 30, "every round's marker in the log")
    assert all(count == 1 for _, count in markers), markers
    committed = sorted(latest.items())
    uncommitted = txn_view(broker.bootstrap, topic, "read_uncommitted")
    assert any(key == b"aborted-only" for key, _ in uncommitted)

    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([resource])[resource].result(ck.TIMEOUT_S)
    kept = [markers[0], markers[-1]]  # round 0's (only-round-0) and the last round's
    fillers = iter(range(1_000))

    def only_kept_markers_left() -> bool:
        # Each pass needs dirty data to run (as in Kafka): one more rolled segment of fillers.
        n = next(fillers)
        ck.produce(broker.bootstrap, topic,
                   [Record(f"filler-{n}-{i}".encode(), b"f" * 1024, (), now_ms()) for i in range(24)],
                   partition=0, config={"linger.ms": 5, "batch.size": 4096})
        return control_batches(broker.data_dir, topic) == kept

    wait_until(only_kept_markers_left, 60, "only the markers of transactions with data left",
               interval=0.5)
    assert sorted(txn_view(broker.bootstrap, topic, "read_committed")) == committed
    # Aborted records are gone for read_uncommitted too, and each key has one record left.
    assert sorted(txn_view(broker.bootstrap, topic, "read_uncommitted")) == committed

    broker.stop()
    broker.start()
    assert control_batches(broker.data_dir, topic) == kept
    assert sorted(txn_view(broker.bootstrap, topic, "read_committed")) == committed
    producer = ck.producer(broker.bootstrap, {"transactional.id": "compacted-txn-app"})
    producer.init_transactions(ck.TIMEOUT_S)
    producer.begin_transaction()
    producer.produce(topic, key=b"after-restart", value=b"committed", partition=0)
    producer.commit_transaction(ck.TIMEOUT_S)
    wait_until(lambda: (b"after-restart", b"committed") in
               txn_view(broker.bootstrap, topic, "read_committed"), 30,
               "the next transaction read by read_committed")
