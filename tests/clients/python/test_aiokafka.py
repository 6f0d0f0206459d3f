"""aiokafka (asyncio) against Runnel. Consumers read by assignment (group_id=None)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from helpers import CODECS, Record, Stored, assert_round_trip, make_records

TIMEOUT_S = 30.0
TIMEOUT_MS = int(TIMEOUT_S * 1000)


async def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=TIMEOUT_MS)
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=1)],
            timeout_ms=TIMEOUT_MS)
        errors = [(t[0], t[1]) for t in response.topic_errors if t[1] != 0]
        assert not errors, f"CreateTopics errors (topic, code): {errors}"
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, records: list[Record], **config) -> list[Stored]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                request_timeout_ms=TIMEOUT_MS, **config)
    await producer.start()
    try:
        futures = [await producer.send(topic, key=r.key, value=r.value, headers=list(r.headers),
                                       timestamp_ms=r.timestamp_ms)
                   for r in records]
        metas = await asyncio.wait_for(asyncio.gather(*futures), TIMEOUT_S)
        return [Stored(m.partition, m.offset, r) for r, m in zip(records, metas)]
    finally:
        await producer.stop()


def stored_of(m) -> Stored:
    assert m.timestamp_type == 0, f"timestamp type {m.timestamp_type} at offset {m.offset}, want CreateTime"
    return Stored(m.partition, m.offset, Record(m.key, m.value, tuple(m.headers), m.timestamp))


async def consume_all(bootstrap: str, topic: str, partitions: int) -> list[Stored]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, request_timeout_ms=TIMEOUT_MS)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)

        async def at_end() -> bool:
            return all([await consumer.position(tp) >= end[tp] for tp in tps])

        async def read() -> list[Stored]:
            out: list[Stored] = []
            while not await at_end():
                batches = await consumer.getmany(timeout_ms=200)
                out.extend(stored_of(m) for messages in batches.values() for m in messages)
            return out

        out = await asyncio.wait_for(read(), TIMEOUT_S)
        return sorted(out, key=lambda s: (s.partition, s.offset))
    finally:
        await consumer.stop()


async def round_trip(bootstrap: str, topic: str, partitions: int, **producer_config) -> None:
    await create_topic(bootstrap, topic, partitions)
    acked = await produce(bootstrap, topic, make_records(topic), **producer_config)
    assert_round_trip(acked, await consume_all(bootstrap, topic, partitions))


@pytest.mark.parametrize("codec", CODECS)
def test_round_trip(broker, codec):
    compression = None if codec == "none" else codec
    asyncio.run(round_trip(broker.bootstrap, f"aio-round-trip-{codec}", 3,
                           compression_type=compression))


def test_idempotent_round_trip(broker):
    asyncio.run(round_trip(broker.bootstrap, "aio-idempotent", 3, enable_idempotence=True,
                           compression_type="gzip"))
