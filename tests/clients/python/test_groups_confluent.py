"""Consumer groups through confluent-kafka (librdkafka): partitions shared and rebalanced among
members (range, roundrobin and cooperative-sticky), SIGKILLed members evicted after their session
timeout, static membership, commits surviving restarts and kill -9, admin describe/list/delete,
commit and group-size errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from confluent_kafka import (Consumer, ConsumerGroupState, KafkaError, KafkaException,
                             TopicPartition)
from confluent_kafka.admin import AdminClient

from ck import TIMEOUT_S, create_topic, produce
from helpers import Record, now_ms, wait_until

GROUP_OVERRIDES = {
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "5",
}
SESSION_TIMEOUT_MS = 6000


@pytest.fixture
def group_broker(broker_factory):
    return broker_factory(GROUP_OVERRIDES)


def records(tag: str, count: int) -> list[Record]:
    base = now_ms()
    return [Record(f"k{i}".encode(), f"{tag}-{i}".encode(), (), base + i) for i in range(count)]


def member(bootstrap: str, group: str, **config) -> Consumer:
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": 500,
    }
    conf.update(config)
    return Consumer(conf)


class Members:
    """Several consumers polled in turn from this thread; records read are kept per member."""

    def __init__(self, consumers: list[Consumer]):
        self.consumers = consumers
        self.read: list[list[tuple[int, int, bytes]]] = [[] for _ in consumers]

    def poll_once(self) -> None:
        for consumer, read in zip(self.consumers, self.read):
            msg = consumer.poll(0.05)
            if msg is None:
                continue
            if msg.error() is not None:
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
                continue
            read.append((msg.partition(), msg.offset(), msg.value()))

    def until(self, predicate, what: str, timeout: float = 60.0) -> None:
        def step():
            self.poll_once()
            return predicate()
        wait_until(step, timeout, what, interval=0)

    def assignments(self) -> list[set[int]]:
        return [{tp.partition for tp in c.assignment()} for c in self.consumers]

    def values(self) -> list[bytes]:
        return sorted(v for read in self.read for (_, _, v) in read)


def describe(bootstrap: str, group: str):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.describe_consumer_groups([group], request_timeout=TIMEOUT_S)[group].result(
        timeout=TIMEOUT_S)


def list_groups(bootstrap: str):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.list_consumer_groups(request_timeout=TIMEOUT_S).result(timeout=TIMEOUT_S)


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    c = member(bootstrap, group)
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)],
                          timeout=TIMEOUT_S)
        return [tp.offset for tp in tps]
    finally:
        c.close()


@pytest.mark.parametrize("strategy", ["range", "roundrobin", "cooperative-sticky"])
def test_three_members_share_six_partitions_then_a_fourth_joins(group_broker, strategy):
    bootstrap, topic, group = group_broker.bootstrap, "orders", f"billing-{strategy}"
    create_topic(bootstrap, topic, 6)
    members = Members([member(bootstrap, group, **{"partition.assignment.strategy": strategy})
                       for _ in range(3)])
    try:
        for c in members.consumers:
            c.subscribe([topic])
        members.until(lambda: [len(a) for a in members.assignments()] == [2, 2, 2],
                      "two partitions for each of three members")
        assert set().union(*members.assignments()) == set(range(6))

        acked = produce(bootstrap, topic, records("v", 60))
        members.until(lambda: len(members.values()) >= 60, "all 60 records")
        assert members.values() == sorted(f"v-{i}".encode() for i in range(60)), \
            "every record read exactly once"
        for c in members.consumers:
            c.commit(asynchronous=False)
        ends = [sum(1 for s in acked if s.partition == p) for p in range(6)]
        assert committed(bootstrap, group, topic, 6) == ends

        description = describe(bootstrap, group)
        assert description.state == ConsumerGroupState.STABLE
        assert len(description.members) == 3
        assert description.partition_assignor == strategy
        listed = list_groups(bootstrap)
        assert group in {g.group_id for g in listed.valid}

        # A fourth member joins: the six partitions are spread over four.
        fourth = member(bootstrap, group, **{"partition.assignment.strategy": strategy})
        members.consumers.append(fourth)
        members.read.append([])
        fourth.subscribe([topic])
        members.until(lambda: sorted(len(a) for a in members.assignments()) == [1, 1, 2, 2]
                      and set().union(*members.assignments()) == set(range(6)),
                      "a rebalance over four members")
        # A clean close hands its partitions over at once (no session timeout wait).
        members.consumers.pop().close()
        members.read.pop()
        members.until(lambda: sorted(len(a) for a in members.assignments()) == [2, 2, 2],
                      "the closed member's partitions to move", timeout=SESSION_TIMEOUT_MS / 1000)
    finally:
        for c in members.consumers:
            c.close()


KILLABLE_MEMBER = textwrap.dedent("""
    import sys
    from confluent_kafka import Consumer
    c = Consumer({"bootstrap.servers": sys.argv[1], "group.id": sys.argv[2],
                  "session.timeout.ms": int(sys.argv[4]), "heartbeat.interval.ms": 500,
                  "auto.offset.reset": "earliest"})
    c.subscribe([sys.argv[3]])
    reported = None
    while True:
        c.poll(0.1)
        now = sorted(tp.partition for tp in c.assignment())
        if now != reported:
            reported = now
            print("assigned", now, flush=True)
