"""Partition replication on three nodes, through real clients and real processes: followers
copy their leaders' logs byte for byte through the Fetch API; acks=all is answered only once
every in-sync replica holds the batch (Kafka's high watermark: the least log end offset of the
ISR) and consumers read only below it; a follower that stops leaves the ISR after
replica.lag.time.max.ms and rejoins once caught up; a killed leader's partitions move to an
in-sync replica with nothing acknowledged lost (Kafka's handleBrokerFenced); SIGTERM moves
leadership first (controlled shutdown); ElectLeaders restores the preferred leader; unclean
election only where the topic allows it; a consumer reads from the follower on its rack
(KIP-392).
"""

from __future__ import annotations

import contextlib
import signal
import time
import urllib.request
from pathlib import Path

import pytest
from confluent_kafka import ElectionType, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic,
                                   ResourceType)
from kafka import KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition
from prometheus_client.parser import text_string_to_metric_families

import ck
from cluster import Cluster, find_coordinator_v1_on
from netns import Network
from helpers import (Record, assert_round_trip, batches_length, free_ports, make_records,
                     now_ms, wait_until)


def produce(bootstrap: str, topic: str, records, partition: int | None = None,
            config: dict | None = None):
    """`ck.produce`, idempotent where the acks allow it (acks=all): a retry after a request
    that timed out while the ISR changed must not write a record twice, as these tests count
    records exactly."""
    config = dict(config or {})
    if str(config.get("acks", "all")) in ("all", "-1"):
        config.setdefault("enable.idempotence", True)
    return ck.produce(bootstrap, topic, records, partition=partition, config=config)


def with_offsets_topic(cluster: Cluster) -> Cluster:
    """Has the group coordinator's topic created now: a consumer's FindCoordinator would
    otherwise create it on first use, through the active controller, which may be the node
    a test has just stopped (the request then waits out its deadline, and the consumer's
    requests queued behind it on that connection with it)."""
    bootstrap = cluster.bootstrap()
    ck.create_topic(bootstrap, "warm-up", 1)
    consumer = ck.assign_only_consumer(bootstrap)
    try:
        # A synchronous commit needs the group's coordinator, so its topic.
        consumer.commit(offsets=[TopicPartition("warm-up", 0, 0)], asynchronous=False)
    finally:
        consumer.close()
    wait_until(lambda: "__consumer_offsets" in ck.admin(bootstrap).list_topics(
        timeout=ck.TIMEOUT_S).topics, ck.TIMEOUT_S, "__consumer_offsets to exist")
    return cluster


@contextlib.contextmanager
def started(tmp_path, request, extra: dict, size: int = 3, offsets_topic: bool = False,
            each_node=None, network=None):
    """A cluster of `size` nodes with `extra` settings (and what `each_node(node)` adds to a
    node's own), started, named for the failure report (conftest), killed at the end; with
    `offsets_topic`, `__consumer_offsets` is created first (with_offsets_topic); with
    `network` (netns.Network), each node in its own namespace."""
    nodes = Cluster(tmp_path, size, extra=extra, network=network)
    for node in nodes.nodes if each_node is not None else []:
        each_node(node)
    request.node._runnel_brokers = nodes.nodes
    try:
        nodes.start()
        yield with_offsets_topic(nodes) if offsets_topic else nodes
    finally:
        nodes.kill()


@pytest.fixture
def cluster(tmp_path, request):
    # Long enough that a follower stopped for a few seconds is not fenced meanwhile.
    with started(tmp_path, request, {"broker.session.timeout.ms": "60000"},
                 offsets_topic=True) as nodes:
        yield nodes


def create_replicated(bootstrap: str, topic: str, partitions: int, configs=None) -> None:
    admin = ck.admin(bootstrap)
    futures = admin.create_topics(
        [NewTopic(topic, partitions, replication_factor=3, config=configs or {})],
        operation_timeout=ck.TIMEOUT_S, request_timeout=ck.TIMEOUT_S)
    futures[topic].result(ck.TIMEOUT_S)


def partitions_of(bootstrap: str, topic: str) -> dict[int, tuple[int, list[int], list[int]]]:
    """Partition -> (leader, replicas, isr) as confluent-kafka's Metadata shows them."""
    metadata = ck.admin(bootstrap).list_topics(topic, timeout=ck.TIMEOUT_S)
    return {p: (m.leader, list(m.replicas), list(m.isrs))
            for p, m in metadata.topics[topic].partitions.items()}


def log_bytes(data_dir: Path, topic: str, partition: int) -> bytes:
    """The batches of every segment file of the partition in `data_dir`, in offset order,
    concatenated. An active segment written with O_DIRECT holds up to a block of zeros after
    its last batch (segment.rs), which a replica restarted since (its file cut to the batches)
    does not: the walk over the batches' framing stops at the first zero length."""
    directory = data_dir / f"{topic}-{partition}"
    batches = []
    for path in sorted(directory.glob("*.log")):
        data = path.read_bytes()
        batches.append(data[:batches_length(data)])
    return b"".join(batches)


