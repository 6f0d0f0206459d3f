"""SASL/PLAIN on a SASL_PLAINTEXT listener through real clients: confluent-kafka, kafka-python
and kcat (librdkafka 2.0.2) authenticate with a user from the listener's JAAS config, produce
and consume; a wrong password is refused with an authentication error."""

from __future__ import annotations

import logging
import subprocess

import pytest
from confluent_kafka import KafkaError, Producer
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError as KpKafkaError

import ck
from helpers import make_records, wait_until

JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
        'username="admin" password="admin-secret" user_admin="admin-secret" '
        'user_alice="alice-secret";')
SASL_OVERRIDES = {
    "listeners": "SASL_PLAINTEXT://127.0.0.1:0",
    "sasl.enabled.mechanisms": "PLAIN",
    "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
}


def librdkafka_sasl(user: str, password: str) -> dict:
    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
            "sasl.username": user, "sasl.password": password}


@pytest.fixture
def sasl_broker(broker_factory):
    return broker_factory(SASL_OVERRIDES)


def test_confluent_kafka_authenticates_produces_and_consumes(sasl_broker):
    bootstrap, topic = sasl_broker.bootstrap, "secured"
    alice = librdkafka_sasl("alice", "alice-secret")
    acked = ck.produce(bootstrap, topic, make_records(topic, keyed=5, unkeyed=0), partition=0,
                       config=alice)
    stored = ck.consume_all(bootstrap, topic, partitions=1, config=alice)
    assert [s.record.value for s in stored] == [a.record.value for a in acked]


def test_confluent_kafka_with_a_wrong_password_gets_an_authentication_error(sasl_broker):
    errors: list[KafkaError] = []
    p = Producer({"bootstrap.servers": sasl_broker.bootstrap,
                  **librdkafka_sasl("alice", "wrong"),
                  "error_cb": errors.append})
    p.produce("secured", value=b"never")

    def refused():
        p.poll(0.1)
        return any(e.code() == KafkaError._AUTHENTICATION for e in errors)
    wait_until(refused, ck.TIMEOUT_S, "an authentication error", interval=0)
    assert any("Authentication failed" in e.str() for e in errors), errors
    assert p.flush(0) == 1, "the record was not sent"


def test_kafka_python_authenticates_and_a_wrong_password_is_refused(sasl_broker, caplog):
    bootstrap, topic = sasl_broker.bootstrap, "secured-kp"
    sasl = {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
            "sasl_plain_username": "alice"}
    producer = KafkaProducer(bootstrap_servers=bootstrap, sasl_plain_password="alice-secret",
                             **sasl)
    try:
        metadata = producer.send(topic, b"hello").get(timeout=ck.TIMEOUT_S)
        assert metadata.offset == 0
    finally:
        producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, sasl_plain_password="alice-secret",
                             group_id=None, auto_offset_reset="earliest", **sasl)
    try:
        consumer.assign([TopicPartition(topic, 0)])
        seen = []
        wait_until(lambda: seen.extend(m.value for ms in consumer.poll(200).values()
                                       for m in ms) or seen, ck.TIMEOUT_S, "the record")
        assert seen == [b"hello"]
    finally:
        consumer.close()
    # A wrong password: kafka-python gives up bootstrapping, having logged the broker's
    # SASL_AUTHENTICATION_FAILED (error 58).
    with caplog.at_level(logging.WARNING, logger="kafka"), pytest.raises(KpKafkaError):
        KafkaProducer(bootstrap_servers=bootstrap, sasl_plain_password="wrong",
                      bootstrap_timeout_ms=3000, **sasl)
    assert "SaslAuthenticationFailedError" in caplog.text, caplog.text


def test_kcat_authenticates(sasl_broker):
    bootstrap, topic = sasl_broker.bootstrap, "secured-kcat"
    options = ["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=PLAIN",
               "-X", "sasl.username=admin", "-X", "sasl.password=admin-secret"]

    def kcat(*args, stdin=None):
        return subprocess.run(["kcat", "-b", bootstrap, *options, *args], input=stdin,
                              capture_output=True, text=True, timeout=60)
    produced = kcat("-P", "-t", topic, stdin="one\ntwo\n")
    assert produced.returncode == 0, produced.stderr
    consumed = kcat("-C", "-t", topic, "-o", "beginning", "-e", "-q")
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.split() == ["one", "two"]
