"""confluent-kafka (librdkafka, bundled in the wheel) against Runnel."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, TopicPartition
from confluent_kafka.admin import NewTopic

import ck
from helpers import CODECS, Record, assert_round_trip, make_records, now_ms, wait_until


@pytest.mark.parametrize("codec", CODECS)
def test_round_trip_keyed_and_unkeyed_with_headers(broker, codec):
    topic = f"ck-round-trip-{codec}"
    ck.create_topic(broker.bootstrap, topic, partitions=3)

    acked = ck.produce(broker.bootstrap, topic, make_records(topic),
                       config={"compression.type": codec})
    stored = ck.consume_all(broker.bootstrap, topic, partitions=3)

    assert_round_trip(acked, stored)


@pytest.mark.parametrize("overrides,partitions", [
    (None, 1),
    ({"num.partitions": "2"}, 2),
], ids=["default", "num.partitions=2"])
def test_produce_to_unknown_topic_auto_creates_it(broker_factory, overrides, partitions):
    broker = broker_factory(overrides)
    topic = "ck-auto-created"
    assert topic not in ck.cluster_metadata(broker.bootstrap).topics

    acked = ck.produce(broker.bootstrap, topic, make_records(topic, keyed=4, unkeyed=2))

    assert ck.partition_count(broker.bootstrap, topic) == partitions
    assert_round_trip(acked, ck.consume_all(broker.bootstrap, topic, partitions))


def test_metadata_lists_brokers_topics_and_partitions(broker):
    ck.create_topic(broker.bootstrap, "ck-meta-one", partitions=1)
    ck.create_topic(broker.bootstrap, "ck-meta-three", partitions=3)

    meta = ck.cluster_metadata(broker.bootstrap)

    assert len(meta.brokers) == 1, meta.brokers
    (node,) = meta.brokers.values()
    assert (node.host, node.port) == ("127.0.0.1", broker.port)
    for topic, count in [("ck-meta-one", 1), ("ck-meta-three", 3)]:
        tmeta = meta.topics[topic]
        assert tmeta.error is None, tmeta.error
        assert sorted(tmeta.partitions) == list(range(count))
        for pmeta in tmeta.partitions.values():
            assert pmeta.error is None, pmeta.error
            assert pmeta.leader == node.id
            assert pmeta.replicas == [node.id]
            assert pmeta.isrs == [node.id]


def test_watermarks_and_offsets_for_times(broker):
    topic = "ck-offsets"
    admin = ck.admin(broker.bootstrap)
    # Small segments, so the lookups cross segments and use the time index.
    admin.create_topics([NewTopic(topic, 1, 1, config={"segment.bytes": "2048"})])[topic].result(
        ck.TIMEOUT_S)
    base = now_ms() - 600_000
    records = [Record(None, f"v{i}".encode(), (), base + i * 1000) for i in range(100)]
    ck.produce(broker.bootstrap, topic, records, partition=0, config={"batch.size": 512})

    assert ck.watermarks(broker.bootstrap, topic, 0) == (0, 100)

    consumer = ck.assign_only_consumer(broker.bootstrap)
    try:
        # One partition per request: Kafka refuses a ListOffsets naming a partition twice.
        queries = [(base - 1, 0), (base + 99_001, -1)]
        queries += [(base + i * 1000, i) for i in range(100)]  # exact timestamps
        queries += [(base + i * 1000 - 500, i) for i in range(1, 100, 7)]  # between records
        for ts, want in queries:
            (tp,) = consumer.offsets_for_times([TopicPartition(topic, 0, ts)],
                                               timeout=ck.TIMEOUT_S)
            assert (tp.error, tp.offset) == (None, want), f"offsets_for_times(base{ts - base:+})"
    finally:
        consumer.close()


def test_delete_topic_removes_it_and_its_records(broker):
    topic = "ck-deleted"
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    ck.produce(broker.bootstrap, topic, make_records(topic, keyed=4, unkeyed=0))

    assert ck.delete_topic_result(broker.bootstrap, topic) is None

    wait_until(lambda: topic not in ck.cluster_metadata(broker.bootstrap).topics, ck.TIMEOUT_S,
               f"{topic} to disappear from metadata")
    # Recreating the name gives a new, empty topic: the old records do not come back.
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    assert ck.watermarks(broker.bootstrap, topic, 0) == (0, 0)


def test_deleting_an_unknown_topic_fails(broker):
    error = ck.delete_topic_result(broker.bootstrap, "ck-never-created")
    assert error is not None
    assert ck.kafka_error(error).code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_creating_an_existing_topic_fails_with_topic_already_exists(broker):
    topic = "ck-exists"
    ck.create_topic(broker.bootstrap, topic, partitions=2)

    error = ck.create_topic_result(broker.bootstrap, topic, partitions=2)

    assert error is not None, "second CreateTopics succeeded"
    assert ck.kafka_error(error).code() == KafkaError.TOPIC_ALREADY_EXISTS
    assert ck.partition_count(broker.bootstrap, topic) == 2


@pytest.mark.parametrize("name", ["has space", "slash/name", "..", "x" * 250],
                         ids=["space", "slash", "dotdot", "too-long"])
def test_invalid_topic_name_is_refused_and_broker_lives(broker, name):
    error = ck.create_topic_result(broker.bootstrap, name, partitions=1)

    assert error is not None, f"CreateTopics accepted {name!r}"
    assert ck.kafka_error(error).code() == KafkaError.TOPIC_EXCEPTION  # INVALID_TOPIC_EXCEPTION
    assert name not in ck.cluster_metadata(broker.bootstrap).topics


def test_replication_factor_above_broker_count_is_refused(broker):
    topic = "ck-replication-factor-3"
    error = ck.create_topic_result(broker.bootstrap, topic, partitions=1, replication_factor=3)
    assert error is not None, "replication factor 3 accepted by a single broker"
    assert ck.kafka_error(error).code() == KafkaError.INVALID_REPLICATION_FACTOR
    assert topic not in ck.cluster_metadata(broker.bootstrap).topics


def test_out_of_range_offset_with_reset_error_reports_an_error(broker):
    topic = "ck-out-of-range-error"
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    ck.produce(broker.bootstrap, topic, make_records(topic, keyed=3, unkeyed=0), partition=0)

    consumer = ck.assign_only_consumer(broker.bootstrap, {"auto.offset.reset": "error"})
    try:
        consumer.assign([TopicPartition(topic, 0, 1000)])
        error = ck.wait_for_error(consumer)
        assert error.code() == KafkaError._AUTO_OFFSET_RESET, error
    finally:
        consumer.close()


def test_out_of_range_offset_with_reset_earliest_restarts_from_zero(broker):
    topic = "ck-out-of-range-earliest"
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    acked = ck.produce(broker.bootstrap, topic, make_records(topic, keyed=3, unkeyed=0),
                       partition=0)

    consumer = ck.assign_only_consumer(broker.bootstrap, {"auto.offset.reset": "earliest"})
    try:
        consumer.assign([TopicPartition(topic, 0, 1000)])
        first = ck.next_record(consumer)
        assert (first.offset(), first.value()) == (0, acked[0].record.value)
    finally:
        consumer.close()


def test_seek_with_a_leader_epoch_is_validated_by_offset_for_leader_epoch(broker):
    """KIP-320: librdkafka checks a seek position that carries a leader epoch with
    OffsetForLeaderEpoch before fetching. A position inside the epoch's range reads on from
    there; one past the end offset the broker reports for that epoch is log truncation, which
    librdkafka reports with the broker's end offset (an unvalidated position past the end would
    fail on Fetch with OFFSET_OUT_OF_RANGE instead, without it)."""
    topic = "ck-offset-validation"
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    acked = ck.produce(broker.bootstrap, topic, make_records(topic, keyed=10, unkeyed=0),
                       partition=0)

    consumer = ck.assign_only_consumer(broker.bootstrap, {"auto.offset.reset": "error"})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        first = ck.next_record(consumer)
        epoch = first.leader_epoch()
        assert epoch is not None and epoch >= 0, f"record leader epoch {epoch}"

        consumer.seek(TopicPartition(topic, 0, 6, leader_epoch=epoch))
        validated = ck.next_record(consumer)
        assert (validated.offset(), validated.value()) == (6, acked[6].record.value)

        consumer.seek(TopicPartition(topic, 0, len(acked) + 5, leader_epoch=epoch))
        error = ck.wait_for_error(consumer)
        assert error.code() == KafkaError._AUTO_OFFSET_RESET, error
        assert (f"Partition log truncation detected at offset {len(acked) + 5}" in error.str()
                and f"broker end offset is {len(acked)}" in error.str()), error
    finally:
        consumer.close()