def wait_for_identical_replicas(cluster: Cluster, topic: str, partitions: int) -> None:
    """Waits until every running node holding a replica holds the same log bytes."""
    for partition in range(partitions):
        def identical(partition: int = partition) -> bool:
            copies = [log_bytes(n.data_dir, topic, partition) for n in cluster.nodes
                      if n.running() and (n.data_dir / f"{topic}-{partition}").is_dir()]
            return len(copies) > 1 and all(c == copies[0] for c in copies)
        wait_until(identical, ck.TIMEOUT_S,
                   f"{topic}-{partition}'s log to be the same bytes on every replica")


def test_replicas_hold_the_leaders_log_byte_for_byte(cluster):
    bootstrap = cluster.bootstrap()
    create_replicated(bootstrap, "copies", 3, {"min.insync.replicas": "2"})
    placed = wait_until(
        lambda: (lambda p: p if len(p) == 3 and all(len(isr) == 3 for _, _, isr in p.values())
                 else None)(partitions_of(bootstrap, "copies")),
        ck.TIMEOUT_S, "three partitions with three in-sync replicas each")
    # Each partition on all three brokers, led round robin: each broker leads one.
    assert sorted(leader for leader, _, _ in placed.values()) == [1, 2, 3]
    for leader, replicas, isr in placed.values():
        assert sorted(replicas) == [1, 2, 3] and replicas[0] == leader
        assert sorted(isr) == [1, 2, 3]

    acked = []
    for partition in range(3):
        records = make_records(f"replicated-{partition}", keyed=0, unkeyed=300)
        acked += produce(bootstrap, "copies", records, partition=partition,
                            config={"enable.idempotence": True})
    assert_round_trip(acked, ck.consume_all(bootstrap, "copies", 3))
    wait_for_identical_replicas(cluster, "copies", 3)

    # kafka-python through the same replicated partitions.
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        futures = [producer.send("copies", value=f"kp-{i}".encode(), partition=i % 3)
                   for i in range(60)]
        offsets = [f.get(timeout=ck.TIMEOUT_S).offset for f in futures]
    finally:
        producer.close()
    assert len(offsets) == 60
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             consumer_timeout_ms=int(ck.TIMEOUT_S * 1000))
    try:
        parts = [KafkaTopicPartition("copies", p) for p in range(3)]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        seen = []
        for message in consumer:
            if message.value.startswith(b"kp-"):
                seen.append(message.value)
            if len(seen) == 60:
                break
    finally:
        consumer.close()
    assert sorted(seen) == sorted(f"kp-{i}".encode() for i in range(60))
    wait_for_identical_replicas(cluster, "copies", 3)


def follower_of(placed, partition: int) -> int:
    leader, replicas, _ = placed[partition]
    return next(r for r in replicas if r != leader)


def placed_on(cluster: Cluster, topic: str):
    """Once the topic's metadata is out: its placement, the leader of its partition 0 and
    that partition's first follower (as nodes of `cluster`)."""
    bootstrap = cluster.bootstrap()
    placed = wait_until(lambda: partitions_of(bootstrap, topic) or None, ck.TIMEOUT_S,
                        "the topic's metadata")
    return placed, cluster.node(placed[0][0]), cluster.node(follower_of(placed, 0))


def test_acks_all_waits_for_every_in_sync_replica(cluster):
    bootstrap = cluster.bootstrap()
    create_replicated(bootstrap, "waits", 1)
    placed, leader, stopped = placed_on(cluster, "waits")
    produce(bootstrap, "waits", make_records("before", keyed=5, unkeyed=0), partition=0)
    low, high_before = ck.watermarks(leader.bootstrap, "waits", 0)
    assert (low, high_before) == (0, 5)

    stopped.proc.send_signal(signal.SIGSTOP)
    try:
        # acks=all: the stopped follower is in the ISR, so the high watermark cannot pass the
        # batch and the request times out (Kafka answers the same until the ISR shrinks).
        waiting = Producer({"bootstrap.servers": leader.bootstrap, "acks": "all",
                            "message.timeout.ms": 3000, "request.timeout.ms": 2000,
                            "retries": 0})
        errors: list[KafkaError] = []
        waiting.produce("waits", value=b"held back", partition=0,
                        on_delivery=lambda err, msg: errors.append(err))
        waiting.flush(ck.TIMEOUT_S)
        assert len(errors) == 1 and errors[0] is not None, errors
        # acks=1: the leader alone answers.
        produce(leader.bootstrap, "waits", make_records("leader-only", keyed=3, unkeyed=0),
                   partition=0, config={"acks": "1"})
        # Consumers see nothing past the high watermark: neither batch.
        assert ck.watermarks(leader.bootstrap, "waits", 0) == (0, high_before)
    finally:
        stopped.proc.send_signal(signal.SIGCONT)
    # Back: the follower copies both batches, and the high watermark passes them.
    wait_until(lambda: ck.watermarks(leader.bootstrap, "waits", 0)[1] == high_before + 4,
               ck.TIMEOUT_S, "the high watermark to pass both batches once the follower is back")
    produce(bootstrap, "waits", make_records("after", keyed=5, unkeyed=0), partition=0)
    wait_for_identical_replicas(cluster, "waits", 1)