""")


def test_a_sigkilled_member_loses_its_partitions_after_the_session_timeout(group_broker):
    bootstrap, topic, group = group_broker.bootstrap, "jobs", "workers"
    create_topic(bootstrap, topic, 4)
    victim = subprocess.Popen(
        [sys.executable, "-c", KILLABLE_MEMBER, bootstrap, group, topic, str(SESSION_TIMEOUT_MS)],
        stdout=subprocess.PIPE, text=True)
    members = Members([member(bootstrap, group)])
    try:
        members.consumers[0].subscribe([topic])
        members.until(lambda: len(members.assignments()[0]) == 2, "the partitions to be split")
        description = describe(bootstrap, group)
        assert len(description.members) == 2
        victim.kill()
        victim.wait(timeout=TIMEOUT_S)
        members.until(lambda: members.assignments()[0] == set(range(4)),
                      "the killed member's partitions to move after its session timeout",
                      timeout=SESSION_TIMEOUT_MS / 1000 + 30)
        assert len(describe(bootstrap, group).members) == 1
    finally:
        if victim.poll() is None:
            victim.kill()
        victim.wait(timeout=TIMEOUT_S)
        for c in members.consumers:
            c.close()


def test_a_restarted_static_member_keeps_its_partitions_without_a_rebalance(group_broker):
    bootstrap, topic, group = group_broker.bootstrap, "static", "statics"
    create_topic(bootstrap, topic, 4)
    revoked: list[list[int]] = []
    other = member(bootstrap, group, **{"group.instance.id": "other"})
    other.subscribe([topic], on_revoke=lambda c, ps: revoked.append([p.partition for p in ps]))
    static = member(bootstrap, group, **{"group.instance.id": "static-1"})
    static.subscribe([topic])
    members = Members([other, static])
    try:
        members.until(lambda: [len(a) for a in members.assignments()] == [2, 2],
                      "two partitions each")
        before = members.assignments()[1]
        revoked.clear()
        generation = describe(bootstrap, group)
        assert len(generation.members) == 2
        # A static member's close sends no LeaveGroup: its place waits for its session timeout.
        static.close()
        restarted = member(bootstrap, group, **{"group.instance.id": "static-1"})
        restarted.subscribe([topic])
        members.consumers[1] = restarted
        members.until(lambda: members.assignments()[1] == before,
                      "the restarted static member to get its partitions back")
        for _ in range(20):
            members.poll_once()
        assert revoked == [], f"the other member was rebalanced: {revoked}"
        assert members.assignments()[0] == set(range(4)) - before
    finally:
        for c in members.consumers:
            c.close()


def test_committed_offsets_survive_restart_and_kill9(broker_factory):
    broker = broker_factory(GROUP_OVERRIDES)
    bootstrap, topic, group = broker.bootstrap, "ledger", "auditors"
    create_topic(bootstrap, topic, 2)
    produce(bootstrap, topic, records("first", 10))
    members = Members([member(bootstrap, group)])
    members.consumers[0].subscribe([topic])
    members.until(lambda: len(members.values()) >= 10, "the first 10 records")
    members.consumers[0].commit(asynchronous=False)
    members.consumers[0].close()
    assert sum(committed(bootstrap, group, topic, 2)) == 10

    broker.stop()
    broker.start()
    assert sum(committed(bootstrap, group, topic, 2)) == 10, "lost at a clean restart"
    broker.kill()
    broker.start()
    assert sum(committed(bootstrap, group, topic, 2)) == 10, "lost at kill -9"

    produce(bootstrap, topic, records("second", 6))
    members = Members([member(bootstrap, group)])
    members.consumers[0].subscribe([topic])
    members.until(lambda: len(members.values()) >= 6, "the 6 new records")
    for _ in range(10):
        members.poll_once()
    assert all(v.startswith(b"second") for v in members.values()), members.values()
    members.consumers[0].commit(asynchronous=False)
    members.consumers[0].close()

    # kafka-python joining the same group reads nothing already committed.
    from kafka import KafkaConsumer
    produce(bootstrap, topic, records("third", 4))
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=500)
    try:
        # kafka-python's first join assigns from whatever metadata it holds: on loaded cores a
        # join that beat its metadata response assigned nothing ("No partition metadata for
        # topic ledger") and the member never read. Asking for the topic's partitions first
        # (a metadata request kafka-python blocks on) is what an application checking its
        # topic does, and leaves the check below about committed offsets only.
        assert consumer.partitions_for_topic(topic) == {0, 1}
        seen: list[bytes] = []

        def step():
            for messages in consumer.poll(timeout_ms=200).values():
                seen.extend(m.value for m in messages)
            return len(seen) >= 4
        wait_until(step, 60, "kafka-python to read the 4 uncommitted records", interval=0)
        assert sorted(seen) == sorted(f"third-{i}".encode() for i in range(4))
    finally:
        consumer.close()


def test_empty_groups_are_deleted_and_busy_ones_refused(group_broker):
    bootstrap, topic = group_broker.bootstrap, "deletable"
    create_topic(bootstrap, topic, 1)
    produce(bootstrap, topic, records("d", 3))
    busy = Members([member(bootstrap, "busy")])
    busy.consumers[0].subscribe([topic])
    busy.until(lambda: len(busy.values()) >= 3, "the busy group to read")
    idle = Members([member(bootstrap, "idle")])
    idle.consumers[0].subscribe([topic])
    idle.until(lambda: len(idle.values()) >= 3, "the idle group's member to read")
    idle.consumers[0].commit(offsets=[TopicPartition(topic, 0, 2)], asynchronous=False)
    idle.consumers[0].close()

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.delete_consumer_groups(["idle", "busy", "never"], request_timeout=TIMEOUT_S)
    assert futures["idle"].exception(timeout=TIMEOUT_S) is None
    busy_error = futures["busy"].exception(timeout=TIMEOUT_S)
    assert busy_error is not None and busy_error.args[0].code() == KafkaError.NON_EMPTY_GROUP
    never_error = futures["never"].exception(timeout=TIMEOUT_S)
    assert never_error is not None and never_error.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND
    assert committed(bootstrap, "idle", topic, 1) == [TopicPartition(topic, 0).offset]
    assert "idle" not in {g.group_id for g in list_groups(bootstrap).valid}
    busy.consumers[0].close()


def test_commit_errors_reach_the_client(broker_factory):
    """Errors a committing application sees through librdkafka: metadata past
    offset.metadata.max.bytes is OFFSET_METADATA_TOO_LARGE (metadata within it is kept), and a
    member past group.max.size is refused with GROUP_MAX_SIZE_REACHED. (librdkafka sends the
    metadata string with its NUL terminator, which counts towards the limit.)"""
    bootstrap = broker_factory({**GROUP_OVERRIDES, "offset.metadata.max.bytes": "64",
                                "group.max.size": "1"}).bootstrap
    topic, group = "commit-errors", "committers"
    create_topic(bootstrap, topic, 1)

    c = member(bootstrap, group)
    try:
        with pytest.raises(KafkaException) as refused:
            c.commit(offsets=[TopicPartition(topic, 0, 3, metadata="m" * 100)],
                     asynchronous=False)
        assert refused.value.args[0].code() == KafkaError.OFFSET_METADATA_TOO_LARGE
        c.commit(offsets=[TopicPartition(topic, 0, 3, metadata="m" * 20)], asynchronous=False)
        (kept,) = c.committed([TopicPartition(topic, 0)], timeout=TIMEOUT_S)
        assert (kept.offset, kept.metadata) == (3, "m" * 20)
    finally:
        c.close()

    first, second = member(bootstrap, group), member(bootstrap, group)
    try:
        first.subscribe([topic])
        wait_until(lambda: first.poll(0.1) is None and first.assignment(), 30,
                   "the first member's assignment")
        second.subscribe([topic])

        def second_refused():
            msg = second.poll(0.1)
            return msg is not None and msg.error() is not None and msg.error()
        error = wait_until(second_refused, 30, "the second member's join to be refused",
                           interval=0)
        assert error.code() == KafkaError.GROUP_MAX_SIZE_REACHED, error
    finally:
        first.close()
        second.close()


def test_admin_resets_an_inactive_groups_offsets(group_broker):
    """AlterConsumerGroupOffsets (an OffsetCommit from the admin client, no member) is what
    `kafka-consumer-groups --reset-offsets` sends: accepted for an empty group, and the next
    member resumes there; refused with UNKNOWN_MEMBER_ID while the group has members."""
    from confluent_kafka import ConsumerGroupTopicPartitions
    bootstrap, topic, group = group_broker.bootstrap, "rewound", "rewinders"
    create_topic(bootstrap, topic, 1)
    produce(bootstrap, topic, records("r", 8))
    reader = Members([member(bootstrap, group)])
    reader.consumers[0].subscribe([topic])
    reader.until(lambda: len(reader.values()) >= 8, "the first read")
    reader.consumers[0].commit(asynchronous=False)

    admin = AdminClient({"bootstrap.servers": bootstrap})

    def alter(offset: int):
        request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, offset)])
        (future,) = admin.alter_consumer_group_offsets([request],
                                                       request_timeout=TIMEOUT_S).values()
        return future.result(timeout=TIMEOUT_S)

    (refused,) = alter(3).topic_partitions
    assert refused.error is not None and refused.error.code() == KafkaError.UNKNOWN_MEMBER_ID, \
        refused.error
    reader.consumers[0].close()

    altered = alter(3)
    assert [(tp.offset, tp.error) for tp in altered.topic_partitions] == [(3, None)]
    (listed,) = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)], request_timeout=TIMEOUT_S).values()
    assert [tp.offset for tp in listed.result(timeout=TIMEOUT_S).topic_partitions] == [3]

    resumed = Members([member(bootstrap, group)])
    resumed.consumers[0].subscribe([topic])
    resumed.until(lambda: len(resumed.values()) >= 5, "the records after offset 3")
    assert [offset for (_, offset, _) in resumed.read[0]] == [3, 4, 5, 6, 7]
    resumed.consumers[0].close()
