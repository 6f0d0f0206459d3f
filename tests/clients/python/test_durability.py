"""What survives a crash and a damaged segment file. Clients: confluent-kafka.

The contract: a record acknowledged with acks=all was fsynced, so it survives SIGKILL at its
acknowledged offset; on start the broker cuts a damaged tail off the last segment and goes on
appending after the last intact batch.
"""

from __future__ import annotations

import pathlib
import shutil
import struct
import subprocess
import tempfile
import urllib.request
from collections import Counter

import pytest

import ck
from helpers import (Record, Stored, assert_acked_records_stored, assert_offsets_contiguous,
                     assert_round_trip, free_port, last_segment, make_records, now_ms,
                     runnel_bin, wait_until)

KILL_AFTER_ACKS = 200
BATCHES = 3
PER_BATCH = 1000


def numbered_records(count: int) -> list[Record]:
    base = now_ms() - 60_000
    return [Record(f"k{i % 10}".encode(), f"value-{i:05d}".encode(), (("n", str(i).encode()),),
                   base + i)
            for i in range(count)]


def test_sigkill_during_idempotent_acks_all_produce_loses_no_acknowledged_record(broker):
    topic = "dur-sigkill"
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    records = numbered_records(BATCHES * PER_BATCH)
    batches = [records[i:i + PER_BATCH] for i in range(0, len(records), PER_BATCH)]
    producer = ck.producer(broker.bootstrap, {
        "enable.idempotence": True,
        "message.timeout.ms": 100_000,
        "linger.ms": 2,
        "batch.num.messages": 50,
        "reconnect.backoff.max.ms": 500,
    })
    deliveries = ck.DeliveryLog()

    def acked_at_least(n: int) -> bool:
        producer.poll(0.05)
        return len(deliveries.acked) >= n

    for record in batches[0]:
        ck.send(producer, topic, record, deliveries)
    wait_until(lambda: acked_at_least(KILL_AFTER_ACKS), 30, f"{KILL_AFTER_ACKS} acknowledgements")
    for record in batches[1]:  # queued and in flight while the broker dies
        ck.send(producer, topic, record, deliveries)
    broker.kill()
    outstanding_at_kill = len(producer)  # queued, in flight, or acked but not yet reported
    acked_before_kill = len(deliveries.acked)

    broker.start()
    for record in batches[2]:
        ck.send(producer, topic, record, deliveries)
    remaining = producer.flush(90)

    stored = ck.consume_all(broker.bootstrap, topic, partitions=2)
    assert acked_before_kill >= KILL_AFTER_ACKS
    assert outstanding_at_kill > 0, "the kill came after everything was delivered"
    assert_offsets_contiguous(stored)
    assert_acked_records_stored(deliveries.acked, stored)
    values = [s.record.value for s in stored]
    duplicates = sorted(v for v, n in Counter(values).items() if n > 1)
    assert not duplicates, f"{len(duplicates)} values stored twice, e.g. {duplicates[:5]}"
    # The producer retried across the restart: everything was delivered, exactly once.
    assert remaining == 0, f"{remaining} records undelivered after the restart"
    assert not deliveries.failed, (
        f"{len(deliveries.failed)} deliveries failed, first: {deliveries.failed[0][1]}")
    assert sorted(values) == sorted(r.value for r in records)


def produce_one_batch_per_record(bootstrap: str, topic: str, records: list[Record]) -> list[Stored]:
    """Flush after every record so that each is its own batch on disk."""
    producer = ck.producer(bootstrap, {"linger.ms": 0})
    deliveries = ck.DeliveryLog()
    for record in records:
        ck.send(producer, topic, record, deliveries, partition=0)
        assert producer.flush(ck.TIMEOUT_S) == 0
    assert not deliveries.failed, deliveries.failed
    return deliveries.acked


def next_produce_gets_offset(bootstrap: str, topic: str, offset: int) -> Stored:
    (new,) = ck.produce(bootstrap, topic, make_records(f"{topic}-after", keyed=1, unkeyed=0),
                        partition=0)
    assert new.offset == offset, f"produce after restart got offset {new.offset}, want {offset}"
    return new


