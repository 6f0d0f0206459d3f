"""A consume-transform-produce processor (exactly-once, KIP-98/KIP-447) run as its own OS process.

test_consume_transform_produce.py starts it, SIGKILLs it at random points and restarts it with
the same transactional.id and group:

    python txn_processor.py <bootstrap> <in-topic> <out-topic> <group> <transactional-id>
                            <end-offsets> <seed>

<end-offsets> is a comma-separated list, one per input partition ("6667,6667,6666"): the
processor exits 0 once every input partition has been processed, and committed, through its end
offset. <seed> seeds the sizes of its batches (so the transactions vary in size).

The loop is the textbook one (confluent-kafka's eos example): init_transactions first (it fences
an earlier incarnation and makes the coordinator abort its open transaction), then a consumer
with isolation.level=read_committed and no auto-commit subscribes to the input topic; per batch
polled: begin_transaction, produce one output record per input record, send_offsets_to_transaction
with the consumer's positions and group metadata, commit_transaction.

Each output record goes to the input's partition of the output topic, with key
"<partition>:<offset>" of the input record and value transform(input value), so a checker can
identify each input record in the output.

The consumer is a static member (group.instance.id), so a restarted incarnation takes over the
killed one's membership at once instead of waiting for its session to expire.

Any error the loop does not expect makes the process exit with code 2 (after printing it), so a
broker that misbehaves fails the test instead of being retried around. Progress lines go to
stdout (the test sends them to a log file, never to a pipe it would have to drain).
"""

from __future__ import annotations

import random
import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

TIMEOUT_S = 30.0
MAX_BATCH = 300


def transform(value: bytes) -> bytes:
    """What the processor does to a value; the test checks it with the same function."""
    return b"T:" + value[::-1]


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main() -> int:
    bootstrap, in_topic, out_topic, group, transactional_id, ends, seed = sys.argv[1:8]
    end_offsets = [int(x) for x in ends.split(",")]
    partitions = range(len(end_offsets))
    rng = random.Random(int(seed))

    producer = Producer({
        "bootstrap.servers": bootstrap,
        "transactional.id": transactional_id,
        "linger.ms": 5,
    })
    producer.init_transactions(TIMEOUT_S)
    log("init_transactions done")

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "group.instance.id": f"{transactional_id}-member",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 500,
        # About one input batch per partition per fetch, so that batches (and transactions)
        # interleave the partitions instead of draining partition 0 first.
        "max.partition.fetch.bytes": 8192,
    })
    consumer.subscribe([in_topic])

    # Where this incarnation starts: the group's committed offsets (librdkafka's OffsetFetch with
    # require_stable, so offsets of a transaction still being completed are waited for).
    committed = consumer.committed([TopicPartition(in_topic, p) for p in partitions],
                                   timeout=TIMEOUT_S)
    done_through = {tp.partition: max(tp.offset, 0) for tp in committed}
    log(f"starting from committed offsets {done_through}")

    transactions = 0
    while any(done_through[p] < end_offsets[p] for p in partitions):
        batch = consumer.consume(num_messages=rng.randint(1, MAX_BATCH), timeout=0.5)
        if not batch:
            continue
        for msg in batch:
            if msg.error() is not None:
                raise KafkaException(msg.error())
        producer.begin_transaction()
        for msg in batch:
            producer.produce(out_topic, partition=msg.partition(),
                             key=f"{msg.partition()}:{msg.offset()}".encode(),
                             value=transform(msg.value()))
            producer.poll(0)
        touched = sorted({msg.partition() for msg in batch})
        positions = consumer.position([TopicPartition(in_topic, p) for p in touched])
        for tp in positions:
            last = max(m.offset() for m in batch if m.partition() == tp.partition)
            assert tp.offset == last + 1, f"position {tp} after reading offset {last}"
        producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(),
                                             TIMEOUT_S)
        producer.commit_transaction(TIMEOUT_S)
        transactions += 1
        for tp in positions:
            done_through[tp.partition] = tp.offset
        log(f"committed transaction {transactions} ({len(batch)} records): {done_through}")

    log(f"done: processed through {done_through} in {transactions} transactions")
    consumer.close()
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # noqa: BLE001 - any surprise is a failure the test must see
        log(f"FAILED: {e!r}")
        sys.exit(2)
