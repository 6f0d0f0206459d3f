"""The admin views of transactions (issue 14, item 5), asked with kafka-python's admin client
while a confluent-kafka (librdkafka) transactional producer holds a transaction open:
ListTransactions, DescribeTransactions, DescribeProducers, and the partition metrics of
/metrics. What each test pins of Kafka's behaviour is in its docstring.
"""

from __future__ import annotations

import time
import urllib.request

import pytest
from kafka import KafkaAdminClient, TopicPartition
from kafka import errors as kafka_errors

import ck
from helpers import free_port, wait_until

TIMEOUT_S = ck.TIMEOUT_S


def metric(http_port: int, series: str) -> float | None:
    """One sample of `series` (name with labels, as written) from the broker's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
    return None


def open_transaction(bootstrap: str, transactional_id: str, topic: str, records: int):
    """A transactional producer with `records` records in partition 0 of `topic`, delivered
    and not committed."""
    p = ck.producer(bootstrap, {"transactional.id": transactional_id,
                                "transaction.timeout.ms": 120_000})
    p.init_transactions(TIMEOUT_S)
    p.begin_transaction()
    for i in range(records):
        p.produce(topic, value=f"v{i}".encode(), partition=0)
    assert p.flush(TIMEOUT_S) == 0, "records still undelivered"
    return p


def test_an_open_transaction_in_every_admin_view(broker_factory):
    """Kafka's ListTransactions (TransactionStateManager.listTransactionStates: state, producer
    id and duration filters; a filter of only unknown states matches nothing), its
    DescribeTransactions (state, producer, timeout, start time, partitions) and
    DescribeProducers (ProducerStateManager's currentTxnFirstOffset and coordinator epoch),
    before and after the commit; the partition's LastStableOffsetLag."""
    http_port = free_port()
    broker = broker_factory({"http.listen": f"127.0.0.1:{http_port}"})
    topic = "txn-admin"
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    started_ms = int(time.time() * 1000)
    p = open_transaction(broker.bootstrap, "admin-app", topic, records=3)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30_000)
    try:
        [listing] = [t for listings in admin.list_transactions().values() for t in listings]
        assert listing.transactional_id == "admin-app"
        assert listing.state.value == "Ongoing"
        producer_id = listing.producer_id
        assert producer_id >= 0

        def listed(**filters) -> list[str]:
            return [t.transactional_id for listings in admin.list_transactions(**filters).values()
                    for t in listings]

        assert listed(state_filters=["Ongoing"]) == ["admin-app"]
        assert listed(state_filters=["CompleteCommit"]) == []
        assert listed(state_filters=["NoSuchState"]) == []
        assert listed(producer_id_filters=[producer_id]) == ["admin-app"]
        assert listed(producer_id_filters=[producer_id + 1000]) == []
        assert listed(duration_filter_ms=3_600_000) == [], "open for less than an hour"
        assert listed(duration_filter_ms=0) == ["admin-app"] or \
            int(time.time() * 1000) == started_ms

        description = admin.describe_transactions(["admin-app"])["admin-app"]
        assert description.state.value == "Ongoing"
        assert description.producer_id == producer_id
        assert description.producer_epoch >= 0
        assert description.transaction_timeout_ms == 120_000
        assert description.transaction_start_time_ms >= started_ms - 1000
        assert description.topic_partitions == {TopicPartition(topic, 0)}
        with pytest.raises(kafka_errors.TransactionalIdNotFoundError):
            admin.describe_transactions(["nobody"])

        [producer] = admin.describe_producers(
            [TopicPartition(topic, 0)])[TopicPartition(topic, 0)].active_producers
        assert producer.producer_id == producer_id
        assert producer.current_transaction_start_offset == 0
        assert producer.coordinator_epoch == -1, "no marker written yet"

        partition0 = f'{{topic="{topic}",partition="0"}}'
        assert metric(http_port, "runnel_partition_ongoing_transactions" + partition0) == 1
        assert metric(http_port, "runnel_partition_last_stable_offset_lag" + partition0) == 3

        p.commit_transaction(TIMEOUT_S)
        wait_until(lambda: listed(state_filters=["CompleteCommit"]) == ["admin-app"],
                   TIMEOUT_S, "the transaction completed")
        description = admin.describe_transactions(["admin-app"])["admin-app"]
        assert description.topic_partitions == set()
        [producer] = admin.describe_producers(
            [TopicPartition(topic, 0)])[TopicPartition(topic, 0)].active_producers
        assert producer.current_transaction_start_offset == -1
        assert producer.coordinator_epoch >= 0, "the COMMIT marker's coordinator epoch"
        wait_until(lambda: metric(http_port, "runnel_partition_last_stable_offset_lag"
                                  + partition0) == 0, TIMEOUT_S, "the LSO at the high watermark")
        assert metric(http_port, "runnel_partition_ongoing_transactions" + partition0) == 0
    finally:
        admin.close()


def test_no_transactions_before_the_first_transactional_producer(broker):
    """Kafka answers ListTransactions with nothing while it coordinates no transactional id,
    and listing creates nothing (no __transaction_state appears). DescribeTransactions is
    sent to the id's coordinator, which the client finds first: FindCoordinator with key type
    1 creates __transaction_state as in Kafka, and the loaded coordinator answers
    TRANSACTIONAL_ID_NOT_FOUND."""
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30_000)
    try:
        assert [t for listings in admin.list_transactions().values() for t in listings] == []
        assert "__transaction_state" not in admin.list_topics()

        def not_found() -> bool:
            try:
                admin.describe_transactions(["nobody"])
            except kafka_errors.TransactionalIdNotFoundError:
                return True
            except kafka_errors.CoordinatorLoadInProgressError:
                return False
            raise AssertionError("an unknown transactional id was described")

        wait_until(not_found, TIMEOUT_S, "TRANSACTIONAL_ID_NOT_FOUND from the coordinator")
        assert "__transaction_state" in admin.list_topics()
    finally:
        admin.close()
