"""Admin APIs that tools and UIs call on their first page, through real clients:
DescribeCluster and Metadata with authorized operations (KIP-430), DescribeLogDirs and
AlterReplicaLogDirs over several `log.dirs` (JBOD), List/AlterPartitionReassignments on one
node, DescribeProducers, and a failed log directory taking only its partitions offline.

confluent-kafka (librdkafka 2.x) has describe_cluster and describe_topics with authorized
operations; it has no call for log dirs, reassignments or producers (nor has the `rdkafka`
crate), so those go through kafka-python 3.0, which has all of them. Each test names the Kafka
behaviour it pins.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

import pytest
from confluent_kafka import KafkaError, TopicCollection
from confluent_kafka import TopicPartition as CkTopicPartition
from confluent_kafka.admin import AclOperation
from kafka import KafkaAdminClient, TopicPartition
from kafka import errors as kafka_errors
from kafka.protocol.consumer.fetch import FetchRequest

import ck
from helpers import batches_length, make_records, wait_until

# AclEntry.supportedOperations(CLUSTER) / (TOPIC): what Kafka returns without an authorizer.
CLUSTER_OPERATIONS = {AclOperation.CREATE, AclOperation.CLUSTER_ACTION,
                      AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS,
                      AclOperation.IDEMPOTENT_WRITE, AclOperation.ALTER, AclOperation.DESCRIBE}
TOPIC_OPERATIONS = {AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE,
                    AclOperation.DESCRIBE, AclOperation.DELETE, AclOperation.ALTER,
                    AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS}



def batch_bytes(segment) -> int:
    """The bytes of a segment file's record batches: its length, less the zero padding after
    the last batch that direct appends (`log.direct.io`) leave in the active segment until it
    is sealed. Kafka's `partition_size` is the log's size, which that padding is not part of."""
    return batches_length(segment.read_bytes())

def kp_admin(broker) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30_000)


def cluster_id_of(broker) -> str:
    text = (broker.data_dir / "meta.properties").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)["cluster.id"]


# ---------------------------------------------------------------------------------------------
# DescribeCluster and authorized operations
# ---------------------------------------------------------------------------------------------

def test_confluent_describe_cluster_with_authorized_operations(broker):
    # AuthHelper.computeDescribeClusterResponse on a broker listener, authorizer = None.
    admin = ck.admin(broker.bootstrap)
    described = admin.describe_cluster(include_authorized_operations=True,
                                       request_timeout=ck.TIMEOUT_S).result(ck.TIMEOUT_S)
    assert described.cluster_id == cluster_id_of(broker)
    assert described.controller.id == 1
    assert [(n.id, n.host, n.port) for n in described.nodes] == [(1, "127.0.0.1", broker.port)]
    assert set(described.authorized_operations) == CLUSTER_OPERATIONS
    plain = admin.describe_cluster(request_timeout=ck.TIMEOUT_S).result(ck.TIMEOUT_S)
    assert plain.authorized_operations is None, "not asked: Kafka's sentinel, no operations"


def test_confluent_describe_topics_with_authorized_operations(broker):
    # KafkaApis.handleTopicMetadataRequest: every topic gets supportedOperations(TOPIC).
    ck.create_topic(broker.bootstrap, "ck-ops", partitions=2)
    admin = ck.admin(broker.bootstrap)
    futures = admin.describe_topics(TopicCollection(["ck-ops"]),
                                    include_authorized_operations=True,
                                    request_timeout=ck.TIMEOUT_S)
    described = futures["ck-ops"].result(ck.TIMEOUT_S)
    assert set(described.authorized_operations) == TOPIC_OPERATIONS
    assert [p.id for p in described.partitions] == [0, 1]
    plain = admin.describe_topics(TopicCollection(["ck-ops"]),
                                  request_timeout=ck.TIMEOUT_S)["ck-ops"].result(ck.TIMEOUT_S)
    assert plain.authorized_operations is None


def test_kafka_python_describe_cluster_and_topics_with_authorized_operations(broker):
    ck.create_topic(broker.bootstrap, "kp-ops", partitions=1)
    admin = kp_admin(broker)
    try:
        cluster = admin.describe_cluster()
        assert cluster["cluster_id"] == cluster_id_of(broker)
        assert cluster["controller_id"] == 1
        assert [b["broker_id"] for b in cluster["brokers"]] == [1]
        assert set(cluster["authorized_operations"]) == {op.name for op in CLUSTER_OPERATIONS}
        [topic, unknown] = admin.describe_topics(["kp-ops", "kp-no-such-topic"])
        assert set(topic["authorized_operations"]) == {op.name for op in TOPIC_OPERATIONS}
        # An unknown topic named in the request gets them too (Kafka sets them on every topic
        # of its `topicMetadata`, errors included).
        assert unknown["error_code"] == KafkaError.UNKNOWN_TOPIC_OR_PART
        assert set(unknown["authorized_operations"]) == {op.name for op in TOPIC_OPERATIONS}
    finally:
        admin.close()


# ---------------------------------------------------------------------------------------------
# List/AlterPartitionReassignments and DescribeProducers
# ---------------------------------------------------------------------------------------------

def test_kafka_python_partition_reassignments_on_one_node(broker):
    # ReplicationControlManager.alterPartitionReassignment / listPartitionReassignments.
    ck.create_topic(broker.bootstrap, "kp-reassign", partitions=2)
    admin = kp_admin(broker)
    try:
        assert admin.list_partition_reassignments() == {}
        t0, t1 = TopicPartition("kp-reassign", 0), TopicPartition("kp-reassign", 1)
        results = admin.alter_partition_reassignments({
            t0: [1],                                  # the current replicas: nothing to do
            t1: [1, 2],                               # broker 2 is not registered
            TopicPartition("kp-reassign", 9): [1],    # no such partition
            TopicPartition("kp-no-such", 0): [1],     # no such topic
        })
        assert results == {
            t0: None,
            t1: kafka_errors.InvalidReplicationAssignmentError,
            TopicPartition("kp-reassign", 9): kafka_errors.UnknownTopicOrPartitionError,
            TopicPartition("kp-no-such", 0): kafka_errors.UnknownTopicOrPartitionError,
        }
        # Cancelling when none is in progress.
        assert admin.alter_partition_reassignments({t0: None}) == {
            t0: kafka_errors.NoReassignmentInProgressError}
        assert admin.list_partition_reassignments({"kp-reassign": [0, 1]}) == {}
        assert admin.list_partition_reassignments() == {}
    finally:
        admin.close()
    metadata = ck.cluster_metadata(broker.bootstrap).topics["kp-reassign"]
    assert [p.replicas for p in metadata.partitions.values()] == [[1], [1]]


def test_kafka_python_describe_producers(broker):
    # ReplicaManager.activeProducerState / UnifiedLog.activeProducers.
    ck.create_topic(broker.bootstrap, "kp-producers", partitions=2)
    before_ms = int(time.time() * 1000) - 3_600_000 - 1000
    records = make_records("producers", keyed=5, unkeyed=0)
    ck.produce(broker.bootstrap, "kp-producers", records, partition=0,
               config={"enable.idempotence": True})
    admin = kp_admin(broker)
    try:
        states = admin.describe_producers(
            [TopicPartition("kp-producers", 0), TopicPartition("kp-producers", 1)])
        [producer] = states[TopicPartition("kp-producers", 0)].active_producers
        assert producer.producer_id >= 0 and producer.producer_epoch >= 0
        assert producer.last_sequence == len(records) - 1
        assert producer.last_timestamp == max(r.timestamp_ms for r in records) > before_ms
        assert producer.coordinator_epoch == -1
        assert producer.current_transaction_start_offset == -1
        assert states[TopicPartition("kp-producers", 1)].active_producers == []
        with pytest.raises(kafka_errors.UnknownTopicOrPartitionError):
            admin.describe_producers([TopicPartition("kp-producers", 5)], broker_id=1)
    finally:
        admin.close()


# ---------------------------------------------------------------------------------------------
# Log directories
# ---------------------------------------------------------------------------------------------

def two_dir_broker(broker_factory, tmp_path, second=None, overrides=None):
    """A broker with `log.dirs` = its data dir and `second` (default: a fresh directory)."""
    second = second or (tmp_path / "second-log-dir")
    first = tmp_path / "broker-data"
    return broker_factory({"log.dirs": f"{first},{second}", **(overrides or {})}), first, second


def log_dirs_of(admin) -> dict[str, dict]:
    [answer] = admin.describe_log_dirs()
    return {d["log_dir"]: d for d in answer["log_dirs"]}


def placed(log_dir: dict, topic: str) -> dict[int, dict]:
    return {p["partition_index"]: p for t in log_dir["topics"] if t["name"] == topic
            for p in t["partitions"]}


def test_kafka_python_describe_log_dirs_one_dir(broker):
    # ReplicaManager.describeLogDirs: one result per log dir, absolute path, sizes, lag 0,
    # total/usable bytes from v4.
    ck.create_topic(broker.bootstrap, "kp-dirs", partitions=2)
    acked = ck.produce(broker.bootstrap, "kp-dirs", make_records("dirs"), partition=1)
    admin = kp_admin(broker)
    try:
        dirs = log_dirs_of(admin)
        assert list(dirs) == [str(broker.data_dir)]
        [d] = dirs.values()
        assert d["error_code"] == 0
        st = os.statvfs(broker.data_dir)
        assert 0 < d["usable_bytes"] <= d["total_bytes"] == st.f_blocks * st.f_frsize
        partitions = placed(d, "kp-dirs")
        assert sorted(partitions) == [0, 1]
        log_bytes = sum(batch_bytes(f) for f in (broker.data_dir / "kp-dirs-1").glob("*.log"))
        assert partitions[1]["partition_size"] == log_bytes > 0 and len(acked) > 0
        assert partitions[0]["partition_size"] == 0
        assert all(p["offset_lag"] == 0 and not p["is_future_key"] for p in partitions.values())
        # Only the partitions asked for are listed; topics without any are left out.
        [answer] = admin.describe_log_dirs({"kp-dirs": [1]})
        [only] = answer["log_dirs"]
        assert [(t["name"], [p["partition_index"] for p in t["partitions"]])
                for t in only["topics"]] == [("kp-dirs", [1])]
    finally:
        admin.close()


def test_new_partitions_go_to_the_dir_with_the_fewest(broker_factory, tmp_path):
    # LogManager.nextLogDirs: fewest partitions first; every log dir gets meta.properties.
    broker, first, second = two_dir_broker(broker_factory, tmp_path)
    ck.create_topic(broker.bootstrap, "spread", partitions=4)
    admin = kp_admin(broker)
    try:
        dirs = log_dirs_of(admin)
        assert set(dirs) == {str(first), str(second)}
        counts = {d: len(placed(v, "spread")) for d, v in dirs.items()}
        assert counts == {str(first): 2, str(second): 2}
        ck.create_topic(broker.bootstrap, "one-more", partitions=1)
        dirs = log_dirs_of(admin)
        assert placed(dirs[str(first)], "one-more"), "a tie goes to the first log dir"
    finally:
        admin.close()
    ids = set()
    for d in (first, second):
        props = dict(line.split("=", 1) for line in (d / "meta.properties").read_text()
                     .splitlines() if "=" in line)
        assert props["node.id"] == "1" and props["cluster.id"] == cluster_id_of(broker)
        ids.add(props["directory.id"])
    assert len(ids) == 2
    assert not (second / "__cluster_metadata-0").exists(), "the metadata log stays in the first"


class BackgroundProducer:
    """Produces to one partition until stopped, recording what was acknowledged."""

    def __init__(self, bootstrap: str, topic: str, partition: int):
        self.log = ck.DeliveryLog()
        self.producer = ck.producer(bootstrap, {"enable.idempotence": True})
        self.topic, self.partition = topic, partition
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        i = 0
        while not self.stop.is_set():
            for record in make_records(f"during-{i}", keyed=4, unkeyed=0):
                ck.send(self.producer, self.topic, record, self.log, self.partition)
            self.producer.poll(0.01)
            i += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(ck.TIMEOUT_S)
        assert self.producer.flush(ck.TIMEOUT_S) == 0


def test_alter_replica_log_dir_moves_a_partition_online_without_losing_a_record(
        broker_factory, tmp_path):
    # ReplicaManager.alterReplicaLogDirs + ReplicaAlterLogDirsThread: a -future replica in the
    # destination, caught up and swapped in while produce goes on.
    broker, first, second = two_dir_broker(broker_factory, tmp_path)
    ck.create_topic(broker.bootstrap, "move", partitions=2)
    admin = kp_admin(broker)
    try:
        source = next(d for d, v in log_dirs_of(admin).items() if 0 in placed(v, "move"))
        dest = str(second) if source == str(first) else str(first)
        before = ck.produce(broker.bootstrap, "move", make_records("before", keyed=400,
                                                                    unkeyed=0), partition=0)
        with BackgroundProducer(broker.bootstrap, "move", 0) as background:
            wait_until(lambda: len(background.log.acked) > 50, ck.TIMEOUT_S,
                       "records produced before the move")
            result = admin.alter_replica_log_dirs({("move", 0, 1): dest})
            assert result == {("move", 0, 1): kafka_errors.NoError}

            def moved():
                dirs = log_dirs_of(admin)
                here = placed(dirs[dest], "move").get(0)
                return (here is not None and not here["is_future_key"]
                        and 0 not in placed(dirs[source], "move"))
            wait_until(moved, 60, "the partition to live in the destination")
            acked_at_swap = len(background.log.acked)
            wait_until(lambda: len(background.log.acked) > acked_at_swap + 50, ck.TIMEOUT_S,
                       "records produced after the move")
        assert not background.log.failed, background.log.failed[:3]
        acked = before + background.log.acked
        paths = {str(first): first, str(second): second}
        assert (paths[dest] / "move-0").is_dir()
        assert not (paths[source] / "move-0").exists()
        assert not [d for d in paths[dest].iterdir() if d.name.endswith("-future")]
        # Unknown dir, unknown partition: Kafka's errors.
        assert admin.alter_replica_log_dirs({("move", 0, 1): "/no/such/dir"}) == {
            ("move", 0, 1): kafka_errors.LogDirNotFoundError}
        assert admin.alter_replica_log_dirs({("move", 7, 1): dest}) == {
            ("move", 7, 1): kafka_errors.UnknownTopicOrPartitionError}
    finally:
        admin.close()

    def read_back():
        got = ck.consume_all(broker.bootstrap, "move", partitions=1)
        assert [(s.offset, s.record.value) for s in got] == sorted(
            (s.offset, s.record.value) for s in acked)
    read_back()
    broker.stop()
    broker.start()
    read_back()


def fetch_error(admin: KafkaAdminClient, topic: str, partition: int) -> int:
    """The error code of a raw Fetch (v11) of one partition from offset 0, sent to node 1."""
    part = FetchRequest.FetchTopic.FetchPartition(
        partition=partition, fetch_offset=0, partition_max_bytes=1 << 16,
        current_leader_epoch=-1, log_start_offset=-1)
    request = FetchRequest(replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 16,
                           isolation_level=0, version=11,
                           topics=[FetchRequest.FetchTopic(topic=topic, partitions=[part])])

    async def send():
        return await admin._manager.send(request, node_id=1)
    response = admin._manager.run(send)
    [answer] = [p for t in response.responses for p in t.partitions]
    return answer.error_code


def test_a_failed_log_dir_takes_only_its_partitions_offline(broker_factory, tmp_path):
    # LogDirFailureChannel: the dir goes offline, its partitions get KAFKA_STORAGE_ERROR,
    # DescribeLogDirs reports it; the broker and the other dir go on.
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root (CI runs as root)")
    small = tmp_path / "small-log-dir"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(small)], check=True)
    broker = None
    try:
        broker, first, _ = two_dir_broker(broker_factory, tmp_path, second=small,
                                          overrides={"log.segment.bytes": "1048576"})
        ck.create_topic(broker.bootstrap, "fill", partitions=2)
        admin = kp_admin(broker)
        try:
            on_small = [p for p in placed(log_dirs_of(admin)[str(small)], "fill")]
            assert len(on_small) == 1
            [full], [healthy] = on_small, [p for p in (0, 1) if p not in on_small]
            kept = ck.produce(broker.bootstrap, "fill", make_records("kept"), partition=healthy)
            # Fill the tmpfs until an append fails.
            p = ck.producer(broker.bootstrap, {"retries": 0, "message.timeout.ms": 10_000})
            log = ck.DeliveryLog()
            big = make_records("filler", keyed=1, unkeyed=0)[0]
            big = type(big)(big.key, b"x" * 200_000, (), big.timestamp_ms)

            def storage_error():
                ck.send(p, "fill", big, log, full)
                p.flush(ck.TIMEOUT_S)
                return any(e.code() == KafkaError.KAFKA_STORAGE_ERROR for _, e in log.failed)
            wait_until(storage_error, 60, "an append to fail on the full tmpfs", interval=0)

            dirs = log_dirs_of(admin)
            assert dirs[str(small)]["error_code"] == KafkaError.KAFKA_STORAGE_ERROR
            assert dirs[str(small)]["topics"] == []
            assert dirs[str(first)]["error_code"] == 0
            # Metadata: the offline partition has no leader; the other is led as before.
            meta = ck.cluster_metadata(broker.bootstrap).topics["fill"].partitions
            assert meta[full].leader == -1
            assert meta[full].error.code() == KafkaError.LEADER_NOT_AVAILABLE
            assert meta[healthy].leader == 1 and meta[healthy].error is None
            # The healthy partition still takes and serves records.
            more = ck.produce(broker.bootstrap, "fill", make_records("more"), partition=healthy)
            # A client that knows no leader sends no fetch; one sent anyway (kafka-python's
            # connection, raw) is answered KAFKA_STORAGE_ERROR as Kafka's offline partition.
            assert fetch_error(admin, "fill", full) == KafkaError.KAFKA_STORAGE_ERROR
            assert fetch_error(admin, "fill", healthy) == 0
        finally:
            admin.close()
        assert broker.running(), "the broker keeps serving"
        healthy_records = []
        consumer = ck.assign_only_consumer(broker.bootstrap)
        try:
            consumer.assign([CkTopicPartition("fill", healthy, 0)])

            def read_all():
                msg = consumer.poll(0.2)
                if msg is not None and msg.error() is None:
                    healthy_records.append(msg.value())
                return len(healthy_records) >= len(kept) + len(more)
            wait_until(read_all, ck.TIMEOUT_S, "the healthy partition's records", interval=0)
        finally:
            consumer.close()
        assert healthy_records == [s.record.value for s in kept + more]
        broker.kill()
        assert (small / f"fill-{full}").is_dir(), "nothing in the failed dir was deleted"
    finally:
        if broker is not None:
            broker.kill()  # before the unmount: its open files would keep the mount busy
        subprocess.run(["umount", str(small)], check=False)


def test_a_log_dir_unusable_at_start_is_offline_and_the_rest_serve(broker_factory, tmp_path):
    # LogManager.createAndValidateLogDirs: an unusable dir is offline, not fatal (unless it is
    # the only one, or the metadata's).
    not_a_dir = tmp_path / "not-a-dir"
    not_a_dir.write_text("a file where a log dir should be")
    broker, first, _ = two_dir_broker(broker_factory, tmp_path, second=not_a_dir)
    ck.create_topic(broker.bootstrap, "starts", partitions=2)
    acked = ck.produce(broker.bootstrap, "starts", make_records("starts"))
    admin = kp_admin(broker)
    try:
        dirs = log_dirs_of(admin)
        assert dirs[str(not_a_dir)]["error_code"] == KafkaError.KAFKA_STORAGE_ERROR
        assert sorted(placed(dirs[str(first)], "starts")) == [0, 1]
    finally:
        admin.close()
    got = ck.consume_all(broker.bootstrap, "starts", partitions=2)
    assert sorted((s.partition, s.offset) for s in got) == sorted(
        (s.partition, s.offset) for s in acked)
    assert not_a_dir.read_text() == "a file where a log dir should be"
