#!/usr/bin/env python3
"""The history checker's run over real processes (issue 16, item 9): three `runnel server`
nodes, a topic with three replicas and min.insync.replicas=2, idempotent confluent-kafka
producers (acks=all) and consumers of two clients (confluent-kafka, kafka-python) logging every
send, acknowledgement and read, while a nemesis kills -9 and restarts nodes, pauses them
(SIGSTOP, SIGCONT) and cuts them off from the other nodes (network namespaces, `netns.py`;
on a machine without them the run says so and makes no partitions). One fault at a time,
each healed before the next once every partition's ISR is whole again. After the faults a
fresh consumer reads every partition up to its high watermark, and `history.py` checks the
whole history.

  # the long run (the closing notes report it):
  RUNNEL_BIN=target/release/runnel target/venv/bin/python \\
      tests/clients/python/history_run.py --seconds 1800 --seed 7 --dir /var/tmp/runnel-history

`test_history.py` makes the short run CI does. The history is written as JSON lines to
`<dir>/history.jsonl`, the nodes' logs next to it.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer
from kafka import TopicPartition as KafkaTopicPartition

import history
from cluster import Cluster
from helpers import wait_until
from netns import Network

TOPIC = "history"
PARTITIONS = 3
NODES = 3
# Each fault lasts a few seconds; a healed cluster has every ISR whole within this.
RECOVERY_DEADLINE_S = 120.0
CLIENT_TIMEOUT_S = 30.0
NODE_CONFIG = {
    # A cut-off or paused follower leaves the ISR within seconds (Kafka's default 30 s would
    # hold every acks=all produce that long).
    "replica.lag.time.max.ms": "4000",
    "broker.session.timeout.ms": "6000",
    "broker.heartbeat.interval.ms": "500",
    # Kafka's default; named because the run depends on it.
    "unclean.leader.election.enable": "false",
}


class History:
    """The events, in the order they happened, from every thread."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.lock = threading.Lock()
        self.started = time.monotonic()

    def record(self, kind: str, **fields) -> None:
        event = {"type": kind, "t": round(time.monotonic() - self.started, 4), **fields}
        with self.lock:
            self.events.append(event)


@dataclass
class Run:
    cluster: Cluster
    network: Network | None
    history: History
    rng: random.Random
    stop: threading.Event = field(default_factory=threading.Event)
    faults: dict[str, int] = field(default_factory=dict)

    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.cluster.nodes)


def producer_loop(run: Run, name: str, rate: float) -> None:
    """Sends `name-<n>` values round robin over the partitions at about `rate` a second."""
    config = {"bootstrap.servers": run.bootstrap(), "enable.idempotence": True, "acks": "all",
              "linger.ms": 5, "message.timeout.ms": 60000, "request.timeout.ms": 10000,
              "client.id": name}
    instance = 0
    sequence = 0
    while not run.stop.is_set():
        fatal = threading.Event()

        def on_error(error: KafkaError, producer_name: str = f"{name}.{instance}") -> None:
            run.history.record("client_error", client=producer_name, error=str(error))
            if error.fatal():
                fatal.set()

        producer = Producer({**config, "error_cb": on_error})

        def on_delivery(error, message):
            value = message.value().decode()
            if error is None:
                run.history.record("ack", producer=name, value=value,
                                   partition=message.partition(), offset=message.offset())
            else:
                run.history.record("fail", producer=name, value=value, error=str(error))

        while not run.stop.is_set() and not fatal.is_set():
            value = f"{name}-{sequence}"
            partition = sequence % PARTITIONS
            sequence += 1
            run.history.record("send", producer=name, value=value, partition=partition)
            try:
                producer.produce(TOPIC, value=value.encode(), partition=partition,
                                 on_delivery=on_delivery)
            except BufferError:
                run.history.record("fail", producer=name, value=value, error="queue full")
            except KafkaException as error:
                # A fatal error can surface here before error_cb has run: this send failed,
                # and the producer is replaced below.
                run.history.record("fail", producer=name, value=value, error=str(error))
                if error.args and error.args[0].fatal():
                    fatal.set()
            producer.poll(0)
            time.sleep(1 / rate)  # the workload's pace, not a wait for a condition
        producer.flush(CLIENT_TIMEOUT_S * 2)
        if fatal.is_set():
            # An idempotent producer that met a fatal error is replaced (as an application
            # would); its unacknowledged records stay indeterminate.
            instance += 1


