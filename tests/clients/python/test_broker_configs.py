"""Dynamic broker configs (KIP-226) through real admin clients.

Pins Kafka's behaviour as `ConfigHelper` (DescribeConfigs on BROKER resources),
`ConfigAdminManager` and `DynamicBrokerConfig` (alterations) implement it in Kafka 4.1:
- DescribeConfigs on broker `1` lists every broker config (about 290 here) with its source:
  DYNAMIC_BROKER_CONFIG over DYNAMIC_DEFAULT_BROKER_CONFIG over STATIC_BROKER_CONFIG
  (`--override` as server.properties) over DEFAULT_CONFIG, synonyms in that order, read-only
  flags from `ALL_DYNAMIC_CONFIGS`, sensitive values null; on the cluster default (`""`) only
  the configs set there, with source DYNAMIC_DEFAULT_BROKER_CONFIG.
- A config that is not dynamic is refused with INVALID_REQUEST and
  "Cannot update these configs dynamically: Set(...)"; a per-broker one on the cluster
  default, and a bad value, with INVALID_REQUEST too (KAFKA-13609).
- Changes are kept in the metadata log, so they survive a restart, and the log defaults apply
  to topics at once (a topic's effective retention.ms; message.max.bytes refusing a batch).

librdkafka refuses a resource with an empty name before sending it (`rd_kafka_ConfigResource_new`)
and kafka-python's admin wants an integer broker name, so the cluster default is reached
through kafka-python's own request classes and connection (its encoder, its socket) instead of
its admin facade.
"""

from __future__ import annotations

import socket
import struct

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewTopic, ResourceType)
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource as KpConfigResource
from kafka.admin import ConfigResourceType
from kafka.protocol.admin import DescribeConfigsRequest, IncrementalAlterConfigsRequest

import ck

BROKER = ConfigResource(ResourceType.BROKER, "1")
SET, DELETE = 0, 1
INVALID_REQUEST = 42


class ClusterDefault:
    """The cluster-default broker resource (empty name), through kafka-python's protocol."""

    def __init__(self, bootstrap: str) -> None:
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)

    def _send(self, request):
        async def send():
            return await self.admin._manager.send(request)
        return self.admin._manager.run(send)

    def describe(self) -> dict:
        response = self._send(DescribeConfigsRequest(
            resources=[(ConfigResourceType.BROKER.value, "", None)], include_synonyms=True))
        (result,) = response.results
        assert result.error_code == 0, result
        return {config.name: config.to_dict() for config in result.configs}

    def alter(self, *operations: tuple[str, int, str | None],
              name: str = "") -> tuple[int, str | None]:
        response = self._send(IncrementalAlterConfigsRequest(
            resources=[(ConfigResourceType.BROKER.value, name, list(operations))],
            validate_only=False))
        (result,) = response.responses
        return result.error_code, result.error_message or None

    def close(self) -> None:
        self.admin.close()


def describe(admin, resource: ConfigResource) -> dict:
    return admin.describe_configs([resource])[resource].result(ck.TIMEOUT_S)


def topic_config(admin, topic: str, name: str):
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return describe(admin, resource)[name]


def alter(admin, name: str, *entries: ConfigEntry, validate_only: bool = False) -> None:
    resource = ConfigResource(ResourceType.BROKER, name, incremental_configs=list(entries))
    admin.incremental_alter_configs([resource], validate_only=validate_only)[resource].result(
        ck.TIMEOUT_S)


def set_(name: str, value: str) -> ConfigEntry:
    return ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)


def delete(name: str) -> ConfigEntry:
    return ConfigEntry(name, None, incremental_operation=AlterConfigOpType.DELETE)


def refused(admin, resource_name: str, *entries: ConfigEntry) -> KafkaError:
    with pytest.raises(KafkaException) as caught:
        alter(admin, resource_name, *entries)
    return caught.value.args[0]


def synonym_sources(entry) -> list[tuple[str, int]]:
    return [(s.name, s.source) for s in entry.synonyms.values()]


def produce_error(bootstrap: str, topic: str, size: int):
    errors = []
    p = ck.producer(bootstrap, {"message.max.bytes": 10_000_000, "retries": 0})
    p.produce(topic, value=b"x" * size, partition=0, on_delivery=lambda err, msg: errors.append(err))
    assert p.flush(ck.TIMEOUT_S) == 0
    return errors[0]


