"""`GET /metrics` read by Prometheus' own Python client parser (`prometheus_client`), after real
clients (confluent-kafka) produced, consumed in a group and committed: the exposition parses,
every series `docs/metrics.md` lists is there with samples, and every series there is
documented. Histograms carry cumulative buckets ending in `+Inf` equal to their `_count`.
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer
from prometheus_client.parser import text_string_to_metric_families

import ck
from helpers import free_port, wait_until

DOCS = Path(__file__).resolve().parents[3] / "docs" / "metrics.md"


def documented_series() -> set[str]:
    """The backticked names in the first column of the docs' tables."""
    names = set()
    for line in DOCS.read_text().splitlines():
        match = re.match(r"^\| `([a-z_]+)` \|", line)
        if match:
            names.add(match.group(1))
    return names


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return response.read().decode()


def family_name(sample_name: str, families: dict) -> str | None:
    """The documented name a sample belongs to (counters keep `_total`, histograms their
    base name)."""
    for suffix in ("", "_bucket", "_sum", "_count"):
        base = sample_name[: len(sample_name) - len(suffix)] if suffix else sample_name
        if sample_name.endswith(suffix) and base in families:
            return base
    return None


def test_metrics_parse_and_match_the_docs(broker_factory):
    http_port = free_port()
    broker = broker_factory({"http.listen": f"127.0.0.1:{http_port}",
                             "group.initial.rebalance.delay.ms": "0",
                             "offsets.topic.num.partitions": "2"})
    ck.create_topic(broker.bootstrap, "scraped", 2)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(20):
        producer.produce("scraped", key=b"k%d" % i, value=b"v" * 50, partition=i % 2)
    assert producer.flush(ck.TIMEOUT_S) == 0

    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "scrapers",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe(["scraped"])
    read = []

    def consumed_all() -> bool:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            read.append(message)
        elif message is not None and message.error().code() != KafkaError._PARTITION_EOF:
            raise AssertionError(message.error())
        return len(read) >= 15

    wait_until(consumed_all, ck.TIMEOUT_S, "15 records consumed in the group")
    consumer.commit(asynchronous=False)

    text = scrape(http_port)
    families = {}
    for family in text_string_to_metric_families(text):
        # The parser names a counter's family without `_total`; the samples keep it.
        name = family.name + "_total" if family.type == "counter" else family.name
        assert name not in families, f"{name} declared twice"
        families[name] = family

    documented = documented_series()
    missing = sorted(documented - families.keys())
    assert not missing, f"documented but not served: {missing}"
    undocumented = sorted(families.keys() - documented)
    assert not undocumented, f"served but not in docs/metrics.md: {undocumented}"
    empty = sorted(name for name, family in families.items() if not family.samples)
    assert not empty, f"series without samples: {empty}"

    for name, family in families.items():
        for sample in family.samples:
            assert family_name(sample.name, families) == name, (sample.name, name)
        if family.type == "counter":
            assert name.endswith("_total"), name
        if family.type != "histogram":
            continue
        assert name.endswith("_seconds"), name
        by_labels: dict[tuple, list] = {}
        counts = {}
        for sample in family.samples:
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
            if sample.name.endswith("_bucket"):
                by_labels.setdefault(labels, []).append(
                    (float(sample.labels["le"]), sample.value))
            elif sample.name.endswith("_count"):
                counts[labels] = sample.value
        for labels, buckets in by_labels.items():
            values = [value for _, value in sorted(buckets)]
            assert values == sorted(values), f"{name}{labels}: buckets not cumulative"
            assert sorted(buckets)[-1][0] == float("inf"), f"{name}{labels}: no +Inf"
            assert values[-1] == counts[labels], f"{name}{labels}: +Inf != _count"

    def value(name: str, **labels) -> float:
        family = families[name]
        for sample in family.samples:
            if sample.labels == labels and sample.name in (name, name + "_total"):
                return sample.value
        raise AssertionError(f"no {name}{labels}")

    assert value("runnel_build_info", version=value_label(families, "runnel_build_info",
                                                          "version"),
                 commit=value_label(families, "runnel_build_info", "commit")) == 1
    assert value("runnel_partition_records_in_total", topic="scraped", partition="0") == 10
    records_out = sum(value("runnel_partition_records_out_total", topic="scraped",
                            partition=str(p)) for p in (0, 1))
    assert records_out >= 15
    assert value("runnel_request_errors_total", api="Produce", error="NONE") >= 1
    assert value("process_resident_memory_bytes") > 0
    assert value("process_open_fds") > 0
    assert value("runnel_group_members", group="scrapers") == 1
    consumer.close()


def value_label(families: dict, name: str, label: str) -> str:
    return families[name].samples[0].labels[label]
