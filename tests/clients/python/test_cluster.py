"""A cluster of three combined nodes started by hand with Kafka's KRaft config names: one
metadata quorum (Raft), one cluster id chosen when it first starts, every broker registered
and listed by every node, partitions spread over the brokers, admin requests from any node
carried to the active controller, and a new active controller elected when one is killed.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import pytest
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewPartitions as KafkaNewPartitions
from kafka.admin import NewTopic as KafkaNewTopic

import ck
from cluster import Cluster, find_coordinator_v1_on, own_metadata
from helpers import Broker, free_port, runnel_bin, wait_until


@pytest.fixture
def cluster(tmp_path, request):
    nodes = Cluster(tmp_path, 3)
    request.node._runnel_brokers = nodes.nodes
    nodes.start()
    yield nodes
    nodes.kill()


def meta_properties(node) -> dict[str, str]:
    text = (node.data_dir / "meta.properties").read_text()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def brokers_seen_by_confluent(bootstrap: str) -> list[tuple[int, str, int]]:
    metadata = ck.admin(bootstrap).list_topics(timeout=ck.TIMEOUT_S)
    return sorted((b.id, b.host, b.port) for b in metadata.brokers.values())


def brokers_seen_by_kafka_python(bootstrap: str) -> list[tuple[int, str, int]]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        cluster = admin.describe_cluster()
        return sorted((b["broker_id"], b["host"], b["port"]) for b in cluster["brokers"])
    finally:
        admin.close()


def describe_quorum(bootstrap: str) -> dict:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return admin.describe_metadata_quorum()
    finally:
        admin.close()


def leader_epochs(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's leader epoch in Metadata (kafka-python's describe_topics, v7+)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        [described] = admin.describe_topics([topic])
        return {p["partition_index"]: p["leader_epoch"] for p in described["partitions"]}
    finally:
        admin.close()


def leaders(bootstrap: str, topic: str) -> dict[int, int]:
    metadata = ck.admin(bootstrap).list_topics(topic, timeout=ck.TIMEOUT_S)
    return {p.id: p.leader for p in metadata.topics[topic].partitions.values()}


def test_three_nodes_started_by_hand_form_one_cluster_every_client_uses(cluster):
    expected = sorted((n.node_id, "127.0.0.1", n.port) for n in cluster.nodes)
    # Every client sees all three brokers from any one of them.
    for node in cluster.nodes:
        assert brokers_seen_by_confluent(node.bootstrap) == expected, node.node_id
        assert brokers_seen_by_kafka_python(node.bootstrap) == expected, node.node_id
    # One cluster id, chosen once by the quorum, in every node's meta.properties.
    ids = {meta_properties(n)["cluster.id"] for n in cluster.nodes}
    assert len(ids) == 1, ids
    assert [meta_properties(n)["node.id"] for n in cluster.nodes] == ["1", "2", "3"]

    # Created through a node that is not the active controller: carried to it.
    leader = cluster.active_controller()
    follower = next(n for n in cluster.nodes if n is not leader)
    admin = KafkaAdminClient(bootstrap_servers=follower.bootstrap)
    try:
        admin.create_topics([KafkaNewTopic("spread", 6, 1)], timeout_ms=30_000)
    finally:
        admin.close()
    placed = wait_until(lambda: (lambda l: l if set(l.values()) == {1, 2, 3} else None)(
        leaders(cluster.bootstrap(), "spread")), ck.TIMEOUT_S, "six partitions led by all three")
    assert sorted(placed) == list(range(6))
    # Round robin: each broker leads two of the six.
    assert sorted(list(placed.values()).count(n) for n in (1, 2, 3)) == [2, 2, 2]
    # Each partition's directory is on its leader's disk only (a node that did not create the
    # topic opens its partitions once its image applier has the record).
    for partition, leader_id in placed.items():
        def holders(partition: int = partition) -> list[int]:
            return [n.node_id for n in cluster.nodes
                    if (n.data_dir / f"spread-{partition}").is_dir()]
        wait_until(lambda: holders() == [leader_id], ck.TIMEOUT_S,
                   f"spread-{partition} on node {leader_id} only")

    # Replication factor 4 with three brokers: refused with Kafka's message
    # (ReplicationControlManager).
    refused = ck.create_topic_result(cluster.bootstrap(), "four-copies", partitions=1,
                                     replication_factor=4)
    assert ck.kafka_error(refused).code() == ck.KafkaError.INVALID_REPLICATION_FACTOR
    assert "larger than available brokers: 3" in ck.kafka_error(refused).str(), \
        ck.kafka_error(refused).str()

    # A manual assignment puts each partition on the broker it names (CreateTopics'
    # replicasAssignments); a broker that is not registered is refused with Kafka's message
    # (ReplicationControlManager).
    admin = ck.admin(cluster.bootstrap())
    admin.create_topics([NewTopic("assigned", 3, replication_factor=-1,
                                  replica_assignment=[[2], [3], [1]])])[
        "assigned"].result(ck.TIMEOUT_S)
    wait_until(lambda: leaders(cluster.bootstrap(), "assigned") == {0: 2, 1: 3, 2: 1},
               ck.TIMEOUT_S, "each partition on the broker the assignment names")
    assert (cluster.node(2).data_dir / "assigned-0").is_dir()
    refused = admin.create_topics([NewTopic("assigned-nowhere", 1, replication_factor=-1,
                                           replica_assignment=[[9]])])[
        "assigned-nowhere"].exception(ck.TIMEOUT_S)
    assert ck.kafka_error(refused).code() == ck.KafkaError.INVALID_REPLICA_ASSIGNMENT
    assert "includes broker 9, but no such broker is registered" in ck.kafka_error(refused).str()

    # CreatePartitions' assignments too, through a node that hosts neither new partition
    # (confluent-kafka), then kafka-python's; refusals with Kafka's messages
    # (ReplicationControlManager.createPartitions): an unregistered broker, and two replicas
    # where the topic's partitions have one.
    grow = admin.create_partitions([NewPartitions("assigned", 5, replica_assignment=[[3], [3]])],
                                   operation_timeout=ck.TIMEOUT_S)
    grow["assigned"].result(ck.TIMEOUT_S)
    KafkaAdminClient(bootstrap_servers=cluster.node(1).bootstrap).create_partitions(
        {"assigned": KafkaNewPartitions(total_count=6, new_assignments=[[2]])})
    wait_until(lambda: leaders(cluster.bootstrap(), "assigned")
               == {0: 2, 1: 3, 2: 1, 3: 3, 4: 3, 5: 2},
               ck.TIMEOUT_S, "each new partition on the broker its assignment names")
    assert (cluster.node(3).data_dir / "assigned-4").is_dir()
    assert not (cluster.node(1).data_dir / "assigned-4").exists()
    for assignment, message in (([[9]], "includes broker 9, but no such broker is registered"),
                                ([[1, 2]], "a partition with 2 replica(s), but this is not "
                                           "consistent with previous partitions")):
        refused = admin.create_partitions(
            [NewPartitions("assigned", 7, replica_assignment=assignment)])["assigned"].exception(
            ck.TIMEOUT_S)
        assert ck.kafka_error(refused).code() == ck.KafkaError.INVALID_REPLICA_ASSIGNMENT
        assert message in ck.kafka_error(refused).str(), ck.kafka_error(refused).str()
    assert len(leaders(cluster.bootstrap(), "assigned")) == 6

    # confluent-kafka produces (bootstrapping from one node), kafka-python consumes as a group
    # (bootstrapping from another), confluent-kafka reads every partition back by assignment.
    records = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(60)]
    producer = ck.producer(cluster.node(1).bootstrap, {"acks": "all"})
    for key, value in records:
        producer.produce("spread", key=key, value=value)
    assert producer.flush(ck.TIMEOUT_S) == 0
    consumer = KafkaConsumer("spread", bootstrap_servers=cluster.node(2).bootstrap,
                             group_id="spread-readers", auto_offset_reset="earliest",
                             consumer_timeout_ms=int(ck.TIMEOUT_S * 1000))
    try:
        seen = []
        for message in consumer:
            seen.append((message.key, message.value))
            if len(seen) == len(records):
                break
        consumer.commit()
    finally:
        consumer.close()
    assert sorted(seen) == sorted(records)
    stored = ck.consume_all(cluster.node(3).bootstrap, "spread", 6)
    assert sorted((s.record.key, s.record.value) for s in stored) == sorted(records)

    # aiokafka, bootstrapping from one node, produces to every partition's leader and
    # consumes as a group (its coordinator the leader of the group's __consumer_offsets
    # partition).
    aio_records = asyncio.run(aiokafka_round_trip(cluster.node(1).bootstrap, "spread", 6))
    assert sorted(aio_records) == sorted(f"aio-{i}".encode() for i in range(30))

    # DescribeQuorum (kafka-python's describe_metadata_quorum, v2), asked of a follower: as a
    # Kafka broker forwards it to the active controller, the leader's view of each voter.
    quorum = describe_quorum(follower.bootstrap)
    [partition] = quorum["topics"][0]["partitions"]
    assert quorum["topics"][0]["topic_name"] == "__cluster_metadata"
    assert partition["error"] is None, partition
    assert partition["leader_id"] == leader.node_id
    assert partition["leader_epoch"] >= 1
    assert partition["high_watermark"] > 0
    voters = {v["replica_id"]: v for v in partition["current_voters"]}
    assert sorted(voters) == [1, 2, 3]
    for voter in voters.values():
        assert 0 < voter["log_end_offset"] <= partition["high_watermark"] + 1, voter
        assert voter["last_caught_up_timestamp"] > 0, voter
    assert partition["observers"] == []
    assert sorted((n["node_id"], n["listeners"][0]["port"]) for n in quorum["nodes"]) == sorted(
        (n.node_id, n.controller_port) for n in cluster.nodes)

    # kcat -L (librdkafka 2.0) lists the same brokers and leaders.
    if shutil.which("kcat"):
        listing = subprocess.run(["kcat", "-L", "-b", cluster.node(3).bootstrap, "-t", "spread"],
                                 capture_output=True, text=True, timeout=ck.TIMEOUT_S, check=True)
        assert " 3 brokers:" in listing.stdout, listing.stdout
        for partition, leader_id in placed.items():
            assert f"partition {partition}, leader {leader_id}," in listing.stdout, listing.stdout


async def aiokafka_round_trip(bootstrap: str, topic: str, partitions: int) -> list[bytes]:
    """Produces 30 records over every partition with aiokafka (acks=all), then reads them
    back as the group `aio-spread` from the start; the values read."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(30):
            await producer.send_and_wait(topic, f"aio-{i}".encode(), partition=i % partitions)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="aio-spread",
                                auto_offset_reset="earliest")
    await consumer.start()
    seen: list[bytes] = []
    try:
        async def read() -> None:
            async for message in consumer:
                if message.value.startswith(b"aio-"):
                    seen.append(message.value)
                if len(seen) == 30:
                    return
        await asyncio.wait_for(read(), ck.TIMEOUT_S)
        await consumer.commit()
    finally:
        await consumer.stop()
    return seen