GARBAGE = {
    "random": bytes((i * 73 + 41) % 256 for i in range(97)),
    "zeros": bytes(64),
    # A plausible batch header (baseOffset 999, batchLength 4096) with no body behind it:
    # what a torn write of a real batch looks like.
    "torn-header": struct.pack(">qiib", 999, 4096, 0, 2) + b"\x01\x02\x03",
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_after_last_batch_is_dropped_on_start(broker, kind):
    topic = f"dur-garbage-{kind}"
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    acked = ck.produce(broker.bootstrap, topic, make_records(topic), partition=0)
    broker.stop()

    with last_segment(broker.data_dir, topic).open("ab") as segment:
        segment.write(GARBAGE[kind])
    broker.start()

    assert_round_trip(acked, ck.consume_all(broker.bootstrap, topic, partitions=1))
    new = next_produce_gets_offset(broker.bootstrap, topic, len(acked))
    assert_round_trip(acked + [new], ck.consume_all(broker.bootstrap, topic, partitions=1))


def test_corrupt_last_batch_is_dropped_and_its_offset_reused(broker):
    topic = "dur-corrupt-last-batch"
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    acked = produce_one_batch_per_record(broker.bootstrap, topic,
                                         make_records(topic, keyed=6, unkeyed=2))
    assert [a.offset for a in acked] == list(range(8))
    broker.stop()

    # The last bytes of the file belong to the last record of the last batch (one record):
    # flipping them breaks that batch's CRC and nothing else.
    path = last_segment(broker.data_dir, topic)
    data = bytearray(path.read_bytes())
    for i in range(len(data) - 6, len(data) - 1):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    broker.start()

    intact = acked[:-1]
    assert_round_trip(intact, ck.consume_all(broker.bootstrap, topic, partitions=1))
    assert ck.watermarks(broker.bootstrap, topic, 0) == (0, len(intact))
    new = next_produce_gets_offset(broker.bootstrap, topic, len(intact))
    assert_round_trip(intact + [new], ck.consume_all(broker.bootstrap, topic, partitions=1))


def direct_write_count(http_port: int) -> int:
    """`runnel_log_direct_writes_total` from the broker's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("runnel_log_direct_writes_total "):
                return int(line.split()[1])
    raise AssertionError("runnel_log_direct_writes_total not in /metrics")


def filesystem_type(path) -> str:
    """The filesystem type of `path` as `stat -f` names it (`ext2/ext3` for ext4, `tmpfs`)."""
    return subprocess.run(["stat", "-f", "-c", "%T", str(path)], check=True,
                          capture_output=True, text=True).stdout.strip()


def syncfs_call_count(http_port: int) -> int:
    """`runnel_log_syncfs_total` from the broker's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("runnel_log_syncfs_total "):
                return int(line.split()[1])
    raise AssertionError("runnel_log_syncfs_total not in /metrics")


@pytest.mark.parametrize("syncfs", [False, True], ids=["fdatasync", "syncfs"])
def test_sigkill_during_direct_appends_loses_no_acknowledged_record(broker_factory, tmp_path,
                                                                    syncfs):
    """The O_DIRECT write path (`log.direct.io`, the default while durable): appends wait in an
    aligned tail until the flusher writes them out and fsyncs. Three SIGKILLs land while six
    partitions take records of many sizes (so batches end anywhere inside a 4 KiB block, and
    the zero padding of each last block is rewritten by the next write); after each restart
    every acknowledged record is at its offset and the log goes on from there. With
    `log.flush.syncfs=true` the same holds when one syncfs per pass replaces the partitions'
    fdatasyncs."""
    if syncfs and filesystem_type(tmp_path) != "ext2/ext3":
        pytest.skip(f"log.flush.syncfs needs ext4; {tmp_path} is {filesystem_type(tmp_path)} "
                    "(the refusal is tested by test_syncfs_is_refused_off_ext4)")
    http_port = free_port()
    overrides = {"http.listen": f"127.0.0.1:{http_port}"}
    if syncfs:
        overrides["log.flush.syncfs"] = "true"
    broker = broker_factory(overrides)
    topic = "dur-direct"
    partitions = 6
    ck.create_topic(broker.bootstrap, topic, partitions=partitions)
    producer = ck.producer(broker.bootstrap, {
        "enable.idempotence": True,
        "message.timeout.ms": 120_000,
        "linger.ms": 3,
        "reconnect.backoff.max.ms": 500,
    })
    deliveries = ck.DeliveryLog()
    base = now_ms() - 60_000
    sent = 0

    def send(count: int) -> None:
        nonlocal sent
        for _ in range(count):
            size = 1 + (sent * 7919) % 3000
            value = f"{sent:07d}-".encode() + bytes((sent + j) % 251 for j in range(size))
            record = Record(f"k{sent % 97}".encode(), value, (), base + sent)
            ck.send(producer, topic, record, deliveries, partition=sent % partitions)
            sent += 1

    direct_writes = 0
    syncfs_calls = 0
    for round_ in range(3):
        acked_before = len(deliveries.acked)
        send(3000)
        wait_until(lambda: (producer.poll(0.05), len(deliveries.acked) >= acked_before + 500)[1],
                   60, "500 more acknowledgements")
        direct_writes = max(direct_writes, direct_write_count(http_port))
        if syncfs:
            # Read before the kill: the counter starts again at 0 in each broker process.
            syncfs_calls = max(syncfs_calls, syncfs_call_count(http_port))
        send(3000)  # queued and in flight while the broker dies
        broker.kill()
        broker.start()
        stored = ck.consume_all(broker.bootstrap, topic, partitions=partitions)
        assert_offsets_contiguous(stored)
        assert_acked_records_stored(list(deliveries.acked), stored)

    assert direct_writes > 0, "the appends did not take the O_DIRECT path"
    if syncfs:
        assert syncfs_calls > 0, "the flusher did not call syncfs"
    assert producer.flush(120) == 0, "records undelivered after the restarts"
    assert not deliveries.failed, deliveries.failed[:3]
    stored = ck.consume_all(broker.bootstrap, topic, partitions=partitions)
    assert_offsets_contiguous(stored)
    assert_acked_records_stored(deliveries.acked, stored)
    values = [s.record.value for s in stored]
    assert len(values) == len(set(values)) == sent, "every record stored exactly once"


def test_syncfs_is_refused_off_ext4(tmp_path):
    """`log.flush.syncfs=true` is only as durable as fdatasync on ext4 (filesystem_sync.rs):
    on tmpfs the broker refuses to start and says why, instead of acknowledging writes that a
    syncfs might not have flushed."""
    shm = pathlib.Path("/dev/shm")
    if not shm.is_dir() or filesystem_type(shm) != "tmpfs":
        pytest.skip("no tmpfs at /dev/shm")
    data = pathlib.Path(tempfile.mkdtemp(prefix="runnel-syncfs-", dir=shm))
    try:
        result = subprocess.run(
            [str(runnel_bin()), "server", "--data-dir", str(data), "--listen",
             f"127.0.0.1:{free_port()}", "--override", "log.flush.syncfs=true"],
            capture_output=True, text=True, timeout=60)
        assert result.returncode != 0
        assert "log.flush.syncfs is only durable on ext4" in result.stderr + result.stdout, \
            result.stderr[-2000:]
    finally:
        shutil.rmtree(data, ignore_errors=True)