def test_a_leader_restarted_before_it_is_fenced_does_not_show_what_it_never_replicated(
        cluster):
    """A replica knows nothing committed when it opens its log (Kafka's replica starts from
    its high-watermark checkpoint, never from its log end): a leader killed -9 with records
    only it holds (its followers stopped, the records produced with acks=1) and restarted
    before its session times out still leads, but its high watermark stays where the in-sync
    replicas left it, so consumers do not see those records, until the followers copy them."""
    bootstrap = cluster.bootstrap()
    create_replicated(bootstrap, "restarted", 1)
    placed, leader, _ = placed_on(cluster, "restarted")
    wait_until(lambda: sorted(partitions_of(bootstrap, "restarted")[0][2]) == [1, 2, 3],
               ck.TIMEOUT_S, "three in-sync replicas")
    committed = produce(bootstrap, "restarted", make_records("committed", keyed=0, unkeyed=10),
                        partition=0)
    followers = [n for n in cluster.nodes if n.node_id != leader.node_id]
    for follower in followers:
        follower.proc.send_signal(signal.SIGSTOP)
    try:
        produce(leader.bootstrap, "restarted", make_records("alone", keyed=0, unkeyed=5),
                partition=0, config={"acks": "1", "enable.idempotence": False})
        leader.kill()
        leader.start()
        # Still the leader (not fenced: the session timeout is 60 s), at its log end 15.
        assert partitions_of(leader.bootstrap, "restarted")[0][0] == leader.node_id
        low, high = ck.watermarks(leader.bootstrap, "restarted", 0)
        assert high <= len(committed), (low, high)
        seen = ck.consume_all(leader.bootstrap, "restarted", 1)
        assert len(seen) <= len(committed), "records no other replica holds were shown"
    finally:
        for follower in followers:
            follower.proc.send_signal(signal.SIGCONT)
    # The followers copy them; now they are committed.
    wait_until(lambda: ck.watermarks(leader.bootstrap, "restarted", 0)[1] == 15, ck.TIMEOUT_S,
               "the high watermark to cover the records the followers copied")
    assert len(ck.consume_all(bootstrap, "restarted", 1)) == 15


def test_a_follower_killed_and_restarted_catches_up(cluster):
    bootstrap = cluster.bootstrap()
    create_replicated(bootstrap, "rejoin", 1)
    placed, leader, follower = placed_on(cluster, "rejoin")
    first = produce(bootstrap, "rejoin", make_records("first", keyed=50, unkeyed=0),
                       partition=0)
    wait_for_identical_replicas(cluster, "rejoin", 1)

    follower.kill()
    # While it is down the leader takes acks=1 writes; the high watermark waits for it.
    produce(leader.bootstrap, "rejoin", make_records("while-down", keyed=40, unkeyed=0),
               partition=0, config={"acks": "1"})
    assert ck.watermarks(leader.bootstrap, "rejoin", 0)[1] == len(first)
    follower.start()
    wait_until(lambda: ck.watermarks(leader.bootstrap, "rejoin", 0)[1] == len(first) + 40,
               ck.TIMEOUT_S, "the restarted follower to catch up and the high watermark to follow")
    wait_for_identical_replicas(cluster, "rejoin", 1)
    stored = ck.consume_all(bootstrap, "rejoin", 1)
    assert [s.offset for s in stored] == list(range(len(first) + 40))


@pytest.fixture
def quick_fencing_cluster(tmp_path, request):
    # A killed broker is fenced (and its partitions move) after 3 s rather than Kafka's 9.
    with started(tmp_path, request, {"broker.session.timeout.ms": "3000",
                                     "broker.heartbeat.interval.ms": "500",
                                     "replica.lag.time.max.ms": "10000"},
                 offsets_topic=True) as nodes:
        yield nodes