def confluent_consumer_loop(run: Run, name: str) -> None:
    consumer = Consumer({"bootstrap.servers": run.bootstrap(), "group.id": name,
                         "enable.auto.commit": False, "auto.offset.reset": "error",
                         "client.id": name})
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
    try:
        while not run.stop.is_set():
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                code = message.error().code()
                kind = "reset" if code == KafkaError._AUTO_OFFSET_RESET else "client_error"
                run.history.record(kind, client=name, error=str(message.error()))
                continue
            run.history.record("read", consumer=name, partition=message.partition(),
                               offset=message.offset(), value=message.value().decode())
    finally:
        consumer.close()


def kafka_python_consumer_loop(run: Run, name: str) -> None:
    consumer = KafkaConsumer(bootstrap_servers=run.bootstrap().split(","), client_id=name,
                             enable_auto_commit=False, auto_offset_reset="none",
                             request_timeout_ms=15000)
    partitions = [KafkaTopicPartition(TOPIC, p) for p in range(PARTITIONS)]
    consumer.assign(partitions)
    for tp in partitions:
        consumer.seek(tp, 0)
    try:
        while not run.stop.is_set():
            try:
                batches = consumer.poll(timeout_ms=500)
            except Exception as error:  # noqa: BLE001: every client error is recorded
                kind = "reset" if "OffsetOutOfRange" in type(error).__name__ or \
                    "NoOffsetForPartition" in type(error).__name__ else "client_error"
                run.history.record(kind, client=name, error=repr(error))
                continue
            for records in batches.values():
                for r in records:
                    run.history.record("read", consumer=name, partition=r.partition,
                                       offset=r.offset, value=r.value.decode())
    finally:
        consumer.close()


def partitions_whole(run: Run) -> bool:
    """Whether every partition of the topic has a leader and all three replicas in its ISR,
    as a node's Metadata shows them."""
    try:
        metadata = AdminClient({"bootstrap.servers": run.bootstrap()}).list_topics(
            TOPIC, timeout=5)
    except Exception:  # noqa: BLE001: a node may be down; the next poll asks again
        return False
    partitions = metadata.topics.get(TOPIC)
    if partitions is None or partitions.error is not None:
        return False
    return len(partitions.partitions) == PARTITIONS and all(
        p.leader > 0 and len(p.isrs) == NODES for p in partitions.partitions.values())


def nemesis(run: Run, seconds: float) -> None:
    """One fault after another for `seconds`, each healed and recovered from before the
    next."""
    kinds = ["kill", "pause"] + (["partition"] if run.network is not None else [])
    deadline = time.monotonic() + seconds
    turn = 0
    while time.monotonic() < deadline:
        kind = kinds[turn % len(kinds)]
        turn += 1
        node = run.rng.choice(run.cluster.nodes)
        hold = run.rng.uniform(2.0, 6.0)
        run.history.record("fault", fault=kind, node=node.node_id, hold_s=round(hold, 2))
        if kind == "kill":
            node.kill()
            time.sleep(hold)  # how long the fault lasts: the nemesis's schedule
            node.start()
        elif kind == "pause":
            node.proc.send_signal(signal.SIGSTOP)
            time.sleep(hold)
            node.proc.send_signal(signal.SIGCONT)
        else:
            run.network.isolate(node.node_id)
            time.sleep(hold)
            run.network.heal()
        run.history.record("heal", fault=kind, node=node.node_id)
        run.faults[kind] = run.faults.get(kind, 0) + 1
        wait_until(lambda: partitions_whole(run), RECOVERY_DEADLINE_S,
                   f"every ISR to be whole again after the {kind} of node {node.node_id}")
        run.history.record("recovered", fault=kind, node=node.node_id)