def create_through(bootstrap: str, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, 1, 1)], operation_timeout=5, request_timeout=6)
    futures[name].result(timeout=7)


def test_killing_the_active_controller_elects_another_and_loses_no_metadata(cluster):
    """kill -9 of the active controller: the others elect a new one, topic creation works
    again through a surviving node, the killed node restarts as a follower and every topic
    created before and after is on every node."""
    created = []
    worst = 0.0
    for kill in range(3):
        leader = cluster.active_controller()
        name = f"before-kill-{kill}"
        create_through(cluster.bootstrap(), name)
        created.append(name)
        leader.kill()
        killed_at = time.monotonic()
        survivor = next(n for n in cluster.nodes if n.running())
        name = f"after-kill-{kill}"

        def created_again() -> bool:
            try:
                create_through(survivor.bootstrap, name)
                return True
            except Exception as error:  # noqa: BLE001 - retried until the deadline
                # A creation that timed out on the client may still have committed.
                return "already exists" in str(error)

        wait_until(created_again, 60, f"a topic to be created after killing node {leader.node_id}")
        worst = max(worst, time.monotonic() - killed_at)
        created.append(name)
        new_leader = cluster.active_controller()
        assert new_leader is not leader
        leader.start()
        wait_until(lambda: f"the metadata quorum's leader is node {new_leader.node_id}"
                   in leader.log().rsplit("=== test harness: starting", 1)[-1],
                   30, f"node {leader.node_id} to rejoin as a follower of {new_leader.node_id}")
    print(f"topic creation worked again at most {worst:.2f} s after the active controller died")
    for node in cluster.nodes:
        def has_all() -> bool:
            topics = ck.admin(node.bootstrap).list_topics(timeout=ck.TIMEOUT_S).topics
            return all(name in topics for name in created)
        wait_until(has_all, 30, f"node {node.node_id} to list every topic created")


