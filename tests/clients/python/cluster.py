"""Several `runnel server` processes on loopback forming one cluster, each started by hand
with Kafka's KRaft config names (`process.roles`, `node.id`, `controller.quorum.voters`,
`listeners` with a CONTROLLER listener, `controller.listener.names`), as `--override`s.

Every node is a separate process with its own client and controller port and data dir; a
node can be killed and started again on the same ports and data dir.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from fault_proxy import FaultProxy
from helpers import Broker, free_ports, runnel_bin, wait_until


@dataclass
class Node(Broker):
    """One combined node (broker,controller) of a cluster."""

    node_id: int = 0
    controller_port: int = 0
    voters: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    # Kafka's process.roles: "broker,controller", "broker" (a learner of the quorum, no
    # controller listener) or "controller" (a voter without a client listener).
    roles: str = "broker,controller"

    def command(self) -> list[str]:
        listeners = {
            "broker,controller": f"PLAINTEXT://{self.host}:{self.port},"
                                 f"CONTROLLER://{self.host}:{self.controller_port}",
            "broker": f"PLAINTEXT://{self.host}:{self.port}",
            "controller": f"CONTROLLER://{self.host}:{self.controller_port}",
        }[self.roles]
        overrides = {
            "process.roles": self.roles,
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters,
            "listeners": listeners,
            "controller.listener.names": "CONTROLLER",
            "log.dirs": str(self.data_dir),
            **self.extra,
        }
        cmd = [str(self.binary), "server"]
        for key, value in overrides.items():
            cmd += ["--override", f"{key}={value}"]
        return cmd

    def wait_serving(self) -> None:
        """Returns once the node accepts connections and has finished its start: registered
        with the active controller (a node accepts TCP before its registration commits, and a
        topic created meanwhile would be placed without it)."""
        started = "runnel listening on"
        if self.roles == "controller":
            # No client listener: started once its log says so.
            started = "runnel controller-only node started"
        else:
            super().wait_serving()

        def finished() -> bool:
            if not self.running():
                raise AssertionError(f"node {self.node_id} exited; log:\n{self.log_tail()}")
            return started in self.log().rsplit("=== test harness: starting", 1)[-1]
        wait_until(finished, 60, f"node {self.node_id} to register and finish its start")

    def is_active_controller(self) -> bool:
        """Whether this node's log says, last, that it leads the metadata quorum."""
        changes = re.findall(r"this node is the active controller|the metadata quorum's leader is "
                             r"node|the metadata quorum has no leader", self.log())
        return bool(changes) and changes[-1] == "this node is the active controller"


