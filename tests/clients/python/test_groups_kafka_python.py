"""kafka-python 3.x group consumers against Runnel: two members split a topic, read every record
once, commit; describe/list and OffsetDelete through kafka-python's admin; a clean close hands
the partitions to the other member; a new member resumes after the commits.

kafka-python's consumer is driven by its poll loop (a member that is not polled neither
heartbeats nor rejoins), so it polls in its own thread, as applications run it. Its partner
member is a confluent-kafka consumer, which shows that two different client libraries share one
group. Groups made of kafka-python members only (several processes, rebalances, a SIGKILLed
member) are tested in test_groups_each_client.py."""

from __future__ import annotations

import threading

from confluent_kafka import Consumer, KafkaError
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import GroupSubscribedToTopicError, NoError

from ck import create_topic, produce
from helpers import Record, now_ms, wait_until

GROUP_OVERRIDES = {
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "5",
}
WAIT_S = 60.0


def records(tag: str, count: int) -> list[Record]:
    base = now_ms()
    return [Record(f"k{i}".encode(), f"{tag}-{i}".encode(), (), base + i) for i in range(count)]


class Member(threading.Thread):
    """One group member polling in its own thread; `call` runs work on that thread."""

    def __init__(self, bootstrap: str, group: str, topic: str, **config):
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                      auto_offset_reset="earliest", enable_auto_commit=False,
                                      session_timeout_ms=6000, heartbeat_interval_ms=500,
                                      **config)
        self.lock = threading.Lock()
        self.seen: list[bytes] = []
        self.assigned: set[int] = set()
        self.tasks: list = []
        self.stopping = False
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            while not self.stopping:
                # A long poll: kafka-python 3.0.12 can lose its heartbeat when a poll times out
                # in the middle of a rebalance (`timeout in ensure_active_group`).
                batches = self.consumer.poll(timeout_ms=2000)
                with self.lock:
                    self.seen.extend(m.value for ms in batches.values() for m in ms)
                    self.assigned = {tp.partition for tp in self.consumer.assignment()}
                    tasks, self.tasks = self.tasks, []
                for task, done in tasks:
                    task(self.consumer)
                    done.set()
        except BaseException as e:  # reported by the test thread
            self.error = e
        finally:
            self.consumer.close()

    def call(self, task) -> None:
        done = threading.Event()
        with self.lock:
            self.tasks.append((task, done))
        assert done.wait(WAIT_S), "the member thread did not run the task"

    def stop(self) -> None:
        self.stopping = True
        self.join(WAIT_S)
        assert self.error is None, self.error

    def snapshot(self) -> tuple[list[bytes], set[int]]:
        assert self.error is None, self.error
        with self.lock:
            return list(self.seen), set(self.assigned)


class ConfluentMember:
    """A librdkafka member polled from the test thread."""

    def __init__(self, bootstrap: str, group: str, topic: str):
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                                  "enable.auto.commit": False, "auto.offset.reset": "earliest",
                                  "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                                  "partition.assignment.strategy": "roundrobin"})
        self.consumer.subscribe([topic])
        self.seen: list[bytes] = []

    def snapshot(self) -> tuple[list[bytes], set[int]]:
        msg = self.consumer.poll(0.05)
        if msg is not None:
            if msg.error() is None:
                self.seen.append(msg.value())
            else:
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error()
        return list(self.seen), {tp.partition for tp in self.consumer.assignment()}

    def call(self, task) -> None:
        task(self.consumer)

    def stop(self) -> None:
        self.consumer.close()


def test_two_members_split_commit_and_hand_over(broker_factory):
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    bootstrap = broker_factory(GROUP_OVERRIDES).bootstrap
    topic, group = "kp-groups", "kp-readers"
    create_topic(bootstrap, topic, 4)
    members = [Member(bootstrap, group, topic,
                      partition_assignment_strategy=[RoundRobinPartitionAssignor]),
               ConfluentMember(bootstrap, group, topic)]
    try:
        wait_until(lambda: [len(m.snapshot()[1]) for m in members] == [2, 2], WAIT_S,
                   "two partitions per member")
        acked = produce(bootstrap, topic, records("kp", 40))
        wait_until(lambda: sum(len(m.snapshot()[0]) for m in members) >= 40, WAIT_S,
                   "all 40 records", interval=0)
        seen = sorted(v for m in members for v in m.snapshot()[0])
        assert seen == sorted(f"kp-{i}".encode() for i in range(40))
        members[0].call(lambda consumer: consumer.commit())
        members[1].call(lambda consumer: consumer.commit(asynchronous=False))
        tps = [TopicPartition(topic, p) for p in range(4)]
        ends = {tp: sum(1 for s in acked if s.partition == tp.partition) for tp in tps}
        committed = {}
        members[0].call(lambda c: committed.update({tp: c.committed(tp) for tp in tps}))
        assert committed == ends

        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            description = admin.describe_groups([group])[group]
            assert description["group_state"] == "Stable"
            assert len(description["members"]) == 2
            listed = admin.list_groups()
            assert any(g["group_id"] == group and g["group_state"] == "Stable" for g in listed)
            # OffsetDelete is refused while the group subscribes to the topic.
            deleted = admin.delete_group_offsets(group, [TopicPartition(topic, 0)])
            assert deleted[TopicPartition(topic, 0)] is GroupSubscribedToTopicError
        finally:
            admin.close()

        members.pop().stop()
        wait_until(lambda: members[0].snapshot()[1] == set(range(4)), WAIT_S,
                   "the closed member's partitions to move")
    finally:
        for m in members:
            m.stop()

    # A new member resumes after the commits.
    produce(bootstrap, topic, records("later", 4))
    member = Member(bootstrap, group, topic)
    try:
        wait_until(lambda: len(member.snapshot()[0]) >= 4, WAIT_S, "the 4 new records")
        assert sorted(member.snapshot()[0]) == sorted(f"later-{i}".encode() for i in range(4))
    finally:
        member.stop()

    # The group is empty now: its offsets can be deleted per partition.
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        deleted = admin.delete_group_offsets(group, [TopicPartition(topic, 1)])
        assert deleted[TopicPartition(topic, 1)] is NoError, deleted
        offsets = admin.list_group_offsets(group)[group]
        assert TopicPartition(topic, 1) not in offsets
        assert TopicPartition(topic, 0) in offsets
    finally:
        admin.close()