def test_a_data_dir_of_another_cluster_or_quorum_is_refused_with_the_reason(tmp_path):
    # A single node's data dir (a quorum of one) started as one voter of three.
    single = Broker(runnel_bin(), tmp_path / "single", free_port(), tmp_path / "single.log")
    single.data_dir.mkdir()
    single.start()
    single.stop()
    cluster = Cluster(tmp_path, 3)
    try:
        node = cluster.node(1)
        shutil.copytree(single.data_dir, node.data_dir)
        node.spawn()
        wait_until(lambda: not node.running(), ck.TIMEOUT_S, "the node to refuse to start")
        assert "formed a quorum of [1]" in node.log(), node.log_tail()

        # A node whose meta.properties names another cluster, among the voters of this one.
        shutil.rmtree(node.data_dir)
        node.data_dir.mkdir()
        for other in cluster.nodes[1:]:
            other.data_dir.mkdir()
            other.spawn()
        node.spawn()
        for each in cluster.nodes:
            each.wait_serving()
        node.kill()
        (node.data_dir / "meta.properties").write_text(
            (node.data_dir / "meta.properties").read_text().replace(
                meta_properties(node)["cluster.id"], "AAAAAAAAAAAAAAAAAAAAAA"))
        node.spawn()
        wait_until(lambda: not node.running(), ck.TIMEOUT_S, "the node to refuse to start")
        assert "names cluster AAAAAAAAAAAAAAAAAAAAAA, but the metadata quorum" in node.log(), \
            node.log_tail()
    finally:
        cluster.kill()


