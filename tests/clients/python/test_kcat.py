"""kcat (Debian's, on librdkafka 2.0.2: an older client than the confluent-kafka wheel)."""

from __future__ import annotations

import json
import subprocess

import pytest

from helpers import (CODECS, Record, Stored, assert_offsets_contiguous,
                     assert_same_key_same_partition, now_ms)

TIMEOUT_S = 60
HEADERS = [("trace", "abc-123"), ("idx", "7"), ("trace", "again")]
# One line per message: partition, offset, timestamp, key length (-1 = null), key, value, headers.
FORMAT = r"%p\t%o\t%T\t%K\t%k\t%s\t%h\n"


def kcat(*args: str, stdin: str | None = None) -> str:
    result = subprocess.run(["kcat", *args], input=stdin, capture_output=True, text=True,
                            timeout=TIMEOUT_S)
    assert result.returncode == 0, (
        f"kcat {' '.join(args)} exited {result.returncode}; stderr:\n{result.stderr}")
    return result.stdout


def parse_headers(text: str) -> tuple[tuple[str, bytes], ...]:
    pairs = [item.split("=", 1) for item in text.split(",")] if text else []
    return tuple((name, value.encode()) for name, value in pairs)


def consume(bootstrap: str, topic: str) -> list[Stored]:
    """Every record of every partition, from the beginning to the end (-e)."""
    out = kcat("-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-f", FORMAT)
    stored = []
    for row in out.splitlines():
        partition, offset, ts, key_len, key, value, headers = row.split("\t")
        record = Record(None if key_len == "-1" else key.encode(), value.encode(),
                        parse_headers(headers), int(ts))
        stored.append(Stored(int(partition), int(offset), record))
    return sorted(stored, key=lambda s: (s.partition, s.offset))


def produce(bootstrap: str, topic: str, lines: list[str], codec: str) -> None:
    header_args = [arg for name, value in HEADERS for arg in ("-H", f"{name}={value}")]
    kcat("-P", "-b", bootstrap, "-t", topic, "-K:", *header_args,
         "-X", f"compression.codec={codec}", "-X", "acks=all", stdin="\n".join(lines) + "\n")


@pytest.mark.parametrize("codec", CODECS)
def test_produce_and_consume_keyed_unkeyed_with_headers(broker_factory, codec):
    broker = broker_factory({"num.partitions": "3"})  # kcat's produce auto-creates the topic
    topic = f"kcat-round-trip-{codec}"
    keyed = [f"key-{i % 4}:{codec} keyed value {i}" for i in range(16)]
    unkeyed = [f"{codec} unkeyed value {i}" for i in range(6)]  # no ':' so no key
    before = now_ms()

    produce(broker.bootstrap, topic, keyed + unkeyed, codec)
    after = now_ms()
    consumed = consume(broker.bootstrap, topic)

    def key_value(line: str) -> tuple[bytes | None, bytes]:
        key, sep, value = line.partition(":")
        return (key.encode(), value.encode()) if sep else (None, line.encode())

    sent = [key_value(line) for line in keyed + unkeyed]
    assert sorted((s.record.key or b"", s.record.value) for s in consumed) == sorted(
        (k or b"", v) for k, v in sent)
    assert sum(s.record.key is None for s in consumed) == len(unkeyed)
    assert {s.record.headers for s in consumed} == {
        tuple((k, v.encode()) for k, v in HEADERS)}
    stamps = [s.record.timestamp_ms for s in consumed]
    assert all(before - 1000 <= ts <= after for ts in stamps), (
        f"CreateTimes outside [{before}, {after}]: {stamps}")
    for partition in {s.partition for s in consumed}:  # produce order kept within a partition
        in_partition = [s.record.value for s in consumed if s.partition == partition]
        assert in_partition == [v for _, v in sent if v in in_partition]
    assert_offsets_contiguous(consumed)
    assert_same_key_same_partition(consumed)


def test_metadata_listing_shows_topic_partitions_and_broker(broker_factory):
    broker = broker_factory({"num.partitions": "3"})
    topic = "kcat-metadata"
    produce(broker.bootstrap, topic, ["k:v"], "none")

    text = kcat("-L", "-b", broker.bootstrap, "-t", topic)
    assert f'topic "{topic}" with 3 partitions' in text, text

    meta = json.loads(kcat("-L", "-J", "-b", broker.bootstrap))
    assert [b["name"] for b in meta["brokers"]] == [broker.bootstrap], meta["brokers"]
    (broker_id,) = [b["id"] for b in meta["brokers"]]
    (tmeta,) = [t for t in meta["topics"] if t["topic"] == topic]
    assert [p["partition"] for p in sorted(tmeta["partitions"], key=lambda p: p["partition"])] \
        == [0, 1, 2]
    for p in tmeta["partitions"]:
        assert p["leader"] == broker_id
        assert [r["id"] for r in p["replicas"]] == [broker_id]
        assert [r["id"] for r in p["isrs"]] == [broker_id]