def test_confluent_kafka_describes_every_broker_config_with_its_source(broker_factory):
    broker = broker_factory({"log.retention.hours": "100"})
    admin = ck.admin(broker.bootstrap)
    configs = describe(admin, BROKER)
    assert len(configs) >= 200, len(configs)

    hours = configs["log.retention.hours"]
    assert (hours.value, hours.source) == ("100", ConfigSource.STATIC_BROKER_CONFIG.value)
    assert hours.is_read_only
    retention = configs["log.retention.ms"]
    assert retention.value == str(100 * 3_600_000)
    assert retention.source == ConfigSource.DEFAULT_CONFIG.value
    assert not retention.is_read_only
    segment = configs["log.segment.bytes"]
    assert (segment.value, segment.source) == ("1073741824", ConfigSource.DEFAULT_CONFIG.value)
    assert configs["log.dirs"].is_read_only
    assert configs["node.id"].value == "1"
    password = configs["ssl.key.password"]
    assert password.is_sensitive and password.value is None
    # Runnel's own default where it departs from Kafka's (durable by default).
    assert configs["log.flush.interval.messages"].value == "1"
    # The cluster default lists only what is set on it: nothing yet.
    cluster_default = ClusterDefault(broker.bootstrap)
    try:
        assert cluster_default.describe() == {}
    finally:
        cluster_default.close()


def test_confluent_kafka_alters_broker_configs_live_and_across_a_restart(broker):
    admin = ck.admin(broker.bootstrap)
    cluster_default = ClusterDefault(broker.bootstrap)
    try:
        alter_live_and_restart(broker, admin, cluster_default)
    finally:
        cluster_default.close()