def final_read(run: Run) -> None:
    """Reads every partition from 0 to its high watermark with a fresh consumer."""
    consumer = Consumer({"bootstrap.servers": run.bootstrap(), "group.id": "final",
                         "enable.auto.commit": False, "auto.offset.reset": "error"})
    try:
        for partition in range(PARTITIONS):
            _, high = consumer.get_watermark_offsets(TopicPartition(TOPIC, partition),
                                                     timeout=CLIENT_TIMEOUT_S, cached=False)
            run.history.record("hw", partition=partition, offset=high)
            if high == 0:
                continue
            consumer.assign([TopicPartition(TOPIC, partition, 0)])
            last = -1
            deadline = time.monotonic() + CLIENT_TIMEOUT_S * 4
            while last < high - 1:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the final read of partition {partition} stopped at "
                                         f"{last}, below its high watermark {high}")
                message = consumer.poll(0.5)
                if message is None:
                    continue
                if message.error():
                    run.history.record("client_error", client="final",
                                       error=str(message.error()))
                    continue
                last = message.offset()
                run.history.record("final", partition=partition, offset=message.offset(),
                                   value=message.value().decode())
    finally:
        consumer.close()


def execute(work: Path, seconds: float, seed: int) -> tuple[history.Verdict, dict]:
    """Runs the whole thing in `work`; returns the verdict and a summary of the run."""
    work.mkdir(parents=True, exist_ok=True)
    network, no_network = Network.create(NODES)
    cluster = Cluster(work, NODES, extra=NODE_CONFIG, network=network)
    run = Run(cluster, network, History(), random.Random(seed))
    threads: list[threading.Thread] = []
    try:
        cluster.start()
        admin = AdminClient({"bootstrap.servers": run.bootstrap()})
        admin.create_topics([NewTopic(TOPIC, PARTITIONS, replication_factor=NODES,
                                      config={"min.insync.replicas": "2"})],
                            operation_timeout=CLIENT_TIMEOUT_S)[TOPIC].result(CLIENT_TIMEOUT_S)
        wait_until(lambda: partitions_whole(run), RECOVERY_DEADLINE_S, "the topic's ISRs")
        workers = [(producer_loop, "producer-a", 150.0), (producer_loop, "producer-b", 150.0),
                   (confluent_consumer_loop, "ck-consumer"),
                   (kafka_python_consumer_loop, "kp-consumer")]
        for target, *args in workers:
            threads.append(threading.Thread(target=target, args=(run, *args), daemon=True,
                                            name=args[0]))
        for thread in threads:
            thread.start()
        nemesis(run, seconds)
        # Let the consumers catch up with what the producers acknowledged before stopping.
        time.sleep(2)  # the workload's tail, not a wait for a condition
        run.stop.set()
        for thread in threads:
            thread.join(CLIENT_TIMEOUT_S * 3)
        final_read(run)
    finally:
        run.stop.set()
        cluster.kill()
        if network is not None:
            network.remove()
        with open(work / "history.jsonl", "w") as out:
            for event in run.history.events:
                out.write(json.dumps(event) + "\n")
    verdict = history.check(run.history.events)
    summary = {"seconds": seconds, "seed": seed, "faults": run.faults,
               "partitions": "network namespaces" if network is not None else no_network,
               "counts": verdict.counts, "anomalies": verdict.anomalies}
    return verdict, summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="how long faults go on")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp/runnel-history"))
    options = parser.parse_args()
    verdict, summary = execute(options.dir, options.seconds, options.seed)
    print(json.dumps(summary, indent=2))
    return 0 if verdict.clean else 1


if __name__ == "__main__":
    sys.exit(main())
