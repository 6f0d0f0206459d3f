"""Transactions with real clients: confluent-kafka (librdkafka) and kafka-python.

What each test pins of Kafka's behaviour is in its docstring.
"""

from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

import ck
from helpers import wait_until

TIMEOUT_S = ck.TIMEOUT_S
FENCED_CODES = {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}


def txn_producer(bootstrap: str, transactional_id: str, config: dict | None = None):
    return ck.producer(bootstrap, {"transactional.id": transactional_id, **(config or {})})


def produce_values(p, topic: str, values: list[str], partitions: int = 2) -> None:
    for i, value in enumerate(values):
        p.produce(topic, value=value.encode(), partition=i % partitions)
    assert p.flush(TIMEOUT_S) == 0, "records still undelivered"


def read_values(bootstrap: str, topic: str, partitions: int, isolation: str) -> list[str]:
    stored = ck.consume_all(bootstrap, topic, partitions,
                            config={"isolation.level": isolation})
    return sorted(s.record.value.decode() for s in stored)


def committed_offset(bootstrap: str, group: str, topic: str, isolation: str,
                     timeout: float = TIMEOUT_S) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "enable.auto.commit": False, "isolation.level": isolation})
    try:
        return consumer.committed([TopicPartition(topic, 0)], timeout=timeout)[0].offset
    finally:
        consumer.close()


def test_a_committed_transaction_is_visible_to_read_committed(broker):
    """KIP-98: init/begin/produce/commit (EndTxn is answered once PrepareCommit is durable);
    a read_committed consumer sees every record (the COMMIT markers take offsets but are
    never delivered)."""
    topic = "txn-commit"
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    p = txn_producer(broker.bootstrap, "commit-app")
    p.init_transactions(TIMEOUT_S)
    p.begin_transaction()
    values = [f"c{i}" for i in range(10)]
    produce_values(p, topic, values)
    p.commit_transaction(TIMEOUT_S)
    assert read_values(broker.bootstrap, topic, 2, "read_committed") == sorted(values)


def test_commit_markers_are_written_to_every_partition(broker):
    """Kafka's TransactionMarkerChannelManager: after EndTxn the coordinator writes a COMMIT
    marker (a control batch, one offset) to each partition of the transaction, so each
    partition's high watermark ends one past its records."""
    topic = "txn-markers"
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    p = txn_producer(broker.bootstrap, "marker-app")
    p.init_transactions(TIMEOUT_S)
    p.begin_transaction()
    produce_values(p, topic, [f"m{i}" for i in range(6)])
    p.commit_transaction(TIMEOUT_S)
    for partition in range(2):
        wait_until(lambda: ck.watermarks(broker.bootstrap, topic, partition)[1] == 4,
                   TIMEOUT_S, f"the COMMIT marker in partition {partition}")


def test_an_aborted_transaction_is_hidden_from_read_committed_only(broker):
    """Kafka's isolation levels: an aborted transaction's records are skipped by read_committed
    (the fetch's aborted_transactions) and delivered to read_uncommitted; the next committed
    transaction is seen by both."""
    topic = "txn-abort"
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    p = txn_producer(broker.bootstrap, "abort-app")
    p.init_transactions(TIMEOUT_S)
    p.begin_transaction()
    aborted = [f"a{i}" for i in range(6)]
    produce_values(p, topic, aborted)
    p.abort_transaction(TIMEOUT_S)
    p.begin_transaction()
    committed = [f"c{i}" for i in range(4)]
    produce_values(p, topic, committed)
    p.commit_transaction(TIMEOUT_S)
    assert read_values(broker.bootstrap, topic, 2, "read_committed") == sorted(committed)
    assert (read_values(broker.bootstrap, topic, 2, "read_uncommitted")
            == sorted(aborted + committed))