def test_leader_killed_fails_over_to_an_in_sync_replica(quick_fencing_cluster):
    """Kafka's failover (ReplicationControlManager.handleBrokerFenced, then an ISR member
    leads): an idempotent producer with acks=all writes 200,000 records, losing nothing and
    duplicating nothing, while the leader of its partitions is killed -9 three times and
    restarted each time (records are sent while each leader is down, and more while its
    replacement leads and after the old one is back in the ISR)."""
    cluster = quick_fencing_cluster
    bootstrap = cluster.bootstrap()
    create_replicated(bootstrap, "failover", 3, {"min.insync.replicas": "2"})
    wait_until(lambda: len(partitions_of(bootstrap, "failover")) == 3, ck.TIMEOUT_S,
               "the topic's metadata")
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 5,
                         "message.timeout.ms": 120000})
    log = ck.DeliveryLog()
    sent = 0

    def send(count: int) -> None:
        nonlocal sent
        for _ in range(count):
            record = Record(None, f"r{sent}".encode(), (), now_ms())
            ck.send(producer, "failover", record, log, partition=sent % 3)
            sent += 1
        assert producer.flush(120) == 0, "records still undelivered"

    # 14,000 + 3 × (2,000 + 30,000 + 30,000) = 200,000 records.
    send(14_000)
    takeovers = []
    for _ in range(3):
        running = next(n for n in cluster.nodes if n.running())
        leader_id = partitions_of(running.bootstrap, "failover")[0][0]
        victim = cluster.node(leader_id)
        survivor = next(n for n in cluster.nodes if n.node_id != leader_id)
        victim.kill()
        killed_at = time.monotonic()
        # Records sent while the leader is down wait in the producer and go to the new one.
        for _ in range(2000):
            ck.send(producer, "failover", Record(None, f"r{sent}".encode(), (), now_ms()), log,
                    partition=sent % 3)
            sent += 1
        wait_until(lambda: partitions_of(survivor.bootstrap, "failover")[0][0]
                   not in (-1, leader_id), ck.TIMEOUT_S, "a new leader for partition 0")
        assert producer.flush(120) == 0
        takeovers.append(time.monotonic() - killed_at)
        send(30_000)
        victim.start()
        # The old leader catches up and its new leader takes it back into the ISR.
        wait_until(lambda: all(sorted(isr) == [1, 2, 3] for _, _, isr in
                               partitions_of(survivor.bootstrap, "failover").values()),
                   ck.TIMEOUT_S, "every partition's ISR to hold all three brokers again")
        send(30_000)
    print(f"failover: a new leader took acks=all writes {max(takeovers):.2f} s after a kill -9 "
          f"at worst ({', '.join(f'{t:.2f}' for t in takeovers)})")
    assert not log.failed, log.failed[:5]
    assert sent == 200_000 and len(log.acked) == sent
    stored = ck.consume_all(bootstrap, "failover", 3)
    values = [s.record.value for s in stored]
    assert len(values) == len(set(values)), "no record twice"
    assert set(values) == {s.record.value for s in log.acked}, "every acknowledged record"
    for partition in range(3):
        offsets = [s.offset for s in stored if s.partition == partition]
        assert offsets == sorted(offsets)
    wait_for_identical_replicas(cluster, "failover", 3)


def group_coordinator(bootstrap: str, group: str) -> int:
    admin = ck.admin(bootstrap)  # held until the answer: a dropped client ends its requests
    return admin.describe_consumer_groups([group])[group].result(ck.TIMEOUT_S).coordinator.id


def test_the_group_coordinator_moves_with_its_partitions_leadership(quick_fencing_cluster):
    """`__consumer_offsets` has offsets.topic.replication.factor (3) replicas; the group
    coordinator follows the leadership of the group's partition (Kafka's onElection /
    onResignation): kill -9 of the coordinator's broker moves the partition to an in-sync
    replica, whose coordinator loads the group from the replicated log, so the offsets
    committed before the kill are there, and new commits go to it."""
    cluster = quick_fencing_cluster
    bootstrap = cluster.bootstrap()
    offsets = partitions_of(bootstrap, "__consumer_offsets")
    assert all(sorted(replicas) == [1, 2, 3] for _, replicas, _ in offsets.values())
    create_replicated(bootstrap, "coordinated", 1, {"min.insync.replicas": "2"})
    placed_on(cluster, "coordinated")
    produce(bootstrap, "coordinated", make_records("c", keyed=0, unkeyed=20), partition=0)
    group = "moving-coordinator"
    committer = ck.assign_only_consumer(bootstrap, {"group.id": group})
    try:
        committer.commit(offsets=[TopicPartition("coordinated", 0, 12)], asynchronous=False)
    finally:
        committer.close()
    coordinator = group_coordinator(bootstrap, group)
    cluster.node(coordinator).kill()
    killed_at = time.monotonic()
    survivor = next(n for n in cluster.nodes if n.node_id != coordinator)

    def new_coordinator() -> int | None:
        try:
            found = group_coordinator(survivor.bootstrap, group)
        except KafkaException as exc:
            # Kafka's answers while the partition moves and its new leader loads the group.
            assert ck.kafka_error(exc).code() in (KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                                                  KafkaError.NOT_COORDINATOR,
                                                  KafkaError.COORDINATOR_NOT_AVAILABLE), exc
            return None
        return found if found != coordinator else None
    moved = wait_until(new_coordinator, ck.TIMEOUT_S, "a new coordinator for the group")
    print(f"the group's coordinator moved {time.monotonic() - killed_at:.2f} s after a kill -9 "
          "(broker.session.timeout.ms=3000)")
    consumer = ck.assign_only_consumer(survivor.bootstrap, {"group.id": group})
    try:
        def committed() -> int:
            return consumer.committed([TopicPartition("coordinated", 0)],
                                      timeout=ck.TIMEOUT_S)[0].offset
        assert committed() == 12, "the offset committed before the kill, at the new coordinator"
        consumer.commit(offsets=[TopicPartition("coordinated", 0, 17)], asynchronous=False)
        assert committed() == 17
    finally:
        consumer.close()
    assert group_coordinator(survivor.bootstrap, group) == moved


