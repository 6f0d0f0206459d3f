#!/usr/bin/env python3
"""Measures how long a three-node cluster takes to create topics again after kill -9 of its
active controller (issue 15's acceptance: within 5 s, over 10 kills).

Usage (from the repository root, after `cargo build` and the test venv from scripts/test):
    target/venv/bin/python scripts/measure-controller-failover.py [--kills 10]
        [--binary target/debug/runnel]

Each round: find the active controller (the node whose log last says it leads), create a
topic, kill -9 that node, then create a topic through a survivor until it succeeds; the
time from the kill to that success is the round's figure. The killed node is started again
and must rejoin as a follower before the next round. At the end every topic created must be
on every node (no metadata lost). Prints each round, the worst and the median.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "clients" / "python"))

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from cluster import Cluster  # noqa: E402
from helpers import wait_until  # noqa: E402


def create(bootstrap: str, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, 1, 1)], operation_timeout=5, request_timeout=6)
    futures[name].result(timeout=7)


def topics_on(bootstrap: str) -> set[str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return set(admin.list_topics(timeout=30).topics)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--binary", default=str(ROOT / "target" / "debug" / "runnel"))
    parser.add_argument("--keep", metavar="DIR",
                        help="keep the nodes' data dirs and logs in DIR (for a slow round)")
    args = parser.parse_args()
    os.environ["RUNNEL_BIN"] = str(Path(args.binary).resolve())
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    with (tempfile.TemporaryDirectory(prefix="runnel-failover-") if not args.keep
          else contextlib.nullcontext(args.keep)) as tmp:
        cluster = Cluster(Path(tmp), 3)
        try:
            cluster.start()
            created: list[str] = []
            figures: list[float] = []
            for kill in range(args.kills):
                leader = cluster.active_controller()
                before = f"before-{kill}"
                create(cluster.bootstrap(), before)
                created.append(before)
                leader.kill()
                killed_at = time.monotonic()
                killed_wall = time.strftime("%H:%M:%S")
                survivor = next(n for n in cluster.nodes if n.running())
                after = f"after-{kill}"

                def created_again() -> bool:
                    try:
                        create(survivor.bootstrap, after)
                        return True
                    except Exception as error:  # noqa: BLE001 - retried until the deadline
                        return "already exists" in str(error)

                wait_until(created_again, 60, f"a topic created after kill {kill}")
                figure = time.monotonic() - killed_at
                figures.append(figure)
                created.append(after)
                new_leader = cluster.active_controller()
                leader.start()
                wait_until(lambda: f"the metadata quorum's leader is node {new_leader.node_id}"
                           in leader.log().rsplit("=== test harness: starting", 1)[-1], 30,
                           f"node {leader.node_id} to rejoin as a follower")
                print(f"kill {kill + 1} (at {killed_wall}): node {leader.node_id} killed, node "
                      f"{new_leader.node_id} leads; topics created again after {figure:.2f} s",
                      flush=True)
            for node in cluster.nodes:
                wait_until(lambda: set(created) <= topics_on(node.bootstrap), 30,
                           f"node {node.node_id} to hold every topic")
            print(f"{len(figures)} kills: worst {max(figures):.2f} s, median "
                  f"{statistics.median(figures):.2f} s; all {len(created)} topics on every node")
        finally:
            cluster.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
