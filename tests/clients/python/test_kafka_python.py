"""kafka-python 3.x against Runnel. Its producer is idempotent by default (InitProducerId +
sequence numbers), so "plain produce" here already exercises the idempotent path."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from helpers import CODECS, Record, Stored, assert_round_trip, make_records, read_records_until_end

TIMEOUT_S = 30.0
TIMEOUT_MS = int(TIMEOUT_S * 1000)


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS)
    try:
        admin.create_topics({topic: {"num_partitions": partitions, "replication_factor": 1}},
                            timeout_ms=TIMEOUT_MS, wait_for_metadata=True)
    finally:
        admin.close()


def produce(bootstrap: str, topic: str, records: list[Record], **config) -> list[Stored]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                             request_timeout_ms=TIMEOUT_MS, **config)
    try:
        futures = [(r, producer.send(topic, key=r.key, value=r.value, headers=list(r.headers),
                                     timestamp_ms=r.timestamp_ms))
                   for r in records]
        producer.flush(timeout=TIMEOUT_S)
        acked = []
        for record, future in futures:
            meta = future.get(timeout=TIMEOUT_S)
            acked.append(Stored(meta.partition, meta.offset, record))
        return acked
    finally:
        producer.close(timeout=TIMEOUT_S)


def consume_all(bootstrap: str, topic: str, partitions: int) -> list[Stored]:
    """Assignment only (group_id=None): seek to the beginning, read up to the end offsets."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                             request_timeout_ms=TIMEOUT_MS + 5000)
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        end = consumer.end_offsets(tps)

        def poll() -> list[Stored]:
            batches = consumer.poll(timeout_ms=200)
            return [stored_of(m) for messages in batches.values() for m in messages]

        return read_records_until_end(
            poll, lambda: all(consumer.position(tp) >= end[tp] for tp in tps), TIMEOUT_S,
            f"positions to reach end offsets {end}")
    finally:
        consumer.close()


def stored_of(m) -> Stored:
    assert m.timestamp_type == 0, f"timestamp type {m.timestamp_type} at offset {m.offset}, want CreateTime"
    return Stored(m.partition, m.offset, Record(m.key, m.value, tuple(m.headers), m.timestamp))


def kafka_python_codec(codec: str) -> str | None:
    return None if codec == "none" else codec


@pytest.mark.parametrize("codec", CODECS)
def test_idempotent_round_trip(broker, codec):
    topic = f"kpy-round-trip-{codec}"
    create_topic(broker.bootstrap, topic, partitions=3)

    acked = produce(broker.bootstrap, topic, make_records(topic),
                    compression_type=kafka_python_codec(codec))

    assert_round_trip(acked, consume_all(broker.bootstrap, topic, partitions=3))


def test_non_idempotent_round_trip(broker):
    topic = "kpy-non-idempotent"
    create_topic(broker.bootstrap, topic, partitions=2)

    acked = produce(broker.bootstrap, topic, make_records(topic), enable_idempotence=False)

    assert_round_trip(acked, consume_all(broker.bootstrap, topic, partitions=2))


def test_successive_idempotent_producers_append_to_one_partition(broker):
    """Three producers, so three producer ids, each starting at sequence 0 on one partition."""
    topic = "kpy-successive-producers"
    create_topic(broker.bootstrap, topic, partitions=1)

    first = produce(broker.bootstrap, topic, make_records(f"{topic}-a", keyed=5, unkeyed=0))
    second = produce(broker.bootstrap, topic, make_records(f"{topic}-b", keyed=5, unkeyed=0))
    third = produce(broker.bootstrap, topic, make_records(f"{topic}-c", keyed=5, unkeyed=0))

    assert [s.offset for s in first + second + third] == list(range(15))
    assert_round_trip(first + second + third, consume_all(broker.bootstrap, topic, partitions=1))


def test_admin_delete_records_and_delete_topics(broker):
    """kafka-python's admin: DeleteRecords moves the low watermark (reads start there), and
    DeleteTopics removes the topic."""
    topic = "kpy-admin-deletes"
    create_topic(broker.bootstrap, topic, partitions=1)
    acked = produce(broker.bootstrap, topic, make_records(topic, keyed=8, unkeyed=0))
    tp = TopicPartition(topic, 0)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=TIMEOUT_MS)
    try:
        deleted = admin.delete_records({tp: 5}, timeout_ms=TIMEOUT_MS)
        assert deleted[tp]["low_watermark"] == 5, deleted
        stored = consume_all(broker.bootstrap, topic, partitions=1)
        assert [s.offset for s in stored] == list(range(5, len(acked)))

        admin.delete_topics([topic], timeout_ms=TIMEOUT_MS)
        assert topic not in admin.list_topics()
    finally:
        admin.close()
