"""Kafka's own KRaft `server.properties` (config/kraft/server.properties of Kafka 3.7: a
combined broker+controller, `controller.quorum.voters=1@localhost:9093`, a PLAINTEXT and a
CONTROLLER listener) starts a Runnel node as it is, only its ports and log directory changed;
confluent-kafka and kafka-python produce to it and consume from it on the client listener,
and are told the advertised one. A configuration Kafka's KRaft start-up checks refuse
(`KafkaConfig.validateValues`: roles, voters and listener rules) is refused at start with the
reason.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

import ck
from helpers import Broker, free_port, runnel_bin

KAFKA_KRAFT_PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@localhost:{controller}
listeners=PLAINTEXT://:{client},CONTROLLER://:{controller}
inter.broker.listener.name=PLAINTEXT
advertised.listeners=PLAINTEXT://localhost:{client}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.dirs={log_dirs}
num.partitions=1
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
"""


@dataclass
class ConfiguredBroker(Broker):
    """A broker started from a properties file only (no --listen or --data-dir flags)."""

    config_file: Path | None = None

    def command(self) -> list[str]:
        return [str(self.binary), "server", "--config", str(self.config_file)]


def write_config(tmp_path: Path, client: int, **changes: str) -> Path:
    text = KAFKA_KRAFT_PROPERTIES.format(client=client, controller=free_port(),
                                         log_dirs=tmp_path / "kraft-combined-logs")
    for key, value in changes.items():
        text += f"{key.replace('_', '.')}={value}\n"
    path = tmp_path / "server.properties"
    path.write_text(text)
    return path


def test_kafkas_kraft_server_properties_start_a_node_clients_use(tmp_path):
    client_port = free_port()
    config = write_config(tmp_path, client_port)
    broker = ConfiguredBroker(runnel_bin(), tmp_path / "kraft-combined-logs", client_port,
                              tmp_path / "broker.log", config_file=config)
    broker.start()
    try:
        metadata = ck.admin(broker.bootstrap).list_topics(timeout=ck.TIMEOUT_S)
        assert [(b.host, b.port) for b in metadata.brokers.values()] == [("localhost", client_port)]
        ck.create_topic(broker.bootstrap, "kraft-file", 1)
        records = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(10)]
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
        for key, value in records:
            producer.send("kraft-file", key=key, value=value)
        producer.flush(timeout=ck.TIMEOUT_S)
        producer.close()
        consumer = KafkaConsumer("kraft-file", bootstrap_servers=broker.bootstrap,
                                 auto_offset_reset="earliest",
                                 consumer_timeout_ms=int(ck.TIMEOUT_S * 1000))
        got = []
        for message in consumer:
            got.append((message.key, message.value))
            if len(got) == len(records):
                break
        consumer.close()
        assert got == records
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            assert admin.describe_cluster()["controller_id"] == 1
            # DescribeQuorum: a quorum of one, this node its leader and only voter.
            [partition] = admin.describe_metadata_quorum()["topics"][0]["partitions"]
            assert (partition["error"], partition["leader_id"]) == (None, 1), partition
            assert [v["replica_id"] for v in partition["current_voters"]] == [1]
            assert partition["current_voters"][0]["log_end_offset"] > 0
        finally:
            admin.close()
        log = broker.log_path.read_text()
        assert "unknown config key" not in log, log
        assert "not bound: a quorum of one has no peer to serve" in log
    finally:
        broker.kill()


def test_what_kafkas_kraft_checks_refuse_is_refused_at_start(tmp_path):
    for changes, reason in [
        # Kafka's rule: a broker-only node is not one of the voters.
        ({"process_roles": "broker"}, "which is among the voters: a broker-only node"),
        # Kafka's rule: a controller-only node listens on controller listeners only.
        ({"process_roles": "controller"}, "must contain only controller listeners"),
        ({"controller_quorum_voters": "2@localhost:1,3@localhost:2,4@localhost:3"},
         "which is not among the voters (2, 3, 4)"),
        ({"node_id": "2"}, "this is node.id 2, which is not among the voters (1)"),
    ]:
        config = write_config(tmp_path, free_port(), **changes)
        done = subprocess.run([str(runnel_bin()), "server", "--config", str(config)],
                              capture_output=True, text=True, timeout=ck.TIMEOUT_S)
        assert done.returncode != 0, changes
        assert reason in done.stderr, (changes, done.stderr)


def describe_cluster(bootstrap: str) -> dict:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return admin.describe_cluster()
    finally:
        admin.close()


def test_the_broker_registers_its_address_and_rack_and_a_restart_replaces_them(tmp_path):
    """Kafka's BrokerRegistration: each start records the node's client endpoint and
    `broker.rack` in the metadata log, a later registration of the node replacing the earlier
    one (RegisterBrokerRecord); Metadata and DescribeCluster list the registered brokers and
    name the active controller."""
    first_port = free_port()
    config = write_config(tmp_path, first_port, broker_rack="rack-a")
    data_dir = tmp_path / "kraft-combined-logs"
    broker = ConfiguredBroker(runnel_bin(), data_dir, first_port, tmp_path / "first.log",
                              config_file=config)
    broker.start()
    try:
        cluster = describe_cluster(broker.bootstrap)
        assert cluster["controller_id"] == 1
        assert [(b["broker_id"], b["host"], b["port"], b["rack"]) for b in cluster["brokers"]] == [
            (1, "localhost", first_port, "rack-a")]
    finally:
        broker.stop()

    second_port = free_port()
    config = write_config(tmp_path, second_port, broker_rack="rack-b")
    broker = ConfiguredBroker(runnel_bin(), data_dir, second_port, tmp_path / "second.log",
                              config_file=config)
    broker.start()
    try:
        metadata = ck.admin(broker.bootstrap).list_topics(timeout=ck.TIMEOUT_S)
        assert [(b.id, b.host, b.port) for b in metadata.brokers.values()] == [
            (1, "localhost", second_port)]
        cluster = describe_cluster(broker.bootstrap)
        assert [(b["port"], b["rack"]) for b in cluster["brokers"]] == [(second_port, "rack-b")]
    finally:
        broker.stop()