def test_a_broker_stopped_past_the_session_timeout_is_fenced_and_returns_with_its_data(tmp_path,
                                                                                      request):
    """Kafka's broker liveness: brokers heartbeat to the active controller
    (`broker.heartbeat.interval.ms`); one not heard from for `broker.session.timeout.ms` is
    fenced (BrokerRegistrationChangeRecord): Metadata stops listing it, and a partition whose
    only replica it holds reports leader -1 with LEADER_NOT_AVAILABLE. Started again, it
    registers unfenced and serves its partitions, data intact."""
    nodes = Cluster(tmp_path, 3, extra={"broker.session.timeout.ms": "3000",
                                        "broker.heartbeat.interval.ms": "500"})
    request.node._runnel_brokers = nodes.nodes
    try:
        nodes.start()
        ck.create_topic(nodes.bootstrap(), "lease", 3)
        records = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(30)]
        producer = ck.producer(nodes.bootstrap(), {"acks": "all"})
        for key, value in records:
            producer.produce("lease", key=key, value=value)
        assert producer.flush(ck.TIMEOUT_S) == 0
        controller = nodes.active_controller()
        victim = next(n for n in nodes.nodes if n is not controller)
        held = [p for p, leader in leaders(controller.bootstrap, "lease").items()
                if leader == victim.node_id]
        assert held, "the victim leads a partition"
        epochs = leader_epochs(controller.bootstrap, "lease")
        victim.kill()

        def fenced() -> bool:
            listed = [b[0] for b in brokers_seen_by_confluent(controller.bootstrap)]
            return victim.node_id not in listed
        wait_until(fenced, 30, f"node {victim.node_id} to be fenced")
        assert f"fencing broker {victim.node_id}" in controller.log()
        metadata = ck.admin(controller.bootstrap).list_topics("lease", timeout=ck.TIMEOUT_S)
        for partition in held:
            described = metadata.topics["lease"].partitions[partition]
            assert described.leader == -1, described
            assert described.error is not None and described.error.code() == \
                ck.KafkaError.LEADER_NOT_AVAILABLE, described.error

        # Its partitions lost their leader: a new leader epoch (Kafka's controller bumps it
        # on every leader change); the others keep theirs.
        fenced_epochs = leader_epochs(controller.bootstrap, "lease")
        for partition, epoch in fenced_epochs.items():
            assert epoch == epochs[partition] + (partition in held), (partition, epochs)

        victim.start()
        wait_until(lambda: victim.node_id in
                   [b[0] for b in brokers_seen_by_confluent(controller.bootstrap)],
                   30, f"node {victim.node_id} to be listed again")
        # Back as their leader: another epoch, which the broker itself takes (a client's
        # fetch and produce carry the epoch from Metadata and are checked against it).
        for partition in held:
            assert leader_epochs(controller.bootstrap, "lease")[partition] > \
                fenced_epochs[partition], partition
        more = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(30, 40)]
        producer = ck.producer(nodes.bootstrap(), {"acks": "all"})
        for key, value in more:
            producer.produce("lease", key=key, value=value, partition=held[0])
        assert producer.flush(ck.TIMEOUT_S) == 0
        stored = ck.consume_all(controller.bootstrap, "lease", 3)
        assert sorted((s.record.key, s.record.value) for s in stored) == sorted(records + more)
    finally:
        nodes.kill()


