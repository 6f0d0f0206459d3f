"""Exactly-once consume-transform-produce (KIP-98 / KIP-447) with confluent-kafka, its processor
SIGKILLed and restarted several times (txn_processor.py runs it as a separate process).

What the test pins of Kafka's behaviour is in its docstring.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

import ck
from helpers import wait_until
from txn_processor import transform

TIMEOUT_S = ck.TIMEOUT_S
PROCESSOR = Path(__file__).resolve().parent / "txn_processor.py"

INPUT_RECORDS = 20_000
PARTITIONS = 3
KILLS_MIN, KILLS_MAX = 4, 6
# Each incarnation is killed once the output topic's high watermark has grown by a random amount
# in this range. The growth counts committed and aborted records and markers, so the committed
# progress of an incarnation is at most its growth (plus what it adds between the test seeing
# the growth and the kill); with KILLS_MAX * KILL_GROWTH_MAX well below INPUT_RECORDS every kill
# lands before the processor can have finished.
KILL_GROWTH_MIN, KILL_GROWTH_MAX = 50, 2000
PROGRESS_TIMEOUT_S = 45.0


class Processor:
    """One incarnation of txn_processor.py at a time; stdout and stderr go to a log file."""

    def __init__(self, args: list[str], log_path: Path):
        self.args = args
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.incarnations = 0

    def start(self, seed: int) -> None:
        self.incarnations += 1
        with open(self.log_path, "ab") as log:
            log.write(f"=== test: incarnation {self.incarnations}, batch seed {seed}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, str(PROCESSOR), *self.args, str(seed)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                cwd=PROCESSOR.parent, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=TIMEOUT_S)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def produce_input(bootstrap: str, topic: str) -> list[int]:
    """INPUT_RECORDS non-transactional records, round-robin over the partitions; returns each
    partition's end offset. Batches of at most 200 records, so that the processor's fetches
    (max.partition.fetch.bytes 8192) interleave the partitions."""
    p = ck.producer(bootstrap, {"linger.ms": 20, "batch.num.messages": 200})
    for i in range(INPUT_RECORDS):
        p.produce(topic, value=f"in-{i:05d}-{'x' * (i % 23)}".encode(), partition=i % PARTITIONS)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(TIMEOUT_S) == 0, "input records still undelivered"
    ends = [ck.watermarks(bootstrap, topic, partition)[1] for partition in range(PARTITIONS)]
    assert sum(ends) == INPUT_RECORDS, f"input end offsets {ends}"
    return ends


@pytest.mark.timeout(180)
def test_consume_transform_produce_is_exactly_once_across_sigkills(broker):
    """KIP-98 / KIP-447 exactly-once processing: a processor reading with read_committed and
    committing its input offsets inside its output transaction (TxnOffsetCommit via
    send_offsets_to_transaction) is SIGKILLed at random points mid-stream, 4 to 6 times, and
    restarted with the same transactional.id and group. Kafka guarantees: the restarted
    producer's InitProducerId bumps the epoch and the coordinator aborts the killed one's open
    transaction (records and pending offsets alike); the restarted consumer resumes from the
    offsets of the last committed transaction; so the committed (read_committed) output holds
    every input record exactly once, and the group's committed offsets end at each input
    partition's end offset. The read_uncommitted view may also hold the aborted attempts."""
    seed = int(os.environ.get("CTP_SEED", random.SystemRandom().randrange(1 << 32)))
    print(f"consume-transform-produce seed: {seed} (rerun with CTP_SEED={seed})")
    rng = random.Random(seed)
    bootstrap = broker.bootstrap
    in_topic, out_topic, group, txn_id = "ctp-in", "ctp-out", "ctp-group", "ctp-processor"
    ck.create_topic(bootstrap, in_topic, partitions=PARTITIONS)
    ck.create_topic(bootstrap, out_topic, partitions=PARTITIONS)
    ends = produce_input(bootstrap, in_topic)

    processor = Processor([bootstrap, in_topic, out_topic, group, txn_id,
                           ",".join(map(str, ends))],
                          broker.log_path.parent / "txn-processor.log")
    watermarks = ck.assign_only_consumer(bootstrap)

    def output_high_watermark() -> int:
        return sum(watermarks.get_watermark_offsets(TopicPartition(out_topic, p),
                                                    timeout=TIMEOUT_S, cached=False)[1]
                   for p in range(PARTITIONS))

    def wait_for(predicate, timeout: float, what: str) -> None:
        try:
            wait_until(predicate, timeout, what)
        except AssertionError as e:
            raise AssertionError(f"{e}; the processor's log:\n{processor.log_tail()}") from None

    def require_running() -> None:
        code = processor.exited()
        if code is not None:
            raise AssertionError(
                f"processor incarnation {processor.incarnations} exited with code {code} "
                f"before being killed; its log:\n{processor.log_tail()}")

    kills = rng.randint(KILLS_MIN, KILLS_MAX)
    assert kills * KILL_GROWTH_MAX <= INPUT_RECORDS * 3 // 5
    started = time.monotonic()
    kill_points: list[tuple[int, int]] = []
    try:
        for _ in range(kills):
            base = output_high_watermark()
            processor.start(rng.randrange(1 << 32))
            growth = rng.randint(KILL_GROWTH_MIN, KILL_GROWTH_MAX)

            def grown() -> bool:
                require_running()
                return output_high_watermark() >= base + growth

            wait_for(grown, PROGRESS_TIMEOUT_S,
                     f"incarnation {processor.incarnations} to grow the output high watermark "
                     f"from {base} by {growth}")
            processor.kill()
            kill_points.append((base, output_high_watermark()))
        print(f"killed {kills} times at output high watermarks (start, kill): {kill_points}")

        processor.start(rng.randrange(1 << 32))
        wait_for(lambda: processor.exited() is not None, 90.0, "the last incarnation to finish")
        assert processor.exited() == 0, (
            f"the last incarnation exited with code {processor.exited()}; its log:\n"
            f"{processor.log_tail()}")
        print(f"processing with {kills} kills took {time.monotonic() - started:.1f}s")
    finally:
        processor.kill()
        watermarks.close()

    committed_out = ck.consume_all(bootstrap, out_topic, PARTITIONS,
                                   config={"isolation.level": "read_committed"})
    inputs = {(s.partition, s.offset): s.record.value
              for s in ck.consume_all(bootstrap, in_topic, PARTITIONS)}
    assert len(inputs) == INPUT_RECORDS

    seen = Counter()
    for s in committed_out:
        in_partition, in_offset = (int(x) for x in s.record.key.decode().split(":"))
        assert s.partition == in_partition, (
            f"output of input {in_partition}:{in_offset} in partition {s.partition}")
        assert (in_partition, in_offset) in inputs, f"output for unknown input {s.record.key}"
        assert s.record.value == transform(inputs[(in_partition, in_offset)]), (
            f"output of input {in_partition}:{in_offset} is {s.record.value!r}")
        seen[(in_partition, in_offset)] += 1
    missing = sorted(set(inputs) - set(seen))
    duplicated = sorted(k for k, n in seen.items() if n > 1)
    assert not missing and not duplicated, (
        f"committed output: {len(missing)} inputs missing (first {missing[:10]}), "
        f"{len(duplicated)} duplicated (first {duplicated[:10]}); "
        f"{len(committed_out)} committed output records for {INPUT_RECORDS} inputs")
    assert len(committed_out) == INPUT_RECORDS

    admin = ck.admin(bootstrap)
    request = ConsumerGroupTopicPartitions(
        group, [TopicPartition(in_topic, p) for p in range(PARTITIONS)])
    result = admin.list_consumer_group_offsets([request], require_stable=True,
                                               request_timeout=TIMEOUT_S)
    offsets = result[group].result(timeout=TIMEOUT_S).topic_partitions
    got = {tp.partition: tp.offset for tp in offsets}
    errors = {tp.partition: tp.error for tp in offsets if tp.error is not None}
    assert not errors, f"OffsetFetch errors: {errors}"
    assert got == dict(enumerate(ends)), f"group {group} committed {got}, input ends {ends}"

    # Only a sanity check: the aborted attempts of killed incarnations may be here too.
    uncommitted_out = ck.consume_all(bootstrap, out_topic, PARTITIONS,
                                     config={"isolation.level": "read_uncommitted"})
    assert len(uncommitted_out) >= len(committed_out)
    print(f"output: {len(committed_out)} committed records, {len(uncommitted_out)} "
          f"read_uncommitted (aborted attempts: {len(uncommitted_out) - len(committed_out)})")
