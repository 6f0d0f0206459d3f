"""aiokafka group consumers against Runnel: two members on one event loop split a topic, read
every record once, commit, and the survivor takes over when one stops.

Members in separate processes (three and four of them, rebalances, a SIGKILLed member) are
tested in test_groups_each_client.py."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition

from ck import create_topic, produce
from helpers import Record, now_ms

GROUP_OVERRIDES = {
    "group.initial.rebalance.delay.ms": "0",
    "offsets.topic.num.partitions": "5",
}
TIMEOUT_S = 60.0


def records(tag: str, count: int) -> list[Record]:
    base = now_ms()
    return [Record(f"k{i}".encode(), f"{tag}-{i}".encode(), (), base + i) for i in range(count)]


async def wait_for(predicate, what: str) -> None:
    async def loop():
        while not await predicate():
            pass
    try:
        await asyncio.wait_for(loop(), TIMEOUT_S)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def scenario(bootstrap: str) -> None:
    topic, group = "aio-groups", "aio-readers"
    consumers = [AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                  auto_offset_reset="earliest", enable_auto_commit=False,
                                  session_timeout_ms=6000, heartbeat_interval_ms=500)
                 for _ in range(2)]
    seen: list[bytes] = []

    async def poll_all() -> None:
        for consumer in consumers:
            batches = await consumer.getmany(timeout_ms=100)
            seen.extend(m.value for messages in batches.values() for m in messages)

    for consumer in consumers:
        await consumer.start()
    try:
        async def split():
            await poll_all()
            return sorted(len(c.assignment()) for c in consumers) == [2, 2]
        await wait_for(split, "two partitions per member")
        acked = await asyncio.to_thread(produce, bootstrap, topic, records("aio", 40))

        async def all_read():
            await poll_all()
            return len(seen) >= 40
        await wait_for(all_read, "all 40 records")
        assert sorted(seen) == sorted(f"aio-{i}".encode() for i in range(40))
        for consumer in consumers:
            await consumer.commit()
        for p in range(4):
            end = sum(1 for s in acked if s.partition == p)
            assert await consumers[0].committed(TopicPartition(topic, p)) == end

        await consumers.pop().stop()

        async def handed_over():
            await poll_all()
            return len(consumers[0].assignment()) == 4
        await wait_for(handed_over, "the stopped member's partitions to move")
    finally:
        for consumer in consumers:
            await consumer.stop()


def test_two_members_split_commit_and_hand_over(broker_factory):
    broker = broker_factory(GROUP_OVERRIDES)
    create_topic(broker.bootstrap, "aio-groups", 4)
    asyncio.run(scenario(broker.bootstrap))