def test_offsets_sent_to_a_transaction_are_committed_with_it(broker):
    """KIP-98 / KIP-447 (Kafka's OffsetMetadataManager): TxnOffsetCommit's offsets stay
    pending, invisible to OffsetFetch (read_uncommitted sees no offset), until the COMMIT
    marker reaches __consumer_offsets; then the group's committed offset is the one sent."""
    source, sink, group = "txn-src", "txn-sink", "eos-group"
    ck.create_topic(broker.bootstrap, source, partitions=1)
    ck.create_topic(broker.bootstrap, sink, partitions=1)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group,
                         "enable.auto.commit": False, "isolation.level": "read_committed"})
    p = txn_producer(broker.bootstrap, "eos-app")
    p.init_transactions(TIMEOUT_S)
    p.begin_transaction()
    produce_values(p, sink, ["out"], partitions=1)
    p.send_offsets_to_transaction([TopicPartition(source, 0, 6)],
                                  consumer.consumer_group_metadata(), TIMEOUT_S)
    assert committed_offset(broker.bootstrap, group, source, "read_uncommitted") < 0
    p.commit_transaction(TIMEOUT_S)
    assert wait_until(
        lambda: committed_offset(broker.bootstrap, group, source, "read_committed") == 6,
        TIMEOUT_S, "the transaction's offset to be committed")
    consumer.close()


def test_a_second_producer_with_the_same_transactional_id_fences_the_first(broker):
    """Kafka's InitProducerId epoch bump: the first producer's next transactional request is
    refused (PRODUCER_FENCED, INVALID_PRODUCER_EPOCH for old request versions), which
    librdkafka raises as a fatal error; the new producer goes on with its transaction."""
    topic = "txn-fence"
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    first = txn_producer(broker.bootstrap, "fenced-app")
    first.init_transactions(TIMEOUT_S)
    second = txn_producer(broker.bootstrap, "fenced-app")
    second.init_transactions(TIMEOUT_S)
    first.begin_transaction()
    first.produce(topic, value=b"zombie", partition=0)
    with pytest.raises(KafkaException) as raised:
        first.flush(TIMEOUT_S)
        first.commit_transaction(TIMEOUT_S)
    error = ck.kafka_error(raised.value)
    assert error.fatal(), f"want a fatal error, got {error}"
    assert error.code() in FENCED_CODES, f"want a fencing error, got {error}"
    second.begin_transaction()
    produce_values(second, topic, ["alive"])


def test_the_broker_aborts_a_transaction_past_its_timeout(broker_factory):
    """Kafka's abortTimedOutTransactions: an open transaction older than its
    transaction.timeout.ms is aborted by the coordinator (its producer fenced), so a
    read_committed consumer gets past it without the producer doing anything."""
    broker = broker_factory(
        {"transaction.abort.timed.out.transaction.cleanup.interval.ms": "200"})
    topic = "txn-timeout"
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    p = txn_producer(broker.bootstrap, "slow-app", {"transaction.timeout.ms": 1500})
    p.init_transactions(TIMEOUT_S)
    p.begin_transaction()
    produce_values(p, topic, ["late-1", "late-2"], partitions=1)
    _, high = ck.watermarks(broker.bootstrap, topic, 0)

    def read_committed_end() -> int:
        consumer = ck.assign_only_consumer(broker.bootstrap,
                                           {"isolation.level": "read_committed"})
        try:
            consumer.assign([TopicPartition(topic, 0, 0)])
            msg = consumer.poll(1.0)
            assert msg is None or msg.error() is not None, "an aborted record was delivered"
            return consumer.position([TopicPartition(topic, 0)])[0].offset
        finally:
            consumer.close()

    # The ABORT marker lands after the records: the stable offset passes them.
    wait_until(lambda: read_committed_end() > high, TIMEOUT_S,
               "the coordinator to abort the timed-out transaction")
    with pytest.raises(KafkaException):
        p.commit_transaction(TIMEOUT_S)
    assert read_values(broker.bootstrap, topic, 1, "read_uncommitted") == ["late-1", "late-2"]


