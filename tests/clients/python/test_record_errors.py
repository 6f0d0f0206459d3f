"""Per-record errors (KIP-467) through confluent-kafka and kafka-python.

Pins Kafka's `LogValidator.processRecordErrors` and the clients' handling of the Produce
response's `record_errors`: a batch with some invalid records (a record without a key on a
compacted topic; a create time outside `message.timestamp.after.max.ms`) is refused whole, the
invalid records fail with their own error and text, and the batch's other records fail
because of them. Nothing of the batch is stored; a later valid batch is.
"""

from __future__ import annotations

from confluent_kafka import OFFSET_BEGINNING, KafkaError
from confluent_kafka.admin import NewTopic
from kafka import KafkaProducer
from kafka import errors as kp_errors

import ck
from helpers import Record, now_ms

COMPACTED = {"cleanup.policy": "compact"}
KEYLESS_TEXT = "Compacted topic cannot accept message without key in topic partition {}-0"


def create(bootstrap: str, topic: str, config: dict[str, str]) -> None:
    admin = ck.admin(bootstrap)
    admin.create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result(ck.TIMEOUT_S)


def one_batch_librdkafka(bootstrap: str, topic: str, records: list[Record]) -> ck.DeliveryLog:
    """Sends `records` in one batch (they are queued before the producer's first send)."""
    p = ck.producer(bootstrap, {"retries": 0, "linger.ms": 1000, "batch.num.messages": 100})
    log = ck.DeliveryLog()
    for record in records:
        kwargs = {} if record.key is None else {"key": record.key}
        p.produce(topic, value=record.value, partition=0, timestamp=record.timestamp_ms,
                  on_delivery=log.callback(record), **kwargs)
    assert p.flush(ck.TIMEOUT_S) == 0
    return log


def stored_values(bootstrap: str, topic: str) -> list[bytes]:
    return [s.record.value for s in ck.consume_all(bootstrap, topic, partitions=1,
                                                   start=OFFSET_BEGINNING)]


def test_keyless_record_fails_alone_with_its_error_librdkafka(broker):
    topic = "record-errors-compacted"
    create(broker.bootstrap, topic, COMPACTED)
    records = [Record(b"k0", b"v0", (), now_ms()), Record(None, b"no key", (), now_ms()),
               Record(b"k2", b"v2", (), now_ms())]
    log = one_batch_librdkafka(broker.bootstrap, topic, records)
    assert not log.acked, log.acked
    errors = {record.value: error for record, error in log.failed}
    assert set(errors) == {b"v0", b"no key", b"v2"}
    # librdkafka (2.x) does not read `record_errors`: it fails every message of the refused
    # batch with the partition's error code, as it does against Kafka. The per-record texts
    # are checked through kafka-python below.
    for error in errors.values():
        assert error.code() == KafkaError.INVALID_RECORD, error

    # Nothing of the refused batch was stored; a valid batch after it is.
    ck.produce(broker.bootstrap, topic, [Record(b"k3", b"v3", (), now_ms())], partition=0)
    assert stored_values(broker.bootstrap, topic) == [b"v3"]


def kafka_python_one_batch(bootstrap: str, topic: str, records: list[tuple]) -> list:
    """Sends `(key, value, timestamp_ms)` records in one batch; returns each one's outcome
    (the exception, or None when acknowledged)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", retries=0,
                             linger_ms=1000, batch_size=1 << 20)
    try:
        futures = [producer.send(topic, key=key, value=value, partition=0, timestamp_ms=ts)
                   for key, value, ts in records]
        producer.flush(timeout=ck.TIMEOUT_S)
        outcomes = []
        for future in futures:
            try:
                future.get(timeout=ck.TIMEOUT_S)
                outcomes.append(None)
            except kp_errors.KafkaError as error:
                outcomes.append(error)
        return outcomes
    finally:
        producer.close(timeout=5)


def test_keyless_record_fails_alone_kafka_python(broker):
    """kafka-python maps `record_errors` as the Java producer does: the named record gets
    `InvalidRecordError` with its text, the others "part of a batch which had one more more
    invalid records"."""
    topic = "record-errors-kp"
    create(broker.bootstrap, topic, COMPACTED)
    now = now_ms()
    outcomes = kafka_python_one_batch(broker.bootstrap, topic, [
        (b"k0", b"v0", now), (None, b"no key", now), (b"k2", b"v2", now), (None, b"again", now)])
    first, keyless, third, keyless_again = outcomes
    for error in (keyless, keyless_again):
        assert isinstance(error, kp_errors.InvalidRecordError), outcomes
        assert KEYLESS_TEXT.format(topic) in str(error), error
    for error in (first, third):
        assert error is not None and not isinstance(error, kp_errors.InvalidRecordError), outcomes
        assert "part of a batch which had one more more invalid records" in str(error), error
    assert stored_values(broker.bootstrap, topic) == []


def test_future_timestamp_fails_alone_with_invalid_timestamp(broker):
    """`message.timestamp.after.max.ms` (Kafka 4's default: one hour) refuses a record stamped
    two hours ahead; the partition's error is INVALID_TIMESTAMP with Kafka's text."""
    topic = "record-errors-timestamps"
    create(broker.bootstrap, topic, {"message.timestamp.after.max.ms": "3600000"})
    now = now_ms()
    ahead = now + 2 * 3600 * 1000
    outcomes = kafka_python_one_batch(broker.bootstrap, topic, [
        (b"a", b"now", now), (b"b", b"ahead", ahead), (b"c", b"now too", now)])
    on_time, late, on_time_too = outcomes
    assert isinstance(late, kp_errors.InvalidTimestampError), outcomes
    assert f"Timestamp {ahead} of message with offset 1 is out of range" in str(late), late
    for error in (on_time, on_time_too):
        assert "part of a batch which had one more more invalid records" in str(error), error

    records = [Record(b"a", b"v", (), now_ms()), Record(b"b", b"far", (), ahead)]
    log = one_batch_librdkafka(broker.bootstrap, topic, records)
    assert not log.acked
    for _, error in log.failed:
        assert error.code() == KafkaError.INVALID_TIMESTAMP, error

    # An old timestamp is fine by default (before.max.ms is unbounded), as in Kafka.
    ck.produce(broker.bootstrap, topic, [Record(b"old", b"old", (), now - 400 * 86400 * 1000)],
               partition=0)
    assert stored_values(broker.bootstrap, topic) == [b"old"]
