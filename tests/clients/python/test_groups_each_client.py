"""Consumer groups made of kafka-python members only, and of aiokafka members only.

test_groups_confluent.py proves the group protocol with librdkafka members; this module runs the
same acceptance scenario with every member a separate OS process of one Python client library
(see group_member.py), so that a member can be SIGKILLed, with the library's own assignors
(kafka-python: range, sticky and cooperative-sticky, whose incremental rebalances move only
the partitions that change owner; aiokafka: range and sticky):

1. three members share a 6-partition topic two partitions each, read every record once between
   them, and commit offsets equal to the partition ends; DescribeGroups (through that library's
   admin client) shows 3 members in a Stable group, and ListGroups lists it;
2. a fourth member joins: the partitions are rebalanced 1/1/2/2;
3. a member closed cleanly leaves at once: its partitions move well within the session timeout;
4. a member SIGKILLed is evicted after its session timeout: its partitions move to the others and
   DescribeGroups shows the member count dropping.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from kafka import KafkaAdminClient

from ck import create_topic, produce
from group_member import MemberProcess
from helpers import Record, now_ms, wait_until

GROUP_OVERRIDES = {
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "5",
}
# Long enough that a member process starved of CPU on a loaded 2-core machine keeps its
# session (members heartbeat every 500 ms); a clean close must still move partitions well
# within it.
SESSION_TIMEOUT_MS = 10000
SESSION_TIMEOUT_S = SESSION_TIMEOUT_MS / 1000
PARTITIONS = 6
WAIT_S = 60.0


@dataclass(frozen=True)
class GroupView:
    state: str
    members: int
    protocol: str  # the assignor chosen (only reported while Stable)


class KafkaPythonAdmin:
    """DescribeGroups, ListGroups and OffsetFetch through kafka-python's KafkaAdminClient."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap

    def _run(self, work):
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            return work(admin)
        finally:
            admin.close()

    def describe(self, group: str) -> GroupView:
        description = self._run(lambda admin: admin.describe_groups([group])[group])
        assert description["error"] is None, description
        return GroupView(description["group_state"], len(description["members"]),
                         description["protocol_data"])

    def listed(self) -> set[str]:
        return {g["group_id"] for g in self._run(lambda admin: admin.list_groups())}

    def committed(self, group: str, topic: str) -> dict[int, int]:
        offsets = self._run(lambda admin: admin.list_group_offsets(group)[group])
        return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


class AiokafkaAdmin:
    """DescribeGroups, ListGroups and OffsetFetch through aiokafka's AIOKafkaAdminClient."""

    def __init__(self, bootstrap: str):
        self.bootstrap = bootstrap

    def _run(self, work):
        async def run():
            admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
            await admin.start()
            try:
                return await work(admin)
            finally:
                await admin.close()
        return asyncio.run(run())

    def describe(self, group: str) -> GroupView:
        responses = self._run(lambda admin: admin.describe_consumer_groups([group]))
        # aiokafka returns the raw responses: (error_code, group_id, state, protocol_type,
        # protocol, members, ...) per group.
        (description,) = [g for r in responses for g in r.groups if g[1] == group]
        error_code, _, state, _, protocol, members = description[:6]
        assert error_code == 0, description
        return GroupView(state, len(members), protocol)

    def listed(self) -> set[str]:
        return {g[0] for g in self._run(lambda admin: admin.list_consumer_groups())}

    def committed(self, group: str, topic: str) -> dict[int, int]:
        offsets = self._run(lambda admin: admin.list_consumer_group_offsets(group))
        return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


ADMINS = {"kafka-python": KafkaPythonAdmin, "aiokafka": AiokafkaAdmin}


def records(tag: str, count: int) -> list[Record]:
    base = now_ms()
    return [Record(f"k{i}".encode(), f"{tag}-{i}".encode(), (), base + i) for i in range(count)]


def wait_for_split(members: list[MemberProcess], sizes: list[int], timeout: float,
                   what: str) -> None:
    """Wait until the members' assignments have these sizes (in any order) and cover every
    partition; on timeout, the failure shows the assignments last reported."""

    def split() -> bool:
        assignments = [m.assignment() for m in members]
        return (sorted(len(a) for a in assignments) == sorted(sizes)
                and set().union(*assignments) == set(range(PARTITIONS)))

    try:
        wait_until(split, timeout, what)
    except AssertionError as e:
        raise AssertionError(f"{e}; members: {'; '.join(m.summary() for m in members)}") from None


@pytest.mark.parametrize("client, assignor", [
    ("kafka-python", "range"), ("kafka-python", "sticky"), ("kafka-python", "cooperative-sticky"),
    ("aiokafka", "range"), ("aiokafka", "sticky"),
])
def test_members_share_rebalance_and_leave_by_close_and_by_kill(broker_factory, client, assignor):
    bootstrap = broker_factory(GROUP_OVERRIDES).bootstrap
    topic, group = "orders", f"billing-{client}-{assignor}"
    create_topic(bootstrap, topic, PARTITIONS)
    admin = ADMINS[client](bootstrap)
    started: list[MemberProcess] = []

    def start_member() -> MemberProcess:
        member = MemberProcess(client, bootstrap, group, topic, name=f"{client}-{len(started)}",
                               session_timeout_ms=SESSION_TIMEOUT_MS, heartbeat_interval_ms=500,
                               assignor=assignor)
        started.append(member)
        return member

    try:
        # 1. Three members: two partitions each, every record read once, commits at the ends.
        members = [start_member() for _ in range(3)]
        wait_for_split(members, [2, 2, 2], WAIT_S, "two partitions for each of three members")
        acked = produce(bootstrap, topic, records("v", 60))
        wait_until(lambda: sum(len(m.values()) for m in members) >= 60, WAIT_S,
                   "all 60 records")
        assert sorted(v for m in members for v in m.values()) == sorted(
            f"v-{i}" for i in range(60)), "every record read exactly once"
        for m in members:
            assert {p for (p, _, _) in m.records()} <= m.assignment(), \
                f"{m.name} read a partition it was not assigned"
            m.commit()
        ends = {p: sum(1 for s in acked if s.partition == p) for p in range(PARTITIONS)}
        assert admin.committed(group, topic) == ends
        wait_until(lambda: admin.describe(group) == GroupView("Stable", 3, assignor), WAIT_S,
                   "DescribeGroups to show a Stable group of 3")
        assert group in admin.listed()

        # 2. A fourth member joins: the six partitions are spread over four.
        members.append(start_member())
        wait_for_split(members, [1, 1, 2, 2], WAIT_S, "a rebalance over four members")

        # 3. A clean close leaves the group at once (no session timeout wait).
        members.pop().close()
        wait_for_split(members, [2, 2, 2], SESSION_TIMEOUT_S,
                       "the closed member's partitions to move")

        # 4. A SIGKILLed member sends nothing: it is evicted when its session times out.
        members.pop(0).kill()
        wait_for_split(members, [3, 3], SESSION_TIMEOUT_S + 30,
                       "the killed member's partitions to move after its session timeout")
        wait_until(lambda: admin.describe(group) == GroupView("Stable", 2, assignor), WAIT_S,
                   "DescribeGroups to show a Stable group of 2")
    finally:
        for m in started:
            m.stop()
