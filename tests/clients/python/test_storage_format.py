"""`runnel storage format`, Kafka's `kafka-storage format`, seen through real clients: the
cluster id a node's log directories were formatted with is the one Metadata and
DescribeCluster report, in confluent-kafka and kafka-python alike.

What it pins of Kafka's `Formatter` (metadata/.../storage/Formatter.java): every log
directory gets a meta.properties with the cluster id, node id and a directory id; formatting
again is refused ("is already formatted. Use --ignore-formatted ...") unless
--ignore-formatted, when it prints "All of the log directories are already formatted." and
exits 0; and a broker whose log directories name different clusters does not start.
"""

from __future__ import annotations

import subprocess

from kafka import KafkaAdminClient

import ck
from helpers import Broker, BrokerError, free_port, runnel_bin


def storage(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(runnel_bin()), "storage", *args], capture_output=True,
                          text=True, timeout=ck.TIMEOUT_S)


def properties(path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def test_a_formatted_node_reports_its_cluster_id_to_every_client(tmp_path):
    cluster_id = storage("random-uuid").stdout.strip()
    assert len(cluster_id) == 22 and not cluster_id.startswith("-"), cluster_id
    first, second = tmp_path / "logs-a", tmp_path / "logs-b"
    log_dirs = f"log.dirs={first},{second}"

    formatted = storage("format", "-t", cluster_id, "--override", log_dirs)
    assert formatted.returncode == 0, formatted.stderr
    for directory in (first, second):
        props = properties(directory / "meta.properties")
        assert (props["version"], props["node.id"], props["cluster.id"]) == ("1", "1", cluster_id)
        assert len(props["directory.id"]) == 22
    again = storage("format", "--cluster-id", cluster_id, "--override", log_dirs)
    assert again.returncode != 0
    assert "is already formatted. Use --ignore-formatted" in again.stderr
    ignored = storage("format", "-t", cluster_id, "--ignore-formatted", "--override", log_dirs)
    assert ignored.returncode == 0, ignored.stderr
    assert "All of the log directories are already formatted." in ignored.stdout

    broker = Broker(runnel_bin(), first, free_port(), tmp_path / "broker.log",
                    {"log.dirs": f"{first},{second}"})
    broker.start()
    try:
        metadata = ck.admin(broker.bootstrap).list_topics(timeout=ck.TIMEOUT_S)
        assert metadata.cluster_id == cluster_id
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            assert admin.describe_cluster()["cluster_id"] == cluster_id
        finally:
            admin.close()
    finally:
        broker.kill()


def test_a_node_whose_log_directories_name_two_clusters_does_not_start(tmp_path):
    first, second = tmp_path / "logs-a", tmp_path / "logs-b"
    for directory in (first, second):
        cluster_id = storage("random-uuid").stdout.strip()
        formatted = storage("format", "-t", cluster_id, "--data-dir", str(directory))
        assert formatted.returncode == 0, formatted.stderr
    refused = storage("format", "-t", storage("random-uuid").stdout.strip(), "-g",
                      "--override", f"log.dirs={first},{second}")
    assert refused.returncode != 0 and "is not the cluster" in refused.stderr

    broker = Broker(runnel_bin(), first, free_port(), tmp_path / "broker.log",
                    {"log.dirs": f"{first},{second}"})
    try:
        broker.start()
        raise AssertionError("a broker over two clusters' directories started")
    except BrokerError as error:
        assert "does not match the cluster's" in str(error), str(error)
    finally:
        broker.kill()