def create_topics_v2_on(port: int, topic: str, wait_s: float) -> int | None:
    """A CreateTopics v2 for `topic` (one partition) on one connection to the broker on
    `port`, encoded here so that no client routes it elsewhere; its error code, or None when
    no answer came within `wait_s`."""
    import socket
    import struct

    def string(text: str) -> bytes:
        return struct.pack(">h", len(text)) + text.encode()

    body = (struct.pack(">i", 1) + string(topic) + struct.pack(">ihii", 1, 1, 0, 0)
            + struct.pack(">ib", 30_000, 0))
    header = struct.pack(">hhi", 19, 2, 7) + string("cut-test")
    frame = header + body
    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as conn:
        conn.sendall(struct.pack(">i", len(frame)) + frame)
        try:
            size = struct.unpack(">i", conn.recv(4, socket.MSG_WAITALL))[0]
            answer = conn.recv(size, socket.MSG_WAITALL)
        except socket.timeout:
            return None
    # correlation id, throttle time, topic count, name, error code
    name_length = struct.unpack(">h", answer[12:14])[0]
    return struct.unpack(">h", answer[14 + name_length:16 + name_length])[0]


def topics_known_to(node) -> set[str]:
    """The topics one node's own image names (see cluster.own_metadata)."""
    return own_metadata(node)[1]


def test_a_cut_off_minority_cannot_commit_the_majority_can_and_the_minority_converges(
        tmp_path, request):
    """A network partition (proxies between the nodes' controller listeners, cut by the
    test): the active controller, cut off alone, can no longer commit metadata; the two
    others elect a new one and commit; once the link heals, the cut-off node follows the new
    leader and holds what the majority committed."""
    nodes = Cluster(tmp_path, 3, proxied=True)
    request.node._runnel_brokers = nodes.nodes
    try:
        nodes.start()
        ck.create_topic(nodes.bootstrap(), "before-the-cut", 1)
        minority = nodes.active_controller()
        majority = [n for n in nodes.nodes if n is not minority]
        wait_until(lambda: all("before-the-cut" in topics_known_to(n) for n in nodes.nodes),
                   30, "every node to hold the first topic")
        nodes.cut(minority.node_id)

        # The majority elects a new active controller and commits.
        def majority_commits() -> bool:
            try:
                create_through(majority[0].bootstrap, "majority-side")
                return True
            except Exception as error:  # noqa: BLE001 - retried until the deadline
                return "already exists" in str(error)
        wait_until(majority_commits, 60, "the majority to commit a topic")
        assert "majority-side" in topics_known_to(majority[1]) or wait_until(
            lambda: "majority-side" in topics_known_to(majority[1]), 30,
            "the other majority node to hold it")

        # The minority cannot commit: a CreateTopics the cut-off node itself handles (sent on
        # one connection to it: an admin client would route it to a broker of the majority)
        # gets no success, and no node holds the topic; nor does the minority learn what
        # the majority committed.
        assert create_topics_v2_on(minority.port, "minority-side", wait_s=5) != 0
        for node in nodes.nodes:
            assert "minority-side" not in topics_known_to(node), node.node_id
        assert "majority-side" not in topics_known_to(minority)

        # Healed, the minority follows the new leader and converges.
        nodes.heal(minority.node_id)
        wait_until(lambda: "majority-side" in topics_known_to(minority), 30,
                   "the healed node to hold what the majority committed")
        new_leader = nodes.active_controller()
        assert new_leader is not minority
        wait_until(lambda: minority.log().rfind(
            f"the metadata quorum's leader is node {new_leader.node_id}") >
            minority.log().rfind("this node is the active controller"), 30,
            "the healed node to follow the new leader")
    finally:
        nodes.kill()


