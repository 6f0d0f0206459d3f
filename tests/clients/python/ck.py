"""confluent-kafka (librdkafka) helpers shared by several test modules.

These consumers read by assignment, so a test controls exactly where reading starts: a `group.id`
is set only because librdkafka requires one for a Consumer; nothing is committed or joined.
Consumer-group behaviour has its own tests (test_groups_*.py).
"""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic

from helpers import Record, Stored, read_records_until_end, wait_until

TIMEOUT_S = 30.0
ASSIGN_ONLY_GROUP = "runnel-tests-assign-only"


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def cluster_metadata(bootstrap: str) -> ClusterMetadata:
    """Metadata for all topics (never auto-creates)."""
    return admin(bootstrap).list_topics(timeout=TIMEOUT_S)


def partition_count(bootstrap: str, topic: str) -> int:
    meta = cluster_metadata(bootstrap).topics.get(topic)
    return 0 if meta is None or meta.error is not None else len(meta.partitions)


def create_topic_result(bootstrap: str, topic: str, partitions: int, replication_factor: int = 1):
    """Issue CreateTopics; return the future's exception or None."""
    client = admin(bootstrap)  # must outlive the future: destroying it fails the request
    futures = client.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=replication_factor)],
        operation_timeout=TIMEOUT_S, request_timeout=TIMEOUT_S)
    return futures[topic].exception(timeout=TIMEOUT_S)


def delete_topic_result(bootstrap: str, topic: str):
    """Issue DeleteTopics; return the future's exception or None."""
    client = admin(bootstrap)
    futures = client.delete_topics([topic], operation_timeout=TIMEOUT_S, request_timeout=TIMEOUT_S)
    return futures[topic].exception(timeout=TIMEOUT_S)


def create_topic(bootstrap: str, topic: str, partitions: int = 3) -> None:
    error = create_topic_result(bootstrap, topic, partitions)
    assert error is None, f"CreateTopics {topic} failed: {error}"
    wait_until(lambda: partition_count(bootstrap, topic) == partitions, TIMEOUT_S,
               f"metadata to show {topic} with {partitions} partitions")


def kafka_error(exc: BaseException) -> KafkaError:
    assert isinstance(exc, KafkaException), f"expected a KafkaException, got {exc!r}"
    return exc.args[0]


def producer(bootstrap: str, config: dict | None = None) -> Producer:
    """A librdkafka producer with acks=all; `config` adds or overrides librdkafka settings."""
    return Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                     **(config or {})})


class DeliveryLog:
    """Collects delivery reports: acknowledged (Stored) and failed (record, error)."""

    def __init__(self) -> None:
        self.acked: list[Stored] = []
        self.failed: list[tuple[Record, KafkaError]] = []

    def callback(self, record: Record):
        def on_delivery(err, msg):
            if err is not None:
                self.failed.append((record, err))
            else:
                self.acked.append(Stored(msg.partition(), msg.offset(), record))
        return on_delivery


def send(p: Producer, topic: str, record: Record, log: DeliveryLog, partition: int | None = None):
    kwargs = {} if partition is None else {"partition": partition}
    p.produce(topic, key=record.key, value=record.value, headers=list(record.headers),
              timestamp=record.timestamp_ms, on_delivery=log.callback(record), **kwargs)
    p.poll(0)


def produce(bootstrap: str, topic: str, records: list[Record], partition: int | None = None,
            config: dict | None = None) -> list[Stored]:
    """Produce every record (acks=all), wait for all delivery reports, require success."""
    p = producer(bootstrap, config)
    log = DeliveryLog()
    for record in records:
        send(p, topic, record, log, partition)
    remaining = p.flush(TIMEOUT_S)
    assert remaining == 0, f"{remaining} records still undelivered after {TIMEOUT_S:g}s"
    assert not log.failed, f"delivery failed: {[(r.value[:30], str(e)) for r, e in log.failed[:5]]}"
    assert len(log.acked) == len(records)
    return log.acked


def assign_only_consumer(bootstrap: str, config: dict | None = None) -> Consumer:
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": ASSIGN_ONLY_GROUP,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "error",
    }
    conf.update(config or {})
    return Consumer(conf)


def stored_of(msg) -> Stored:
    kind, ts = msg.timestamp()
    assert kind == 1, f"timestamp type {kind} at {msg.partition()}/{msg.offset()}, want CreateTime (1)"
    record = Record(msg.key(), msg.value(), tuple(msg.headers() or ()), ts)
    return Stored(msg.partition(), msg.offset(), record)


def consume_all(bootstrap: str, topic: str, partitions: int, timeout: float = TIMEOUT_S,
                config: dict | None = None, start: int = 0) -> list[Stored]:
    """Read every partition from `start` (offset 0 by default; OFFSET_BEGINNING for the log
    start) to its end (partition EOF) by assignment."""
    consumer = assign_only_consumer(bootstrap, config)
    try:
        consumer.assign([TopicPartition(topic, p, start) for p in range(partitions)])
        at_eof: set[int] = set()

        def poll() -> list[Stored]:
            msg = consumer.poll(0.2)
            if msg is None:
                return []
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    at_eof.add(msg.partition())
                    return []
                raise AssertionError(f"consume error: {msg.error()}")
            at_eof.discard(msg.partition())
            return [stored_of(msg)]

        return read_records_until_end(
            poll, lambda: at_eof == set(range(partitions)), timeout,
            f"the end of all {partitions} partitions of {topic}")
    finally:
        consumer.close()


def watermarks(bootstrap: str, topic: str, partition: int) -> tuple[int, int]:
    consumer = assign_only_consumer(bootstrap)
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=TIMEOUT_S)
    finally:
        consumer.close()


def wait_for_error(consumer: Consumer, timeout: float = TIMEOUT_S) -> KafkaError:
    """Poll until the consumer reports an error event; a record instead fails the test."""

    def next_error():
        msg = consumer.poll(0.2)
        if msg is None or (msg.error() is not None
                           and msg.error().code() == KafkaError._PARTITION_EOF):
            return None
        if msg.error() is None:
            raise AssertionError(f"got a record at offset {msg.offset()}, expected an error")
        return msg.error()

    return wait_until(next_error, timeout, "a consumer error", interval=0)


def next_record(consumer: Consumer, timeout: float = TIMEOUT_S):
    """Poll until the consumer returns a record (partition-EOF events are skipped)."""

    def poll():
        msg = consumer.poll(0.2)
        if msg is None or (msg.error() is not None
                           and msg.error().code() == KafkaError._PARTITION_EOF):
            return None
        if msg.error() is not None:
            raise AssertionError(f"consume error: {msg.error()}")
        return msg

    return wait_until(poll, timeout, "a record", interval=0)