def test_a_transaction_completes_after_kill_9_of_the_broker(broker):
    """Durable coordinator state: records and the ongoing transaction in __transaction_state
    survive SIGKILL (both were acknowledged after fsync); after the restart the coordinator
    loads the transaction and the producer's retried EndTxn commits it."""
    topic = "txn-crash"
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    p = txn_producer(broker.bootstrap, "crash-app", {"message.timeout.ms": 60_000})
    p.init_transactions(TIMEOUT_S)
    p.begin_transaction()
    values = [f"v{i}" for i in range(8)]
    produce_values(p, topic, values)
    broker.kill()
    broker.start()
    p.commit_transaction(60.0)
    assert read_values(broker.bootstrap, topic, 2, "read_committed") == sorted(values)


def test_kafka_python_transactional_producer_commits(broker):
    """kafka-python (2.1+ transactions): init, begin, send, commit; its read_committed
    consumer sees the records."""
    from kafka import KafkaConsumer, KafkaProducer

    topic = "txn-kafka-python"
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap,
                             transactional_id="kafka-python-app")
    producer.init_transactions()
    producer.begin_transaction()
    for i in range(5):
        producer.send(topic, value=f"kp{i}".encode(), partition=0)
    producer.commit_transaction()
    producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap,
                             isolation_level="read_committed", auto_offset_reset="earliest",
                             consumer_timeout_ms=int(TIMEOUT_S * 1000))
    got: list[str] = []
    for message in consumer:
        got.append(message.value.decode())
        if len(got) == 5:
            break
    consumer.close()
    assert got == [f"kp{i}" for i in range(5)]


def test_read_committed_lag_is_measured_to_the_last_stable_offset(broker):
    """Kafka's FetchResponse.last_stable_offset, which clients measure a read_committed
    consumer's lag to (librdkafka's `ls_offset` and `consumer_lag`; the Java client's
    records-lag): with a transaction open after 5 committed records, a read_committed consumer
    that read those 5 has its log end at the LSO (5) while the high watermark is 8, so its lag
    is 0; a read_uncommitted one reads all 8."""
    topic = "txn-lag"
    ck.create_topic(broker.bootstrap, topic, partitions=1)
    plain = ck.producer(broker.bootstrap, {})
    for i in range(5):
        plain.produce(topic, value=f"plain{i}".encode(), partition=0)
    assert plain.flush(TIMEOUT_S) == 0
    p = txn_producer(broker.bootstrap, "lag-app")
    p.init_transactions(TIMEOUT_S)
    p.begin_transaction()
    for i in range(3):
        p.produce(topic, value=f"open{i}".encode(), partition=0)
    assert p.flush(TIMEOUT_S) == 0

    stats: list[dict] = []
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "lag-group",
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "statistics.interval.ms": 100,
                         "stats_cb": lambda text: stats.append(json.loads(text))})
    try:
        consumer.assign([TopicPartition(topic, 0)])
        read: list[str] = []

        def partition_stats() -> dict | None:
            for snapshot in reversed(stats):
                partition = snapshot.get("topics", {}).get(topic, {}).get("partitions", {})
                if "0" in partition:
                    return partition["0"]
            return None

        def caught_up() -> bool:
            message = consumer.poll(0.1)
            if message is not None and message.error() is None:
                read.append(message.value().decode())
            current = partition_stats()
            return (len(read) == 5 and current is not None
                    and current.get("ls_offset") == 5 and current.get("hi_offset") == 8)

        wait_until(caught_up, TIMEOUT_S, "the 5 committed records and stats with ls_offset 5")
        assert read == [f"plain{i}" for i in range(5)]
        consumer.commit(asynchronous=False)
        wait_until(lambda: (consumer.poll(0.1), (partition_stats() or {}).get(
            "consumer_lag"))[1] == 0, TIMEOUT_S, "a consumer lag of 0 to the LSO")
    finally:
        consumer.close()
        p.abort_transaction(TIMEOUT_S)
    assert len(read_values(broker.bootstrap, topic, 1, "read_uncommitted")) == 8