def test_transactions_span_partitions_on_every_broker(cluster):
    """A transaction over partitions led by all three brokers: the transaction coordinator
    writes each partition's marker itself or sends it to the partition's leader
    (WriteTxnMarkers between brokers, as Kafka's TransactionMarkerChannelManager), so a
    read_committed consumer sees a committed transaction whole and an aborted one not at all,
    and the group offsets sent to the transaction commit with it."""
    from confluent_kafka import Consumer, TopicPartition
    topic = "txn-spread"
    # The internal topics are spread over the brokers like any topic. A group whose
    # coordinator is another broker than the transaction's: offsets sent to the transaction
    # cross brokers too.
    txn_coordinator = find_coordinator_v1_on(cluster.node(1).port, "spread-app", 1)
    group = next(g for g in (f"spread-eos-{i}" for i in range(100))
                 if find_coordinator_v1_on(cluster.node(1).port, g, 0) != txn_coordinator)
    for internal in ("__consumer_offsets", "__transaction_state"):
        assert set(leaders(cluster.bootstrap(), internal).values()) == {1, 2, 3}, internal
    ck.create_topic(cluster.bootstrap(), topic, 6)
    placed = wait_until(lambda: (lambda l: l if set(l.values()) == {1, 2, 3} else None)(
        leaders(cluster.bootstrap(), topic)), ck.TIMEOUT_S, "partitions on all three brokers")
    assert sorted(placed) == list(range(6))
    producer = ck.producer(cluster.bootstrap(), {"transactional.id": "spread-app"})
    producer.init_transactions(ck.TIMEOUT_S)

    def transaction(values: list[str], commit: bool) -> None:
        producer.begin_transaction()
        for i, value in enumerate(values):
            producer.produce(topic, value=value.encode(), partition=i % 6)
        assert producer.flush(ck.TIMEOUT_S) == 0
        if commit:
            producer.commit_transaction(ck.TIMEOUT_S)
        else:
            producer.abort_transaction(ck.TIMEOUT_S)

    aborted = [f"a{i}" for i in range(12)]
    committed = [f"c{i}" for i in range(12)]
    transaction(aborted, commit=False)
    transaction(committed, commit=True)

    def values(isolation: str) -> list[str]:
        stored = ck.consume_all(cluster.bootstrap(), topic, 6,
                                config={"isolation.level": isolation})
        return sorted(s.record.value.decode() for s in stored)
    assert values("read_committed") == sorted(committed)
    assert values("read_uncommitted") == sorted(aborted + committed)

    # Offsets sent to a transaction (the group's coordinator on another node than the
    # transaction's): committed with it.
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": group,
                         "enable.auto.commit": False})
    try:
        producer.begin_transaction()
        producer.produce(topic, value=b"with-offsets", partition=0)
        producer.send_offsets_to_transaction([TopicPartition(topic, 3, 7)],
                                             consumer.consumer_group_metadata(), ck.TIMEOUT_S)
        producer.commit_transaction(ck.TIMEOUT_S)

        def offset() -> int:
            return consumer.committed([TopicPartition(topic, 3)], timeout=ck.TIMEOUT_S)[0].offset
        wait_until(lambda: offset() == 7, ck.TIMEOUT_S, "the transaction's group offset")
    finally:
        consumer.close()


def group_coordinator(bootstrap: str, group: str) -> int:
    admin = ck.admin(bootstrap)  # held until the answer: a dropped client ends its requests
    described = admin.describe_consumer_groups([group])[group].result(ck.TIMEOUT_S)
    return described.coordinator.id


