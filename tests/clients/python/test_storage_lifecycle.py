"""Retention and DeleteRecords through confluent-kafka: the low watermark moves, reads start
there, new produces continue the offsets, and a DeleteRecords low watermark survives a restart.
"""

from __future__ import annotations

from confluent_kafka import OFFSET_BEGINNING, TopicPartition
from confluent_kafka.admin import NewTopic

import ck
from helpers import Record, make_records, now_ms, wait_until


def test_time_retention_moves_the_low_watermark_and_offsets_continue(broker_factory):
    broker = broker_factory({"log.retention.check.interval.ms": "200"})
    topic = "retained"
    admin = ck.admin(broker.bootstrap)
    created = admin.create_topics(
        [NewTopic(topic, 1, 1, config={"retention.ms": "3000", "segment.bytes": "4096"})])
    created[topic].result(ck.TIMEOUT_S)
    records = [Record(None, f"value-{i}-".encode() * 20, (), now_ms()) for i in range(40)]
    # Batches well under segment.bytes: a larger one is refused (RECORD_LIST_TOO_LARGE).
    acked = ck.produce(broker.bootstrap, topic, records, partition=0,
                       config={"linger.ms": 0, "batch.size": 1000})
    end = len(acked)
    assert ck.watermarks(broker.bootstrap, topic, 0) == (0, end)

    wait_until(lambda: ck.watermarks(broker.bootstrap, topic, 0)[0] > 0, 30,
               "retention to move the low watermark")
    low, high = ck.watermarks(broker.bootstrap, topic, 0)
    assert 0 < low <= end and high == end
    # Reads start at the new log start; nothing below it comes back.
    stored = ck.consume_all(broker.bootstrap, topic, partitions=1, start=OFFSET_BEGINNING)
    assert all(s.offset >= low for s in stored)
    # New produces continue from the old log end offset.
    (new,) = ck.produce(broker.bootstrap, topic, [Record(None, b"after", (), now_ms())],
                        partition=0)
    assert new.offset == end


def test_delete_records_moves_the_low_watermark_and_survives_a_restart(broker):
    topic = "trimmed"
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    acked = ck.produce(broker.bootstrap, topic, make_records(topic), partition=0)
    end = len(acked)
    admin = ck.admin(broker.bootstrap)
    request = TopicPartition(topic, 0, 10)
    result = admin.delete_records([request])[request].result(ck.TIMEOUT_S)
    assert result.low_watermark == 10
    assert ck.watermarks(broker.bootstrap, topic, 0) == (10, end)

    broker.stop()
    broker.start()
    assert ck.watermarks(broker.bootstrap, topic, 0) == (10, end)
    stored = ck.consume_all(broker.bootstrap, topic, partitions=1, start=OFFSET_BEGINNING)
    assert [s.offset for s in stored] == list(range(10, end))
    assert [s.record.value for s in stored] == [a.record.value for a in acked[10:]]
