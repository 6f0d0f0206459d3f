"""Network namespaces for partition faults: node i of a cluster runs in namespace i with an
address of its own on one bridge, which this process (in the root namespace, where the clients
run) reaches them all through. Cutting node i off from node j adds a blackhole route for j's
address in i's namespace and for i's in j's: every packet between the two is dropped, in
both directions, on the data path (followers' fetches) as on the quorum's, while clients
still reach both. Healing removes the routes; the connections the cut stalled time out or
carry on as TCP retransmits.

Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and `ip` (iproute2); [`Network.create`] returns
None with the reason when they are not there.
"""

from __future__ import annotations

import os
import subprocess


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


class Network:
    """`size` namespaces `rnl<k>n<i>` on bridge `rnl<k>br`, addresses 10.77.<k>.<i>/24; this
    process's side of the bridge is 10.77.<k>.254."""

    def __init__(self, size: int, subnet: int):
        self.size = size
        self.subnet = subnet
        self.cuts: set[tuple[int, int]] = set()

    @staticmethod
    def create(size: int) -> tuple[Network | None, str]:
        """A network of `size` namespaces, or None and why not."""
        if os.geteuid() != 0:
            return None, "not root: network namespaces need CAP_NET_ADMIN"
        subnet = 100 + os.getpid() % 100
        network = Network(size, subnet)
        try:
            network.remove()  # what a killed earlier run of this pid's subnet left
            network.build()
        except (OSError, subprocess.SubprocessError) as error:
            detail = getattr(error, "stderr", "") or str(error)
            network.remove()
            return None, f"could not make network namespaces: {detail.strip()}"
        return network, ""

    def namespace(self, i: int) -> str:
        return f"rnl{self.subnet}n{i}"

    def bridge(self) -> str:
        return f"rnl{self.subnet}br"

    def host(self, i: int) -> str:
        return f"10.77.{self.subnet}.{i}"

    def prefix(self, i: int) -> list[str]:
        """What runs a command in node i's namespace."""
        return ["ip", "netns", "exec", self.namespace(i)]

    def build(self) -> None:
        bridge = self.bridge()
        ip("link", "add", bridge, "type", "bridge")
        ip("addr", "add", f"10.77.{self.subnet}.254/24", "dev", bridge)
        ip("link", "set", bridge, "up")
        for i in range(1, self.size + 1):
            ns, outside = self.namespace(i), f"rnl{self.subnet}v{i}"
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
            ip("link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("link", "set", outside, "master", bridge)
            ip("link", "set", outside, "up")
            ip("-n", ns, "addr", "add", f"{self.host(i)}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")

    def cut(self, i: int, j: int) -> None:
        """Drops every packet between nodes i and j."""
        if (min(i, j), max(i, j)) in self.cuts:
            return
        ip("-n", self.namespace(i), "route", "add", "blackhole", f"{self.host(j)}/32")
        ip("-n", self.namespace(j), "route", "add", "blackhole", f"{self.host(i)}/32")
        self.cuts.add((min(i, j), max(i, j)))

    def isolate(self, i: int) -> None:
        """Cuts node i off from every other node."""
        for j in range(1, self.size + 1):
            if j != i:
                self.cut(i, j)

    def heal(self) -> None:
        """Removes every cut."""
        for i, j in sorted(self.cuts):
            ip("-n", self.namespace(i), "route", "del", "blackhole", f"{self.host(j)}/32")
            ip("-n", self.namespace(j), "route", "del", "blackhole", f"{self.host(i)}/32")
        self.cuts.clear()

    def remove(self) -> None:
        """Deletes the namespaces (their veth ends go with them) and the bridge; quietly, as
        some may not exist."""
        for i in range(1, self.size + 1):
            subprocess.run(["ip", "netns", "del", self.namespace(i)], capture_output=True,
                           timeout=30)
            subprocess.run(["ip", "link", "del", f"rnl{self.subnet}v{i}"], capture_output=True,
                           timeout=30)
        subprocess.run(["ip", "link", "del", self.bridge()], capture_output=True, timeout=30)