def test_kafka_python_aborted_transaction_is_hidden_from_read_committed_only(broker):
    """Kafka's isolation levels with kafka-python (3.0) on both ends: records of a transaction
    its KafkaProducer aborts are never delivered to a read_committed KafkaConsumer (the fetch's
    aborted_transactions list names them) and are delivered to a read_uncommitted one; the same
    producer's next transaction commits and both see it. The ABORT and COMMIT markers are control
    batches: each takes one offset in each partition but neither consumer is handed a record
    for it, and both consumers' positions end past the final marker, at the high watermark."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KpTopicPartition

    topic = "txn-kafka-python-abort"
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap,
                             transactional_id="kafka-python-abort-app")
    producer.init_transactions()
    producer.begin_transaction()
    for i in range(6):
        producer.send(topic, value=f"aborted{i}".encode(), partition=i % 2)
    producer.flush()
    producer.abort_transaction()
    producer.begin_transaction()
    for i in range(4):
        producer.send(topic, value=f"committed{i}".encode(), partition=i % 2)
    producer.commit_transaction()
    producer.close()

    # Per partition: 3 aborted records (0-2), ABORT marker (3), 2 committed (4-5), COMMIT (6).
    partitions = [KpTopicPartition(topic, p) for p in range(2)]
    end = 7
    for p in range(2):
        wait_until(lambda: ck.watermarks(broker.bootstrap, topic, p)[1] == end, TIMEOUT_S,
                   f"partition {p}'s high watermark to be {end} (the COMMIT marker written)")

    def read(isolation: str) -> dict[int, list[tuple[int, str]]]:
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None,
                                 isolation_level=isolation, enable_auto_commit=False,
                                 auto_offset_reset="earliest")
        try:
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            got: dict[int, list[tuple[int, str]]] = {0: [], 1: []}

            def at_end() -> bool:
                for tp, messages in consumer.poll(timeout_ms=200).items():
                    got[tp.partition] += [(m.offset, m.value.decode()) for m in messages]
                return all(consumer.position(tp) == end for tp in partitions)

            wait_until(at_end, TIMEOUT_S, f"the {isolation} consumer to reach offset {end}",
                       interval=0)
            return got
        finally:
            consumer.close()

    committed = read("read_committed")
    assert committed == {p: [(4, f"committed{p}"), (5, f"committed{p + 2}")] for p in range(2)}, (
        f"read_committed got {committed}")
    uncommitted = read("read_uncommitted")
    assert uncommitted == {
        p: [(0, f"aborted{p}"), (1, f"aborted{p + 2}"), (2, f"aborted{p + 4}"),
            (4, f"committed{p}"), (5, f"committed{p + 2}")]
        for p in range(2)}, f"read_uncommitted got {uncommitted}"


def test_a_transaction_timeout_above_the_broker_maximum_is_refused_at_once(broker_factory):
    """Kafka's TransactionCoordinator.handleInitProducerId: a transaction.timeout.ms above the
    broker's transaction.max.timeout.ms is refused with INVALID_TRANSACTION_TIMEOUT (50), an
    error librdkafka treats as fatal, so init_transactions raises it at once instead of
    retrying until its own timeout runs out."""
    broker = broker_factory({"transaction.max.timeout.ms": "5000"})
    p = txn_producer(broker.bootstrap, "too-patient-app", {"transaction.timeout.ms": 20_000})
    client_timeout_s = 30.0
    started = time.monotonic()
    with pytest.raises(KafkaException) as raised:
        p.init_transactions(client_timeout_s)
    elapsed = time.monotonic() - started
    del p  # destroyed now, before the broker goes (close() would raise the fatal error again)
    print(f"init_transactions refused after {elapsed:.3f}s: {raised.value}")
    error = ck.kafka_error(raised.value)
    assert error.code() == KafkaError.INVALID_TRANSACTION_TIMEOUT, (
        f"want INVALID_TRANSACTION_TIMEOUT, got {error.name()}: {error}")
    assert error.fatal(), f"librdkafka treats INVALID_TRANSACTION_TIMEOUT as fatal: {error}"
    assert elapsed < 5.0, (
        f"init_transactions took {elapsed:.1f}s (its own timeout {client_timeout_s:g}s): "
        f"the broker's answer should end it at once")

    # The same transactional.id with a timeout within the maximum is accepted.
    ok = txn_producer(broker.bootstrap, "too-patient-app", {"transaction.timeout.ms": 5000})
    ok.init_transactions(TIMEOUT_S)
    ok.close()