class Cluster:
    """`size` nodes, node ids 1..size, all of them voters.

    With `proxied`, every node reaches every other node's controller listener through its
    own FaultProxy (node i's `controller.quorum.voters` names, for node j, the proxy from i
    to j), so that a test can cut a node off from the others and heal it ([`cut`],
    [`heal`]); clients still reach every node directly.

    With `network` (a `netns.Network` of `size` namespaces), node i runs in namespace i and
    listens on that namespace's address, ports 9092 and 9093 (each namespace has its own), so
    that the network itself can be cut between nodes, for the data path as for the quorum.
    """

    def __init__(self, tmp_path: Path, size: int, extra: dict[str, str] | None = None,
                 proxied: bool = False, network=None):
        # The proxies listen first, so the nodes' ports (chosen after, all distinct) cannot be
        # one of theirs: a node whose controller port a proxy held could not start, and the
        # node whose proxy it was would reach itself through its path to that node.
        self.proxies: dict[tuple[int, int], FaultProxy] = {}
        if proxied:
            for i in range(1, size + 1):
                for j in range(1, size + 1):
                    if i != j:
                        self.proxies[(i, j)] = FaultProxy(None)
        if network is None:
            chosen = free_ports(2 * size)
            ports = [(chosen[2 * k], chosen[2 * k + 1]) for k in range(size)]
            hosts = ["127.0.0.1"] * size
        else:
            ports = [(9092, 9093)] * size
            hosts = [network.host(i) for i in range(1, size + 1)]
        for (_, j), proxy in self.proxies.items():
            proxy.upstream = (hosts[j - 1], ports[j - 1][1])

        def voters_seen_by(i: int) -> str:
            return ",".join(
                f"{j}@{'127.0.0.1' if (i, j) in self.proxies else hosts[j - 1]}:"
                f"{self.proxies[(i, j)].port if (i, j) in self.proxies else controller}"
                for j, (_, controller) in enumerate(ports, start=1))

        self.nodes = [
            Node(runnel_bin(), tmp_path / f"node-{i + 1}", client, tmp_path / f"node-{i + 1}.log",
                 node_id=i + 1, controller_port=controller, voters=voters_seen_by(i + 1),
                 extra=dict(extra or {}), host=hosts[i],
                 prefix=[] if network is None else network.prefix(i + 1))
            for i, (client, controller) in enumerate(ports)
        ]

    def cut(self, node_id: int) -> None:
        """Breaks every link between `node_id` and the other nodes (both directions)."""
        for (i, j), proxy in self.proxies.items():
            if node_id in (i, j):
                proxy.cut()

    def heal(self, node_id: int) -> None:
        for (i, j), proxy in self.proxies.items():
            if node_id in (i, j):
                proxy.heal()

    def start(self) -> None:
        """Starts every node, then waits for each to serve (a node serves clients only once a
        majority of the voters has elected a leader) and to list every node as a broker (a
        node places a new topic over the brokers its own image lists)."""
        for node in self.nodes:
            node.data_dir.mkdir(exist_ok=True)
            node.spawn()
        for node in self.nodes:
            node.wait_serving()
        ids = {node.node_id for node in self.nodes}
        for node in self.nodes:
            wait_until(lambda: set(own_metadata(node)[0]) == ids, 30,
                       f"node {node.node_id} to list every broker")

    def node(self, node_id: int) -> Node:
        return self.nodes[node_id - 1]

    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes if node.running())

    def active_controller(self, timeout: float = 30.0) -> Node:
        """The running node that leads the metadata quorum, once exactly one says it does."""
        found: list[Node] = []

        def one_leads() -> bool:
            found[:] = [n for n in self.nodes if n.running() and n.is_active_controller()]
            return len(found) == 1

        wait_until(one_leads, timeout, "one running node to lead the metadata quorum")
        return found[0]

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()
        for proxy in self.proxies.values():
            proxy.close()


def own_metadata(node: Broker) -> tuple[list[int], set[str]]:
    """The broker ids and topic names one node's own image lists: a Metadata v0 for every
    topic on one connection to it (a client bootstrapped from it may ask another broker)."""
    import socket
    import struct

    def string(text: str) -> bytes:
        return struct.pack(">h", len(text)) + text.encode()

    frame = struct.pack(">hhi", 3, 0, 11) + string("cluster-test") + struct.pack(">i", 0)
    with socket.create_connection((node.host, node.port), timeout=30) as conn:
        conn.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", conn.recv(4, socket.MSG_WAITALL))[0]
        answer = conn.recv(size, socket.MSG_WAITALL)
    at = 4  # correlation id

    def take(fmt: str):
        nonlocal at
        values = struct.unpack_from(fmt, answer, at)
        at += struct.calcsize(fmt)
        return values

    def take_string() -> str:
        nonlocal at
        (length,) = take(">h")
        text = answer[at:at + length].decode()
        at += length
        return text

    brokers = []
    for _ in range(take(">i")[0]):  # brokers: node id, host, port
        brokers.append(take(">i")[0])
        take_string()
        take(">i")
    names = set()
    for _ in range(take(">i")[0]):  # topics: error, name, partitions
        take(">h")
        names.add(take_string())
        for _ in range(take(">i")[0]):  # error, index, leader, replicas, isr
            take(">hii")
            take(">%di" % take(">i")[0])
            take(">%di" % take(">i")[0])
    return brokers, names


def find_coordinator_v1_on(port: int, key: str, key_type: int) -> int:
    """A FindCoordinator v1 on one connection to the broker on `port` (group: key type 0,
    transaction: 1), encoded here so that no client picks the broker; the coordinator's node
    id it answers. The first one of a key type creates its internal topic."""
    import socket
    import struct

    def string(text: str) -> bytes:
        return struct.pack(">h", len(text)) + text.encode()

    frame = struct.pack(">hhi", 10, 1, 9) + string("cluster-test") + string(key) + \
        struct.pack(">b", key_type)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", conn.recv(4, socket.MSG_WAITALL))[0]
        answer = conn.recv(size, socket.MSG_WAITALL)
    # correlation id, throttle time, error code, error message (nullable), node id
    error = struct.unpack(">h", answer[8:10])[0]
    assert error == 0, f"FindCoordinator answered error {error}"
    message_length = max(struct.unpack(">h", answer[10:12])[0], 0)
    return struct.unpack(">i", answer[12 + message_length:16 + message_length])[0]