def alter_live_and_restart(broker, admin, cluster_default: ClusterDefault) -> None:
    topic = "inherits"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(ck.TIMEOUT_S)
    assert topic_config(admin, topic, "retention.ms").value == "604800000"

    # The cluster default: the topic inherits it at once.
    assert cluster_default.alter(("log.retention.ms", SET, "1000000")) == (0, None)
    retention = topic_config(admin, topic, "retention.ms")
    assert retention.value == "1000000"
    assert retention.source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
    default = cluster_default.describe()
    assert list(default) == ["log.retention.ms"]
    assert default["log.retention.ms"]["value"] == "1000000"
    assert default["log.retention.ms"]["config_source"] == \
        ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
    # A per-broker config is refused on the cluster default.
    code, message = cluster_default.alter(("listeners", SET, "PLAINTEXT://127.0.0.1:1"))
    assert code == INVALID_REQUEST and "broker id must be specified" in message, message

    # This broker's own value wins over the cluster default; a smaller message.max.bytes
    # refuses a batch the topic (with no override of its own) took before.
    assert produce_error(broker.bootstrap, topic, 5_000) is None
    alter(admin, "1", set_("log.retention.ms", "2000000"), set_("message.max.bytes", "3000"))
    retention = topic_config(admin, topic, "retention.ms")
    assert (retention.value, retention.source) == (
        "2000000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    error = produce_error(broker.bootstrap, topic, 5_000)
    assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE, error
    entry = describe(admin, BROKER)["log.retention.ms"]
    assert (entry.value, entry.source) == ("2000000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    # confluent-kafka keys synonyms by name (the layers of one name collapse); the layers'
    # order is checked through kafka-python below.
    assert set(entry.synonyms) == {"log.retention.ms", "log.retention.minutes",
                                   "log.retention.hours"}

    # validate_only changes nothing.
    alter(admin, "1", set_("log.segment.bytes", "2000000"), validate_only=True)
    assert describe(admin, BROKER)["log.segment.bytes"].value == "1073741824"

    # Refusals, with Kafka's codes and messages.
    error = refused(admin, "1", set_("log.dirs", "/elsewhere"))
    assert error.code() == KafkaError.INVALID_REQUEST, error
    assert "Cannot update these configs dynamically: Set(log.dirs)" in error.str(), error
    error = refused(admin, "1", set_("log.retention.ms", "soon"))
    assert error.code() == KafkaError.INVALID_REQUEST, error
    assert "Not a number of type LONG" in error.str(), error
    # Another node's resource, sent to this one (librdkafka would route it to node 2).
    code, message = cluster_default.alter(("log.retention.ms", SET, "1"), name="2")
    assert (code, message) == (INVALID_REQUEST, "Unexpected broker id, expected 1, but received 2")

    # Everything survives a restart: the values, their sources, and their effect.
    cluster_default.close()
    broker.stop()
    broker.start()
    admin = ck.admin(broker.bootstrap)
    cluster_default.__init__(broker.bootstrap)
    entry = describe(admin, BROKER)["log.retention.ms"]
    assert (entry.value, entry.source) == ("2000000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
    assert cluster_default.describe()["log.retention.ms"]["value"] == "1000000"
    assert topic_config(admin, topic, "retention.ms").value == "2000000"
    error = produce_error(broker.bootstrap, topic, 5_000)
    assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE, error

    # DELETE falls back to the cluster default, then to the static configuration.
    alter(admin, "1", delete("log.retention.ms"), delete("message.max.bytes"))
    retention = topic_config(admin, topic, "retention.ms")
    assert (retention.value, retention.source) == (
        "1000000", ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value)
    assert produce_error(broker.bootstrap, topic, 5_000) is None
    assert cluster_default.alter(("log.retention.ms", DELETE, None)) == (0, None)
    assert topic_config(admin, topic, "retention.ms").value == "604800000"
    assert cluster_default.describe() == {}


def test_kafka_python_describes_and_alters_broker_configs(broker):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=10_000)
    try:
        resource = KpConfigResource(ConfigResourceType.BROKER, "1")
        described = admin.describe_configs([resource], config_filter="all")
        configs = described["broker"]["1"]
        assert len(configs) >= 200, len(configs)
        assert configs["log.cleaner.backoff.ms"]["value"] == "15000"
        assert configs["log.cleaner.backoff.ms"]["config_source"] == "DEFAULT_CONFIG"
        assert configs["log.cleaner.backoff.ms"]["read_only"] is False
        assert configs["log.dirs"]["read_only"] is True

        # IncrementalAlterConfigs (kafka-python's choice when the broker serves it).
        result = admin.alter_configs([KpConfigResource(
            ConfigResourceType.BROKER, "1", configs={"log.cleaner.backoff.ms": "20000"})])
        assert result["broker"]["1"] == "OK", result
        # The legacy AlterConfigs.
        result = admin.alter_configs([KpConfigResource(
            ConfigResourceType.BROKER, "1", configs={"log.retention.bytes": "123456789"})],
            incremental=False)
        assert result["broker"]["1"] == "OK", result
        configs = admin.describe_configs([resource], include_synonyms=True,
                                         config_filter="modified")["broker"]["1"]
        assert configs["log.retention.bytes"]["value"] == "123456789"
        assert configs["log.retention.bytes"]["config_source"] == "DYNAMIC_BROKER_CONFIG"
        assert [(s["name"], s["source"]) for s in configs["log.retention.bytes"]["synonyms"]] == [
            ("log.retention.bytes", "DYNAMIC_BROKER_CONFIG"),
            ("log.retention.bytes", "DEFAULT_CONFIG"),
        ]
        # kafka-python re-sends the other modified configs with AlterConfigs, which replaces
        # the resource's set whole.
        assert configs["log.cleaner.backoff.ms"]["value"] == "20000"

        # A read-only config, refused as Kafka refuses it.
        result = admin.alter_configs([KpConfigResource(
            ConfigResourceType.BROKER, "1", configs={"num.partitions": "3"})],
            raise_on_unknown=False)
        assert "InvalidRequest" in result["broker"]["1"], result
        assert "Cannot update these configs dynamically: Set(num.partitions)" in \
            result["broker"]["1"], result
    finally:
        admin.close()


def answers_api_versions(sock: socket.socket) -> bool:
    """Sends ApiVersions v0 on a raw connection: True if answered, False if the broker closed
    the connection instead (a connection over its IP's limit is closed at accept)."""
    client_id = b"limit-probe"
    body = struct.pack(">hhih", 18, 0, 1, len(client_id)) + client_id
    try:
        sock.sendall(struct.pack(">i", len(body)) + body)
        return len(sock.recv(4)) == 4
    except (ConnectionResetError, BrokenPipeError):
        return False


def test_connection_limits_change_live(broker):
    """max.connections.per.ip.overrides is cluster-wide dynamic in Kafka (SocketServer's
    reconfigurable configs): new connections get the new limit at once."""
    admin = ck.admin(broker.bootstrap)
    assert describe(admin, BROKER)["max.connections.per.ip.overrides"].value == ""
    alter(admin, "1", set_("max.connections.per.ip.overrides", "127.0.0.1:3"))
    # The admin client holds at least one connection, so one of three new ones is refused.
    sockets = [socket.create_connection(("127.0.0.1", broker.port), timeout=ck.TIMEOUT_S)
               for _ in range(3)]
    try:
        answered = [answers_api_versions(sock) for sock in sockets]
        assert False in answered, answered
    finally:
        for sock in sockets:
            sock.close()
    alter(admin, "1", set_("max.connections.per.ip", "1000"),
          delete("max.connections.per.ip.overrides"))
    sockets = [socket.create_connection(("127.0.0.1", broker.port), timeout=ck.TIMEOUT_S)
               for _ in range(3)]
    try:
        assert all(answers_api_versions(sock) for sock in sockets)
    finally:
        for sock in sockets:
            sock.close()
    entry = describe(admin, BROKER)["max.connections.per.ip"]
    assert (entry.value, entry.source) == ("1000", ConfigSource.DYNAMIC_BROKER_CONFIG.value)