def test_the_transaction_coordinator_moves_with_its_partitions_leadership(
        quick_fencing_cluster):
    """`__transaction_state` has transaction.state.log.replication.factor (3) replicas; the
    transaction coordinator follows the leadership of the transactional id's partition
    (Kafka's TransactionStateManager loads a partition's transactions when its broker becomes
    the leader): kill -9 of the coordinator's broker in the middle of a transaction moves the
    partition to an in-sync replica, whose coordinator loads the open transaction from the
    replicated log. The producer's commit, retried there, completes it (its markers reach
    every partition, whichever broker now leads them), and the next transaction goes to the
    new coordinator."""
    cluster = quick_fencing_cluster
    bootstrap = cluster.bootstrap()
    topic = "txn-moving"
    create_replicated(bootstrap, topic, 3, {"min.insync.replicas": "2"})
    placed_on(cluster, topic)
    producer = ck.producer(bootstrap, {"transactional.id": "moving-txn",
                                       "transaction.timeout.ms": 120000,
                                       "message.timeout.ms": 120000})
    producer.init_transactions(ck.TIMEOUT_S)

    def produce_values(values: list[str]) -> None:
        for i, value in enumerate(values):
            producer.produce(topic, value=value.encode(), partition=i % 3)
        assert producer.flush(120) == 0

    before = [f"before-{i}" for i in range(9)]
    producer.begin_transaction()
    produce_values(before)
    producer.commit_transaction(ck.TIMEOUT_S)
    coordinator = find_coordinator_v1_on(cluster.node(1).port, "moving-txn", 1)
    survivor = next(n for n in cluster.nodes if n.node_id != coordinator)

    open_values = [f"open-{i}" for i in range(9)]
    producer.begin_transaction()
    produce_values(open_values)
    cluster.node(coordinator).kill()
    killed_at = time.monotonic()
    producer.commit_transaction(120)
    print(f"an open transaction committed at a new coordinator {time.monotonic() - killed_at:.2f}"
          " s after a kill -9 of its old one (broker.session.timeout.ms=3000)")
    moved = find_coordinator_v1_on(survivor.port, "moving-txn", 1)
    assert moved != coordinator

    after = [f"after-{i}" for i in range(9)]
    producer.begin_transaction()
    produce_values(after)
    producer.commit_transaction(ck.TIMEOUT_S)

    expected = sorted(before + open_values + after)

    def committed_values() -> list[str]:
        stored = ck.consume_all(survivor.bootstrap, topic, 3,
                                config={"isolation.level": "read_committed"})
        return sorted(s.record.value.decode() for s in stored)
    # The last markers may still be on their way when the commit is answered (Kafka writes
    # them after EndTxn's answer): read_committed sees the records once they are there.
    values = wait_until(lambda: (lambda v: v if v == expected else None)(committed_values()),
                        ck.TIMEOUT_S, "every committed record to be readable")
    assert values == expected, "every committed record, once"


def test_a_stopped_follower_leaves_the_isr_and_rejoins(tmp_path, request):
    """Kafka's Partition.maybeShrinkIsr / maybeExpandIsr: a follower that has not caught up
    for replica.lag.time.max.ms leaves the ISR (acks=all then needs only the others), and
    joins it again once it holds the high watermark."""
    with started(tmp_path, request, {"broker.session.timeout.ms": "60000",
                                     "replica.lag.time.max.ms": "3000"},
                 offsets_topic=True) as cluster:
        bootstrap = cluster.bootstrap()
        create_replicated(bootstrap, "lagging", 1, {"min.insync.replicas": "2"})
        placed, leader, stopped = placed_on(cluster, "lagging")
        produce(bootstrap, "lagging", make_records("before", keyed=5, unkeyed=0),
                   partition=0)
        stopped.proc.send_signal(signal.SIGSTOP)
        try:
            wait_until(lambda: stopped.node_id not in partitions_of(leader.bootstrap,
                                                                    "lagging")[0][2],
                       ck.TIMEOUT_S, "the stopped follower to leave the ISR")
            # Two in sync, min.insync.replicas=2: acks=all is answered without it.
            produce(leader.bootstrap, "lagging", make_records("without", keyed=5, unkeyed=0),
                       partition=0)
        finally:
            stopped.proc.send_signal(signal.SIGCONT)
        wait_until(lambda: sorted(partitions_of(leader.bootstrap, "lagging")[0][2])
                   == [1, 2, 3], ck.TIMEOUT_S, "the follower to rejoin the ISR")
        wait_for_identical_replicas(cluster, "lagging", 1)
        stored = ck.consume_all(bootstrap, "lagging", 1)
        assert len(stored) == 10, [(s.offset, s.record.value[:12]) for s in stored]


