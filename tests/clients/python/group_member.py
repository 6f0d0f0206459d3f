"""One consumer-group member of a given Python client library, run as its own OS process.

A test that needs several members of one library (and wants to SIGKILL one of them) starts each
with `MemberProcess`, which runs this file as a script:

    python group_member.py <client> <bootstrap> <group> <topic> [--name N]
                           [--session-timeout-ms MS] [--heartbeat-interval-ms MS]
                           [--assignor NAME]

where <client> is "kafka-python" or "aiokafka" and NAME one of ASSIGNORS[client] (the
library's own partition assignors; "range" by default). The member subscribes to <topic> (no auto
commit, reading from the earliest offset) and talks to its parent in JSON lines:

  stdout  {"event": "assigned", "partitions": [0, 3]}     whenever its assignment changes
          {"event": "record", "partition": 3, "offset": 7, "value": "v-12"}   per record read
          {"event": "committed"}                          after a "commit" command
          {"event": "closed"}                             after a "close" command
  stdin   "commit"   commit the positions read so far, synchronously, then acknowledge
          "close"    close the consumer cleanly (it leaves the group) and exit 0

The member exits at once if its stdin closes, so a parent that dies leaves no member behind.
Client and library log lines go to stderr, prefixed with the member's name.

Each member drives its consumer from one thread only: kafka-python's KafkaConsumer is not
thread-safe and heartbeats/rejoins only from poll(), so the loop polls with a short timeout and
runs the parent's commands between polls (a reader thread queues them). aiokafka's consumer runs
the same loop on its event loop; its heartbeats are background tasks.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any, Iterable

CLIENTS = ("kafka-python", "aiokafka")
# Each library's assignors by protocol name: module and class, imported in the member only.
ASSIGNORS = {
    "kafka-python": {
        "range": ("kafka.coordinator.assignors.range", "RangePartitionAssignor"),
        "roundrobin": ("kafka.coordinator.assignors.roundrobin", "RoundRobinPartitionAssignor"),
        "sticky": ("kafka.coordinator.assignors.sticky.sticky_assignor",
                   "StickyPartitionAssignor"),
        "cooperative-sticky": ("kafka.coordinator.assignors.cooperative_sticky",
                               "CooperativeStickyAssignor"),
    },
    "aiokafka": {
        "range": ("aiokafka.coordinator.assignors.range", "RangePartitionAssignor"),
        "roundrobin": ("aiokafka.coordinator.assignors.roundrobin",
                       "RoundRobinPartitionAssignor"),
        "sticky": ("aiokafka.coordinator.assignors.sticky.sticky_assignor",
                   "StickyPartitionAssignor"),
    },
}
POLL_TIMEOUT_MS = 300
COMMAND_TIMEOUT_S = 30.0


# --- the member (child process side) -------------------------------------------------------

def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


class Reporter:
    """Prints assignment changes and records read."""

    def __init__(self) -> None:
        self.reported: list[int] | None = None

    def assignment(self, partitions: Iterable[int]) -> None:
        now = sorted(partitions)
        if now != self.reported:
            self.reported = now
            emit("assigned", partitions=now)

    def records(self, batches: dict) -> None:
        for messages in batches.values():
            for m in messages:
                emit("record", partition=m.partition, offset=m.offset, value=m.value.decode())


def read_commands() -> queue.Queue[str]:
    """Queue the lines of stdin from a daemon thread; exit the process when stdin closes."""
    commands: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in sys.stdin:
            if line.strip():
                commands.put(line.strip())
        logging.warning("stdin closed (the parent is gone): exiting without leaving the group")
        os._exit(3)

    threading.Thread(target=read, name="stdin", daemon=True).start()
    return commands


def next_command(commands: queue.Queue[str]) -> str | None:
    try:
        return commands.get_nowait()
    except queue.Empty:
        return None


def assignor(args: argparse.Namespace) -> type:
    module, name = ASSIGNORS[args.client][args.assignor]
    return getattr(importlib.import_module(module), name)


def run_kafka_python(args: argparse.Namespace, commands: queue.Queue[str]) -> None:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        args.topic, bootstrap_servers=args.bootstrap, group_id=args.group, client_id=args.name,
        auto_offset_reset="earliest", enable_auto_commit=False,
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=args.heartbeat_interval_ms,
        partition_assignment_strategy=[assignor(args)])
    # kafka-python's first join assigns from whatever metadata it holds: on loaded cores a join
    # that beat its metadata response assigned nothing ("No partition metadata for topic ...").
    # Asking for the topic's partitions first (kafka-python blocks on that metadata request) is
    # what an application checking its topic does, and keeps the tests about the group protocol.
    if not consumer.partitions_for_topic(args.topic):
        raise SystemExit(f"topic {args.topic!r} has no partitions in the metadata")
    reporter = Reporter()
    while True:
        batches = consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
        reporter.assignment(tp.partition for tp in consumer.assignment())
        reporter.records(batches)
        command = next_command(commands)
        if command == "commit":
            consumer.commit()  # synchronous in kafka-python
            emit("committed")
        elif command == "close":
            consumer.close(autocommit=False)
            emit("closed")
            return
        elif command is not None:
            raise ValueError(f"unknown command {command!r}")


async def run_aiokafka(args: argparse.Namespace, commands: queue.Queue[str]) -> None:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        args.topic, bootstrap_servers=args.bootstrap, group_id=args.group, client_id=args.name,
        auto_offset_reset="earliest", enable_auto_commit=False,
        session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=args.heartbeat_interval_ms,
        partition_assignment_strategy=[assignor(args)])
    await consumer.start()
    reporter = Reporter()
    while True:
        batches = await consumer.getmany(timeout_ms=POLL_TIMEOUT_MS)
        reporter.assignment(tp.partition for tp in consumer.assignment())
        reporter.records(batches)
        command = next_command(commands)
        if command == "commit":
            await consumer.commit()
            emit("committed")
        elif command == "close":
            await consumer.stop()
            emit("closed")
            return
        elif command is not None:
            raise ValueError(f"unknown command {command!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("client", choices=CLIENTS)
    parser.add_argument("bootstrap")
    parser.add_argument("group")
    parser.add_argument("topic")
    parser.add_argument("--name", default="member")
    parser.add_argument("--session-timeout-ms", type=int, default=6000)
    parser.add_argument("--heartbeat-interval-ms", type=int, default=500)
    parser.add_argument("--assignor", default="range")
    args = parser.parse_args()
    if args.assignor not in ASSIGNORS[args.client]:
        parser.error(f"{args.client} has no assignor {args.assignor!r}")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format=f"[{args.name} %(asctime)s %(levelname)s %(name)s] %(message)s")
    # The group protocol's own lines (joins, assignments, rebalances) at INFO, so that a test
    # failing on an assignment shows what each member saw.
    for name in ("kafka.coordinator", "aiokafka.consumer.group_coordinator"):
        logging.getLogger(name).setLevel(logging.INFO)
    commands = read_commands()
    if args.client == "kafka-python":
        run_kafka_python(args, commands)
    else:
        asyncio.run(run_aiokafka(args, commands))
    # Not a normal interpreter exit: the stdin thread still blocks in a read, and finalising
    # sys.stdin under it aborts the interpreter.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


# --- the parent side -----------------------------------------------------------------------

class MemberProcess:
    """A group member running this script in a child process, seen from the test.

    A reader thread follows the member's stdout, so `assignment()` and `values()` are always the
    latest the member reported. Every query fails at once if the member died unexpectedly.
    Call `stop()` in a `finally`: it kills the process if it is still running.
    """

    def __init__(self, client: str, bootstrap: str, group: str, topic: str, name: str,
                 session_timeout_ms: int = 6000, heartbeat_interval_ms: int = 500,
                 assignor: str = "range"):
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), client, bootstrap, group, topic,
             "--name", name, "--session-timeout-ms", str(session_timeout_ms),
             "--heartbeat-interval-ms", str(heartbeat_interval_ms), "--assignor", assignor],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self._lock = threading.Lock()
        self._assigned: set[int] = set()
        self._records: list[tuple[int, int, str]] = []
        self._acks: queue.Queue[str] = queue.Queue()
        self._expect_exit = False
        self._reader = threading.Thread(target=self._read, name=f"{name}-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            event = json.loads(line)
            with self._lock:
                if event["event"] == "assigned":
                    self._assigned = set(event["partitions"])
                elif event["event"] == "record":
                    self._records.append((event["partition"], event["offset"], event["value"]))
                else:
                    self._acks.put(event["event"])

    def _check_alive(self) -> None:
        code = self.proc.poll()
        if code is not None and not self._expect_exit:
            raise AssertionError(f"group member {self.name} exited with code {code}")

    def assignment(self) -> set[int]:
        """The partitions the member last reported as assigned to it."""
        self._check_alive()
        with self._lock:
            return set(self._assigned)

    def records(self) -> list[tuple[int, int, str]]:
        """(partition, offset, value) of every record the member read, in reading order."""
        self._check_alive()
        with self._lock:
            return list(self._records)

    def values(self) -> list[str]:
        return [value for (_, _, value) in self.records()]

    def summary(self) -> str:
        """What the member last reported, and whether it runs (for failure messages)."""
        code = self.proc.poll()
        with self._lock:
            return (f"{self.name}: partitions {sorted(self._assigned)}, "
                    f"{len(self._records)} records read, "
                    f"{'running' if code is None else f'exited with code {code}'}")

    def _command(self, command: str, ack: str) -> None:
        self._check_alive()
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        try:
            got = self._acks.get(timeout=COMMAND_TIMEOUT_S)
        except queue.Empty:
            self._check_alive()
            raise AssertionError(f"group member {self.name} did not acknowledge {command!r} "
                                 f"within {COMMAND_TIMEOUT_S:g}s") from None
        assert got == ack, f"group member {self.name} answered {got!r} to {command!r}"

    def commit(self) -> None:
        """Commit the member's positions synchronously."""
        self._command("commit", "committed")

    def close(self) -> None:
        """Close the consumer cleanly (it leaves the group) and wait for the process to exit."""
        self._expect_exit = True
        self._command("close", "closed")
        code = self.proc.wait(timeout=COMMAND_TIMEOUT_S)
        assert code == 0, f"group member {self.name} exited with code {code} after closing"

    def kill(self) -> None:
        """SIGKILL the member: it leaves the group only when its session times out."""
        self._expect_exit = True
        self.proc.kill()
        self.proc.wait(timeout=COMMAND_TIMEOUT_S)

    def stop(self) -> None:
        """Kill the process if it still runs; safe to call in any state."""
        self._expect_exit = True
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=COMMAND_TIMEOUT_S)
        self._reader.join(COMMAND_TIMEOUT_S)
        self.proc.stdin.close()
        self.proc.stdout.close()


if __name__ == "__main__":
    main()
