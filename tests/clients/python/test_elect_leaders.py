"""ElectLeaders through confluent-kafka and kafka-python: on a single node every partition is
led by its preferred replica already, so an election is ELECTION_NOT_NEEDED (nothing moves),
an unknown partition is UNKNOWN_TOPIC_OR_PART, and electing everywhere reports nothing."""

from __future__ import annotations

from confluent_kafka import ElectionType, KafkaError, TopicPartition
from kafka import KafkaAdminClient

import ck


def test_confluent_kafka_elections_are_not_needed(broker):
    topic = "ck-elect"
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    admin = ck.admin(broker.bootstrap)
    asked = [TopicPartition(topic, 0), TopicPartition(topic, 1), TopicPartition(topic, 7)]
    for election in (ElectionType.PREFERRED, ElectionType.UNCLEAN):
        results = admin.elect_leaders(election, asked).result(ck.TIMEOUT_S)
        codes = {tp.partition: (None if err is None else err.code())
                 for tp, err in results.items()}
        assert codes == {0: KafkaError.ELECTION_NOT_NEEDED, 1: KafkaError.ELECTION_NOT_NEEDED,
                         7: KafkaError.UNKNOWN_TOPIC_OR_PART}, (election, codes)
    assert admin.elect_leaders(ElectionType.PREFERRED, None).result(ck.TIMEOUT_S) == {}
    metadata = ck.cluster_metadata(broker.bootstrap).topics[topic]
    assert [p.leader for p in metadata.partitions.values()] == [1, 1], "leaders unchanged"


def test_kafka_python_elections_are_not_needed(broker):
    topic = "kp-elect"
    ck.create_topic(broker.bootstrap, topic, partitions=2)
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        # kafka-python treats ELECTION_NOT_NEEDED as success and returns the response.
        response = admin.elect_leaders(0, {topic: [0, 1]})
        codes = [(r.topic, p.partition_id, p.error_code)
                 for r in response.replica_election_results for p in r.partition_result]
        assert codes == [(topic, 0, KafkaError.ELECTION_NOT_NEEDED),
                         (topic, 1, KafkaError.ELECTION_NOT_NEEDED)]
    finally:
        admin.close()