def test_cut_off_replicas_leave_the_isr_and_a_cut_off_leaders_divergent_suffix_goes(
        tmp_path, request):
    """Network cuts (each node in its own network namespace). A follower cut off from its
    leader (both still reach the active controller) leaves the ISR after
    replica.lag.time.max.ms (Kafka's maybeShrinkIsr) and rejoins after the heal. A leader
    cut off from everyone keeps taking acks=1 writes it alone holds, a divergent suffix, while
    the others fence it and elect an in-sync replica; after the heal it learns it is a
    follower, truncates that suffix where its log and the new leader's diverge
    (OffsetForLeaderEpoch, KIP-101/KIP-279) and catches up: the three logs are the same bytes,
    every acks=all record is there and none of the isolated leader's acks=1 records."""
    network, why = Network.create(3)
    if network is None:
        pytest.skip(why)
    try:
        with started(tmp_path, request, {"broker.session.timeout.ms": "3000",
                                         "broker.heartbeat.interval.ms": "500",
                                         "replica.lag.time.max.ms": "3000"},
                     network=network) as cluster:
            controller = cluster.active_controller().node_id
            leader, follower = [n for n in (1, 2, 3) if n != controller]
            bootstrap = cluster.bootstrap()
            admin = ck.admin(bootstrap)  # held until the answer
            admin.create_topics(
                [NewTopic("cut", 1, replication_factor=-1,
                          replica_assignment=[[leader, follower, controller]])],
                operation_timeout=ck.TIMEOUT_S)["cut"].result(ck.TIMEOUT_S)
            observer = cluster.node(controller)
            wait_until(lambda: sorted(partitions_of(observer.bootstrap, "cut")[0][2])
                       == [1, 2, 3], ck.TIMEOUT_S, "three in-sync replicas")
            kept = produce(bootstrap, "cut", make_records("before", keyed=0, unkeyed=20),
                           partition=0)

            # A follower cut off from its leader only.
            network.cut(leader, follower)
            wait_until(lambda: follower not in partitions_of(observer.bootstrap, "cut")[0][2],
                       ck.TIMEOUT_S, "the cut-off follower to leave the ISR")
            kept += produce(bootstrap, "cut", make_records("during", keyed=0, unkeyed=20),
                            partition=0)
            network.heal()
            wait_until(lambda: sorted(partitions_of(observer.bootstrap, "cut")[0][2])
                       == [1, 2, 3], ck.TIMEOUT_S, "the follower to rejoin the ISR")
            wait_for_identical_replicas(cluster, "cut", 1)

            # A leader cut off from everyone: what it takes with acks=1 only it holds.
            isolated = cluster.node(leader)
            network.isolate(leader)
            alone = produce(isolated.bootstrap, "cut",
                            make_records("alone", keyed=0, unkeyed=15), partition=0,
                            config={"acks": "1", "enable.idempotence": False})
            wait_until(lambda: partitions_of(observer.bootstrap, "cut")[0][0]
                       not in (-1, leader), ck.TIMEOUT_S, "an in-sync replica to take the lead")
            kept += produce(observer.bootstrap, "cut",
                            make_records("after", keyed=0, unkeyed=20), partition=0)
            network.heal()
            wait_until(lambda: sorted(partitions_of(observer.bootstrap, "cut")[0][2])
                       == [1, 2, 3], ck.TIMEOUT_S, "the old leader to rejoin the ISR")
            wait_for_identical_replicas(cluster, "cut", 1)
            assert "truncating the follower's log" in isolated.log()
            values = [s.record.value for s in ck.consume_all(bootstrap, "cut", 1)]
            assert values == [s.record.value for s in kept]
            assert alone and not any(v.startswith(b"alone") for v in values)
    finally:
        network.remove()


def test_sigterm_moves_leadership_away_before_the_process_exits(cluster):
    """Kafka's controlled shutdown: a broker stopped with SIGTERM hands the partitions it leads
    to in-sync replicas before it exits, long before its session (60 s here) would run out."""
    bootstrap = cluster.bootstrap()
    create_replicated(bootstrap, "handover", 3, {"min.insync.replicas": "2"})
    placed, leader, _ = placed_on(cluster, "handover")
    first = produce(bootstrap, "handover", make_records("first", keyed=0, unkeyed=30))
    leader.stop()
    survivor = next(n for n in cluster.nodes if n.running())
    moved = wait_until(
        lambda: (lambda p: p if all(l not in (-1, leader.node_id) for l, _, _ in p.values())
                 else None)(partitions_of(survivor.bootstrap, "handover")),
        5.0, "every partition led by a running broker")
    assert all(leader.node_id not in isr for _, _, isr in moved.values())
    second = produce(cluster.bootstrap(), "handover",
                        make_records("second", keyed=0, unkeyed=30))
    leader.start()
    wait_until(lambda: all(sorted(isr) == [1, 2, 3] for _, _, isr in
                           partitions_of(survivor.bootstrap, "handover").values()),
               ck.TIMEOUT_S, "the restarted broker back in every ISR")
    assert len(ck.consume_all(cluster.bootstrap(), "handover", 3)) == len(first) + len(second)
    wait_for_identical_replicas(cluster, "handover", 3)

    # Preferred-leader election (ElectLeaders type 0) gives the lead back to the first
    # replica, the restarted broker, now in sync again; a second one is not needed.
    admin = ck.admin(cluster.bootstrap())
    asked = [TopicPartition("handover", p) for p in range(3)]
    results = admin.elect_leaders(ElectionType.PREFERRED, asked).result(ck.TIMEOUT_S)
    codes = {tp.partition: (err.code() if err else None) for tp, err in results.items()}
    assert codes[0] is None, codes
    wait_until(lambda: partitions_of(survivor.bootstrap, "handover")[0][0] == leader.node_id,
               ck.TIMEOUT_S, "the preferred replica to lead partition 0 again")
    again = admin.elect_leaders(ElectionType.PREFERRED, asked).result(ck.TIMEOUT_S)
    assert all(err is not None and err.code() == KafkaError.ELECTION_NOT_NEEDED
               for err in again.values()), again