def test_a_group_keeps_consuming_while_its_coordinator_broker_restarts(cluster):
    """The group coordinator runs on the leader of the group's `__consumer_offsets`
    partition, which the placement spreads over the brokers like any topic, three replicas
    each. kill -9 of that broker: the consumer keeps reading the partitions the other brokers
    lead meanwhile; once the broker is fenced its partitions (the group's among them) move to
    in-sync replicas, whose coordinator loads the group from the replicated log; the consumer
    finds it (FindCoordinator answers the partition's leader) and, the broker back and
    rebalance allowed, reads every acknowledged record and commits its offsets there."""
    import threading

    from confluent_kafka import Consumer, TopicPartition
    topic = "coordinator-restart"
    group = "restart-group"
    ck.create_topic(cluster.bootstrap(), topic, 6)
    wait_until(lambda: set(leaders(cluster.bootstrap(), topic).values()) == {1, 2, 3},
               ck.TIMEOUT_S, "partitions on all three brokers")
    consumer = Consumer({"bootstrap.servers": cluster.bootstrap(), "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "session.timeout.ms": 30000})
    consumer.subscribe([topic])
    seen: list[tuple[int, str]] = []
    stop = threading.Event()
    # librdkafka's own retries carry a record over the outage (message.timeout.ms).
    producer = ck.producer(cluster.bootstrap(), {"acks": "all", "message.timeout.ms": 120000})
    acked: list[str] = []
    failed: list[str] = []

    def delivered(error, msg) -> None:
        (failed if error is not None else acked).append(msg.value().decode())

    def produce() -> None:
        i = 0
        while not stop.is_set():
            producer.produce(topic, value=f"r{i}".encode(), partition=i % 6, on_delivery=delivered)
            producer.poll(0)
            i += 1
            time.sleep(0.01)
        producer.flush(150)

    def poll_some(seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                seen.append((msg.partition(), msg.value().decode()))

    writer = threading.Thread(target=produce)
    writer.start()
    try:
        wait_until(lambda: (poll_some(0.5), len(seen) > 50)[1], 60, "the group to consume")
        coordinator = cluster.node(group_coordinator(cluster.bootstrap(), group))
        others = [p for p, leader in leaders(cluster.bootstrap(), topic).items()
                  if leader != coordinator.node_id]
        coordinator.kill()
        # While the coordinator is down: records of the partitions other brokers lead keep
        # coming.
        before = len(seen)
        wait_until(lambda: (poll_some(0.5),
                            sum(1 for p, _ in seen[before:] if p in others) > 50)[1],
                   30, "records from the other brokers while the coordinator is down")
        coordinator.start()
        poll_some(2)
        stop.set()
        writer.join(180)
        assert not writer.is_alive()
        assert not failed, f"{len(failed)} records not acknowledged"
        wanted = set(acked)
        wait_until(lambda: (poll_some(0.5), wanted <= {v for _, v in seen})[1], 90,
                   f"all {len(wanted)} acknowledged records to be consumed")
        # Offsets commit at the coordinator again, and read back from it.
        def committed() -> bool:
            try:
                consumer.commit(asynchronous=False)
                return True
            except Exception:  # noqa: BLE001 - retried until the deadline
                return False
        wait_until(committed, 60, "an offset commit at the restarted coordinator")
        stored = consumer.committed([TopicPartition(topic, p) for p in range(6)],
                                    timeout=ck.TIMEOUT_S)
        ends = {p: ck.watermarks(cluster.bootstrap(), topic, p)[1] for p in range(6)}
        assert {tp.partition: tp.offset for tp in stored} == ends
        offsets_topic = ck.cluster_metadata(cluster.bootstrap()).topics["__consumer_offsets"]
        assert all(len(p.replicas) == 3 for p in offsets_topic.partitions.values())
    finally:
        stop.set()
        writer.join(180)
        consumer.close()


def test_controller_only_and_broker_only_nodes_form_a_cluster(tmp_path, request):
    """Kafka's split roles: three controller-only nodes (`process.roles=controller`, only a
    CONTROLLER listener) are the metadata quorum's voters; two broker-only nodes
    (`process.roles=broker`, no controller listener) follow its log as non-voting learners
    and serve the clients. Metadata lists the brokers only; DescribeQuorum names the
    controllers as voters and the brokers as observers; partitions go to the brokers; the
    active controller's death is survived; a broker restarted joins the quorum again."""
    from cluster import Node
    from helpers import runnel_bin as binary
    controllers = [(free_port(), free_port()) for _ in range(3)]
    voters = ",".join(f"{i}@127.0.0.1:{c}" for i, (_, c) in enumerate(controllers, start=1))
    nodes = [Node(binary(), tmp_path / f"node-{i}", client, tmp_path / f"node-{i}.log",
                  node_id=i, controller_port=controller, voters=voters, roles="controller")
             for i, (client, controller) in enumerate(controllers, start=1)]
    nodes += [Node(binary(), tmp_path / f"node-{i}", free_port(), tmp_path / f"node-{i}.log",
                   node_id=i, voters=voters, roles="broker") for i in (4, 5)]
    request.node._runnel_brokers = nodes
    brokers = nodes[3:]
    bootstrap = ",".join(b.bootstrap for b in brokers)
    try:
        for node in nodes:
            node.data_dir.mkdir()
            node.spawn()
        for node in nodes:
            node.wait_serving()
        for broker in brokers:
            wait_until(lambda: sorted(own_metadata(broker)[0]) == [4, 5], 30,
                       f"node {broker.node_id} to list both brokers")
        expected = sorted((b.node_id, "127.0.0.1", b.port) for b in brokers)
        for broker in brokers:
            assert brokers_seen_by_confluent(broker.bootstrap) == expected
            assert brokers_seen_by_kafka_python(broker.bootstrap) == expected
        ids = {meta_properties(n)["cluster.id"] for n in nodes}
        assert len(ids) == 1, ids

        quorum = describe_quorum(brokers[0].bootstrap)
        [partition] = quorum["topics"][0]["partitions"]
        assert sorted(v["replica_id"] for v in partition["current_voters"]) == [1, 2, 3]
        assert sorted(o["replica_id"] for o in partition["observers"]) == [4, 5]
        assert partition["leader_id"] in (1, 2, 3)

        ck.create_topic(bootstrap, "split-roles", 4)
        placed = wait_until(lambda: (lambda l: l if set(l.values()) == {4, 5} else None)(
            leaders(bootstrap, "split-roles")), ck.TIMEOUT_S, "partitions on both brokers")
        assert sorted(placed) == list(range(4))
        records = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(40)]
        producer = ck.producer(brokers[0].bootstrap, {"acks": "all"})
        for key, value in records:
            producer.produce("split-roles", key=key, value=value)
        assert producer.flush(ck.TIMEOUT_S) == 0
        # The group coordinator's topic gets a replica on each of the two brokers: the
        # controllers are no brokers, so they do not count towards its replication factor.
        committer = ck.assign_only_consumer(bootstrap, {"group.id": "split-roles-group"})
        try:
            committer.commit(offsets=[TopicPartition("split-roles", 0, 3)], asynchronous=False)
        finally:
            committer.close()
        offsets_topic = ck.cluster_metadata(bootstrap).topics["__consumer_offsets"]
        assert all(sorted(p.replicas) == [4, 5] for p in offsets_topic.partitions.values())

        # The active controller (a controller-only node) dies: the two others elect another,
        # and a topic is created through a broker again.
        leader = next(n for n in nodes[:3] if n.node_id == partition["leader_id"])
        leader.kill()

        def created_again() -> bool:
            try:
                create_through(brokers[1].bootstrap, "after-the-controller")
                return True
            except Exception as error:  # noqa: BLE001 - retried until the deadline
                return "already exists" in str(error)
        wait_until(created_again, 60, "a topic created after the active controller died")
        leader.start()

        # A broker restarted (its learner listener on a new port) joins again, serves its
        # partitions and learns what was committed while it was down.
        brokers[1].kill()
        create_through(brokers[0].bootstrap, "while-a-broker-was-down")
        brokers[1].start()
        assert "joined the metadata quorum as a learner" in \
            brokers[1].log().rsplit("=== test harness: starting", 1)[-1]
        wait_until(lambda: "while-a-broker-was-down" in topics_known_to(brokers[1]), 30,
                   "the restarted broker to follow the metadata log")
        stored = ck.consume_all(bootstrap, "split-roles", 4)
        assert sorted((s.record.key, s.record.value) for s in stored) == sorted(records)
    finally:
        for node in nodes:
            node.kill()
