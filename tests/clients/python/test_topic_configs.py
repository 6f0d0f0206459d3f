"""Topic configs through real admin clients: described with their sources, changed with
IncrementalAlterConfigs (confluent-kafka) and AlterConfigs (kafka-python), taking effect
without a restart, persisted across one, and refused with INVALID_CONFIG when invalid.
"""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, OFFSET_BEGINNING, TIMESTAMP_LOG_APPEND_TIME
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewTopic, ResourceType)

import ck
from helpers import Record, now_ms


def describe(admin, topic: str) -> dict:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([resource])[resource].result(ck.TIMEOUT_S)


def incremental(admin, topic: str, *entries: ConfigEntry) -> None:
    resource = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=list(entries))
    admin.incremental_alter_configs([resource])[resource].result(ck.TIMEOUT_S)


def produce_error(bootstrap: str, topic: str, size: int):
    """Produces one record of `size` bytes; returns the delivery error (None on success)."""
    errors = []
    p = ck.producer(bootstrap, {"message.max.bytes": 10_000_000, "retries": 0})
    # Keyed: the test makes the topic compacted on the way, and compacted topics need keys.
    p.produce(topic, key=b"k", value=b"x" * size, partition=0,
              on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(ck.TIMEOUT_S) == 0
    return errors[0]


def test_confluent_kafka_describes_and_changes_topic_configs_live(broker):
    topic = "configured"
    admin = ck.admin(broker.bootstrap)
    created = admin.create_topics([NewTopic(topic, 1, 1, config={"retention.ms": "100000"})])
    created[topic].result(ck.TIMEOUT_S)

    configs = describe(admin, topic)
    assert configs["retention.ms"].value == "100000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["max.message.bytes"].value == "1048588"
    assert configs["max.message.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    assert configs["cleanup.policy"].value == "delete"

    # A smaller max.message.bytes takes effect at once: a 5,000-byte record is refused.
    assert produce_error(broker.bootstrap, topic, 5_000) is None
    incremental(admin, topic, ConfigEntry("max.message.bytes", "2048",
                                          incremental_operation=AlterConfigOpType.SET))
    error = produce_error(broker.bootstrap, topic, 5_000)
    assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE, error
    assert describe(admin, topic)["max.message.bytes"].value == "2048"

    # An invalid value is refused with INVALID_CONFIG and changes nothing.
    with pytest.raises(KafkaException) as refused:
        incremental(admin, topic, ConfigEntry("retention.ms", "soon",
                                              incremental_operation=AlterConfigOpType.SET))
    assert refused.value.args[0].code() == KafkaError.INVALID_CONFIG
    assert describe(admin, topic)["retention.ms"].value == "100000"

    # List configs take APPEND.
    incremental(admin, topic, ConfigEntry("cleanup.policy", "compact",
                                          incremental_operation=AlterConfigOpType.APPEND))
    assert describe(admin, topic)["cleanup.policy"].value == "delete,compact"

    # Changes survive a restart.
    broker.stop()
    broker.start()
    admin = ck.admin(broker.bootstrap)
    configs = describe(admin, topic)
    assert configs["max.message.bytes"].value == "2048"
    assert configs["retention.ms"].value == "100000"
    # DELETE returns a config to the broker default, live.
    incremental(admin, topic, ConfigEntry("max.message.bytes", None,
                                          incremental_operation=AlterConfigOpType.DELETE))
    assert describe(admin, topic)["max.message.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    assert produce_error(broker.bootstrap, topic, 5_000) is None


def test_log_append_time_topics_are_stamped_by_the_broker(broker):
    topic = "stamped"
    admin = ck.admin(broker.bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1, config={
        "message.timestamp.type": "LogAppendTime"})])[topic].result(ck.TIMEOUT_S)
    before = now_ms()
    ck.produce(broker.bootstrap, topic, [Record(b"k", b"v", (), 1_000)], partition=0)
    consumer = ck.assign_only_consumer(broker.bootstrap)
    try:
        from confluent_kafka import TopicPartition
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        message = ck.next_record(consumer)
        kind, timestamp = message.timestamp()
        assert kind == TIMESTAMP_LOG_APPEND_TIME
        assert before - 1_000 <= timestamp <= now_ms() + 1_000
    finally:
        consumer.close()


def test_kafka_python_admin_reads_and_alters_topic_configs(broker):
    from kafka.admin import ConfigResource as KpConfigResource
    from kafka.admin import ConfigResourceType, KafkaAdminClient

    topic = "kp-configured"
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        def described(config_filter: str = "all") -> dict:
            resource = KpConfigResource(ConfigResourceType.TOPIC, topic)
            result = admin.describe_configs([resource], config_filter=config_filter)
            return {key: entry["value"] for key, entry in result["topic"][topic].items()}

        assert described()["segment.bytes"] == "1073741824"
        # 'modified' lists only the topic's overrides: none yet.
        assert described("modified") == {}
        admin.alter_configs([KpConfigResource(ConfigResourceType.TOPIC, topic,
                                              configs={"segment.bytes": "1048576"})])
        assert described("modified") == {"segment.bytes": "1048576"}
        # Invalid: refused with INVALID_CONFIG (error 40), nothing changes.
        response = admin.alter_configs([KpConfigResource(ConfigResourceType.TOPIC, topic,
                                                         configs={"segment.bytes": "1"})])
        error = str(response["topic"][topic])
        assert "[Error 40]" in error and "segment.bytes" in error, error
        assert described("modified") == {"segment.bytes": "1048576"}
    finally:
        admin.close()


def test_min_insync_replicas_refuses_acks_all_on_a_single_node(broker):
    """min.insync.replicas=2 on one broker (a one-replica ISR): acks=all produces get
    NOT_ENOUGH_REPLICAS and write nothing, acks=1 still works, and lowering the setting live
    lets acks=all through."""
    topic = "needs-two-replicas"
    admin = ck.admin(broker.bootstrap)
    created = admin.create_topics([NewTopic(topic, 1, 1, config={"min.insync.replicas": "2"})])
    created[topic].result(ck.TIMEOUT_S)

    def deliver(acks: str):
        errors = []
        p = ck.producer(broker.bootstrap, {"acks": acks, "retries": 0,
                                           "enable.idempotence": False})
        p.produce(topic, value=f"acks={acks}".encode(), partition=0,
                  on_delivery=lambda err, msg: errors.append(err))
        assert p.flush(ck.TIMEOUT_S) == 0
        return errors[0]

    refused = deliver("all")
    assert refused is not None and refused.code() == KafkaError.NOT_ENOUGH_REPLICAS, refused
    assert deliver("1") is None
    assert ck.watermarks(broker.bootstrap, topic, 0) == (0, 1), "the refused record was written"

    incremental(admin, topic, ConfigEntry("min.insync.replicas", "1",
                                          incremental_operation=AlterConfigOpType.SET))
    assert deliver("all") is None
    assert ck.watermarks(broker.bootstrap, topic, 0) == (0, 2)


def test_compression_type_recompresses_and_idempotent_producers_keep_going(broker):
    """compression.type=lz4 on the topic: an idempotent producer's uncompressed batches are
    stored as lz4 with their sequences kept, so its later batches are accepted in order, and
    every record reads back as written (the segment holding less than the raw values)."""
    topic = "lz4-stored"
    admin = ck.admin(broker.bootstrap)
    created = admin.create_topics([NewTopic(topic, 1, 1, config={"compression.type": "lz4"})])
    created[topic].result(ck.TIMEOUT_S)
    values = [f"record {i} ".encode() * 40 for i in range(600)]
    records = [Record(f"k{i}".encode(), v, (), now_ms()) for i, v in enumerate(values)]
    acked = ck.produce(broker.bootstrap, topic, records, partition=0,
                       config={"enable.idempotence": True, "compression.codec": "none",
                               "linger.ms": 0, "batch.size": 16384})
    assert [s.offset for s in acked] == list(range(600))
    stored = ck.consume_all(broker.bootstrap, topic, partitions=1)
    assert [s.record.value for s in stored] == values
    segment = next((broker.data_dir / f"{topic}-0").glob("*.log"))
    assert segment.stat().st_size < sum(len(v) for v in values) / 4, "not recompressed"