def test_auto_leader_rebalance_gives_the_lead_back_to_preferred_replicas(tmp_path, request):
    """Kafka's auto.leader.rebalance.enable (KRaft's maybeBalancePartitionLeaders): every
    leader.imbalance.check.interval.seconds the active controller moves the lead of each
    partition whose preferred (first) replica is unfenced and in sync back to it, with no
    ElectLeaders asked."""
    with started(tmp_path, request, {"broker.session.timeout.ms": "60000",
                                     "leader.imbalance.check.interval.seconds": "1"}) as cluster:
        bootstrap = cluster.bootstrap()
        create_replicated(bootstrap, "rebalanced", 3, {"min.insync.replicas": "2"})
        placed, leader, _ = placed_on(cluster, "rebalanced")
        preferred = {p: replicas[0] for p, (_, replicas, _) in placed.items()}
        produce(bootstrap, "rebalanced", make_records("before", keyed=0, unkeyed=30))
        leader.stop()
        survivor = next(n for n in cluster.nodes if n.running())
        wait_until(lambda: all(l not in (-1, leader.node_id) for l, _, _ in
                               partitions_of(survivor.bootstrap, "rebalanced").values()),
                   ck.TIMEOUT_S, "every partition led by a running broker")
        leader.start()
        back = wait_until(lambda: (lambda p: p if all(p[i][0] == preferred[i] for i in p)
                                   else None)(partitions_of(survivor.bootstrap, "rebalanced")),
                          ck.TIMEOUT_S, "every partition led by its preferred replica again")
        assert all(sorted(isr) == [1, 2, 3] for _, _, isr in back.values())
        assert len(ck.consume_all(bootstrap, "rebalanced", 3)) == 30


def test_unclean_election_only_where_the_topic_allows_it(quick_fencing_cluster):
    """Kafka's unclean.leader.election.enable: with its only in-sync replica fenced a partition
    stays offline (leader -1); allowed for the topic, the out-of-sync replica takes over, what
    only the lost replica held is gone, and the new leader says so at WARN."""
    cluster = quick_fencing_cluster
    admin = ck.admin(cluster.bootstrap())
    admin.create_topics([NewTopic("unclean", 1, replication_factor=-1,
                                  replica_assignment=[[1, 2]])])["unclean"].result(ck.TIMEOUT_S)
    observer = cluster.node(3)
    wait_until(lambda: partitions_of(observer.bootstrap, "unclean")[0][2] == [1, 2],
               ck.TIMEOUT_S, "both replicas in sync")
    kept = produce(cluster.bootstrap(), "unclean",
                      make_records("kept", keyed=0, unkeyed=5), partition=0)
    wait_for_identical_replicas(cluster, "unclean", 1)
    lagging = cluster.node(2)
    lagging.proc.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: partitions_of(observer.bootstrap, "unclean")[0][2] == [1],
                   ck.TIMEOUT_S, "the stopped replica to leave the ISR")
        produce(cluster.node(1).bootstrap, "unclean",
                   make_records("lost", keyed=0, unkeyed=5), partition=0)
        cluster.node(1).kill()
    finally:
        lagging.proc.send_signal(signal.SIGCONT)
    # Off (the default): the only in-sync replica is gone, so nobody leads.
    wait_until(lambda: 1 not in [b.id for b in ck.admin(observer.bootstrap).list_topics(
        timeout=ck.TIMEOUT_S).brokers.values()], ck.TIMEOUT_S, "broker 1 to be fenced")
    assert partitions_of(observer.bootstrap, "unclean")[0][0] == -1
    # Allowed for the topic: broker 2 leads, alone in the ISR, without the lost records.
    resource = ConfigResource(ResourceType.TOPIC, "unclean", incremental_configs=[
        ConfigEntry("unclean.leader.election.enable", "true",
                    incremental_operation=AlterConfigOpType.SET)])
    observer_admin = ck.admin(observer.bootstrap)  # must outlive its future
    observer_admin.incremental_alter_configs([resource])[resource].result(ck.TIMEOUT_S)
    wait_until(lambda: partitions_of(observer.bootstrap, "unclean")[0][:3:2] == (2, [2]),
               ck.TIMEOUT_S, "the out-of-sync replica to lead")
    after = produce(observer.bootstrap, "unclean",
                       make_records("after", keyed=0, unkeyed=3), partition=0)
    values = [s.record.value for s in ck.consume_all(observer.bootstrap, "unclean", 1)]
    assert values == [s.record.value for s in kept + after]
    assert "unclean leader election" in lagging.log()


