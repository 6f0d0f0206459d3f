"""CreatePartitions through confluent-kafka (librdkafka) and kafka-python: a topic grows, new
partitions take records at once and keep them across a restart, a subscribed group picks the new
partitions up, and each refusal comes back with Kafka's error code."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaError
from confluent_kafka.admin import NewPartitions as CkNewPartitions
from kafka import KafkaAdminClient
from kafka.admin import NewPartitions as KpNewPartitions
from kafka.errors import InvalidPartitionsError, UnknownTopicOrPartitionError

import ck
from helpers import make_records, wait_until


def create_partitions(bootstrap: str, topic: str, count: int, validate_only: bool = False,
                      assignments: list[list[int]] | None = None):
    """Issue CreatePartitions through confluent-kafka; return the future's exception or None."""
    client = ck.admin(bootstrap)  # must outlive the future
    new = (CkNewPartitions(topic, count) if assignments is None
           else CkNewPartitions(topic, count, replica_assignment=assignments))
    futures = client.create_partitions(
        [new],
        validate_only=validate_only, operation_timeout=ck.TIMEOUT_S,
        request_timeout=ck.TIMEOUT_S)
    return futures[topic].exception(timeout=ck.TIMEOUT_S)


def error_code(exc: BaseException | None) -> int | None:
    return None if exc is None else ck.kafka_error(exc).code()


def test_confluent_kafka_grows_a_topic_and_the_new_partitions_last(broker):
    topic = "ck-grow"
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    before = ck.produce(broker.bootstrap, topic, make_records("before", keyed=4, unkeyed=0),
                        partition=1)

    assert error_code(create_partitions(broker.bootstrap, topic, 4, validate_only=True)) is None
    assert ck.partition_count(broker.bootstrap, topic) == 2, "validate_only changed the topic"

    assert create_partitions(broker.bootstrap, topic, 5) is None
    wait_until(lambda: ck.partition_count(broker.bootstrap, topic) == 5, ck.TIMEOUT_S,
               "metadata to show 5 partitions")
    added = ck.produce(broker.bootstrap, topic, make_records("added", keyed=3, unkeyed=0),
                       partition=4)
    assert [s.offset for s in added] == [0, 1, 2]

    expected = sorted((s.partition, s.offset, s.record.value) for s in before + added)
    for restart in (broker.stop, broker.kill):  # a clean stop, then kill -9
        restart()
        broker.start()
        assert ck.partition_count(broker.bootstrap, topic) == 5
        stored = ck.consume_all(broker.bootstrap, topic, 5)
        assert sorted((s.partition, s.offset, s.record.value) for s in stored) == expected


def test_confluent_kafka_refusals(broker):
    topic = "ck-grow-refused"
    ck.create_topic(broker.bootstrap, topic, partitions=3)
    assert error_code(create_partitions(broker.bootstrap, topic, 3)) == \
        KafkaError.INVALID_PARTITIONS, "the same count"
    assert error_code(create_partitions(broker.bootstrap, topic, 2)) == \
        KafkaError.INVALID_PARTITIONS, "a smaller count"
    assert error_code(create_partitions(broker.bootstrap, "no-such-topic", 4)) == \
        KafkaError.UNKNOWN_TOPIC_OR_PART
    assert error_code(create_partitions(broker.bootstrap, topic, 4, assignments=[[2]])) == \
        KafkaError.INVALID_REPLICA_ASSIGNMENT, "a replica on a broker that does not exist"
    assert error_code(create_partitions(broker.bootstrap, topic, 4, assignments=[[1]])) is None, \
        "an assignment onto this broker"
    assert ck.partition_count(broker.bootstrap, topic) == 4


def test_a_subscribed_group_picks_up_new_partitions(broker_factory):
    bootstrap = broker_factory({"group.initial.rebalance.delay.ms": "0",
                                "offsets.topic.num.partitions": "3"}).bootstrap
    topic = "ck-grow-group"
    ck.create_topic(bootstrap, topic, partitions=1)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "growers",
                         "auto.offset.reset": "earliest", "enable.partition.eof": False,
                         # librdkafka notices a partition count change on its next refresh.
                         "topic.metadata.refresh.interval.ms": 500})
    try:
        consumer.subscribe([topic])
        wait_until(lambda: consumer.poll(0.1) is None and len(consumer.assignment()) == 1,
                   ck.TIMEOUT_S, "the assignment of partition 0")
        assert create_partitions(bootstrap, topic, 3) is None
        ck.produce(bootstrap, topic, make_records("new", keyed=1, unkeyed=0), partition=2)

        def read_from_partition_2():
            msg = consumer.poll(0.1)
            assert msg is None or msg.error() is None, msg.error()
            return msg is not None and msg.partition() == 2
        wait_until(read_from_partition_2, ck.TIMEOUT_S, "a record from the new partition 2",
                   interval=0)
        assert {tp.partition for tp in consumer.assignment()} == {0, 1, 2}
    finally:
        consumer.close()


def test_kafka_python_grows_a_topic(broker):
    topic = "kp-grow"
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        admin.create_partitions({topic: KpNewPartitions(total_count=3)})
        wait_until(lambda: ck.partition_count(broker.bootstrap, topic) == 3, ck.TIMEOUT_S,
                   "metadata to show 3 partitions")
        with pytest.raises(InvalidPartitionsError):
            admin.create_partitions({topic: KpNewPartitions(total_count=2)})
        with pytest.raises(UnknownTopicOrPartitionError):
            admin.create_partitions({"kp-no-such-topic": KpNewPartitions(total_count=2)})
    finally:
        admin.close()
    added = ck.produce(broker.bootstrap, topic, make_records("kp", keyed=2, unkeyed=0),
                       partition=2)
    assert [s.offset for s in added] == [0, 1]