def test_a_consumer_reads_from_the_follower_on_its_rack(tmp_path, request):
    """KIP-392 with Kafka's RackAwareReplicaSelector: the leader points a consumer whose
    client.rack names a follower's rack at that follower (preferred_read_replica), which serves
    it up to its high watermark; the follower's runnel_partition_bytes_out_total shows it."""
    http = dict(zip((1, 2, 3), free_ports(3)))

    def on_its_rack(node) -> None:
        node.extra.update({"broker.rack": f"rack-{node.node_id}",
                           "http.listen": f"127.0.0.1:{http[node.node_id]}"})
    with started(tmp_path, request, {"replica.selector.class":
                                     "org.apache.kafka.common.replica.RackAwareReplicaSelector"},
                 each_node=on_its_rack) as cluster:
        bootstrap = cluster.bootstrap()
        admin = ck.admin(bootstrap)
        admin.create_topics([NewTopic("racks", 1, replication_factor=-1,
                                      replica_assignment=[[1, 2, 3]])])["racks"].result(ck.TIMEOUT_S)
        wait_until(lambda: sorted(partitions_of(bootstrap, "racks")[0][2]) == [1, 2, 3],
                   ck.TIMEOUT_S, "three in-sync replicas")
        acked = produce(bootstrap, "racks", make_records("racks", keyed=0, unkeyed=40),
                           partition=0)

        def bytes_out(node_id: int) -> float:
            url = f"http://127.0.0.1:{http[node_id]}/metrics"
            with urllib.request.urlopen(url, timeout=10) as response:
                text = response.read().decode()
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if (sample.name == "runnel_partition_bytes_out_total"
                            and sample.labels.get("topic") == "racks"):
                        return sample.value
            return 0.0

        before = {n: bytes_out(n) for n in (1, 2, 3)}
        stored = ck.consume_all(bootstrap, "racks", 1, config={"client.rack": "rack-3"})
        assert [s.record.value for s in stored] == [s.record.value for s in acked]
        after = {n: bytes_out(n) for n in (1, 2, 3)}
        assert after[3] > before[3], (before, after)
        assert after[2] == before[2], "the follower on another rack served nothing"


def test_two_of_three_replicas_down_refuses_acks_all(tmp_path, request):
    """Kafka's min.insync.replicas: with two of a partition's three replicas fenced its ISR is
    the survivor alone, so acks=all is refused with NOT_ENOUGH_REPLICAS before anything is
    appended; what was committed stays readable from the survivor, which leads; once one
    replica is back in sync writes resume with no gap and no rewind. Five nodes, so that the
    metadata quorum outlives two of them."""
    with started(tmp_path, request, {"broker.session.timeout.ms": "3000",
                                     "broker.heartbeat.interval.ms": "500"}, size=5) as cluster:
        bootstrap = cluster.bootstrap()
        admin = ck.admin(bootstrap)
        admin.create_topics([NewTopic("quorum", 1, replication_factor=-1,
                                      replica_assignment=[[1, 2, 3]],
                                      config={"min.insync.replicas": "2"})])[
            "quorum"].result(ck.TIMEOUT_S)
        observer = cluster.node(5)
        wait_until(lambda: sorted(partitions_of(observer.bootstrap, "quorum")[0][2])
                   == [1, 2, 3], ck.TIMEOUT_S, "three in-sync replicas")
        committed = produce(bootstrap, "quorum", make_records("committed", keyed=0, unkeyed=20),
                            partition=0)
        cluster.node(1).kill()
        cluster.node(2).kill()
        wait_until(lambda: partitions_of(observer.bootstrap, "quorum")[0][:3:2] == (3, [3]),
                   ck.TIMEOUT_S, "the survivor to lead alone in the ISR")
        refusing = Producer({"bootstrap.servers": observer.bootstrap, "acks": "all",
                             "message.timeout.ms": 3000, "retries": 0})
        errors: list[KafkaError] = []
        refusing.produce("quorum", value=b"refused", partition=0,
                         on_delivery=lambda err, msg: errors.append(err))
        refusing.flush(ck.TIMEOUT_S)
        assert len(errors) == 1 and errors[0] is not None, errors
        assert errors[0].code() == KafkaError.NOT_ENOUGH_REPLICAS, errors[0]
        readable = ck.consume_all(observer.bootstrap, "quorum", 1)
        assert [s.record.value for s in readable] == [s.record.value for s in committed]

        cluster.node(2).start()
        wait_until(lambda: sorted(partitions_of(observer.bootstrap, "quorum")[0][2]) == [2, 3],
                   ck.TIMEOUT_S, "the restarted replica back in the ISR")
        resumed = produce(observer.bootstrap, "quorum",
                          make_records("resumed", keyed=0, unkeyed=10), partition=0)
        assert [s.offset for s in resumed] == list(range(20, 30)), "no gap, no rewind"
        wait_for_identical_replicas(cluster, "quorum", 1)
