"""Client-independent test helpers: the broker process, waiting, and record checks.

Everything here is shared by the per-client test modules. Nothing sleeps to synchronise:
waits poll a condition against a deadline (`wait_until`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_BIN = REPO_ROOT / "target" / "debug" / "runnel"

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.05

# Codecs every Kafka client here can produce with (name as librdkafka / kcat spell it).
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str,
               interval: float = POLL_INTERVAL_S) -> T:
    """Poll `predicate` until it returns something truthy; return that value.

    Raises AssertionError naming `what` once `timeout` seconds have passed. Exceptions the
    predicate raises propagate (use them for "this will never become true" conditions).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def runnel_bin() -> Path:
    return Path(os.environ.get("RUNNEL_BIN", DEFAULT_BIN))


def batches_length(data: bytes) -> int:
    """How many bytes of a segment file's contents `data` its record batches fill: direct
    appends (`log.direct.io`) leave up to a block of zeros after the last batch of the active
    segment (segment.rs), which the walk over the batches' framing stops at."""
    position = 0
    while position + 12 <= len(data):
        length = int.from_bytes(data[position + 8:position + 12], "big", signed=True)
        if length <= 0 or position + 12 + length > len(data):
            break
        position += 12 + length
    return position


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(count: int) -> list[int]:
    """`count` distinct free ports: each socket stays bound until all are chosen, so the
    kernel cannot hand out one port twice (as `free_port()` called `count` times may)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(s)
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def can_connect(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class BrokerError(AssertionError):
    pass


@dataclass
class Broker:
    """One `runnel server` process; restartable on the same port and data dir."""

    binary: Path
    data_dir: Path
    port: int
    log_path: Path
    overrides: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    # The address it listens on, and what the command runs under (a network namespace's
    # `ip netns exec NAME`, which execs the broker: the process is the broker itself).
    host: str = "127.0.0.1"
    prefix: list[str] = field(default_factory=list)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [str(self.binary), "server", "--listen", self.bootstrap,
               "--data-dir", str(self.data_dir)]
        for key, value in self.overrides.items():
            cmd += ["--override", f"{key}={value}"]
        return cmd

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start the process and return once it accepts TCP connections."""
        self.spawn()
        self.wait_serving()

    def spawn(self) -> None:
        """Start the process without waiting for it to serve."""
        if self.running():
            raise BrokerError(f"broker on {self.bootstrap} is already running")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")
        env.setdefault("NO_COLOR", "1")
        cmd = [*self.prefix, *self.command()]
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== test harness: starting {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, env=env)

    def wait_serving(self) -> None:
        """Return once the spawned process accepts TCP connections."""

        def serving() -> bool:
            if self.proc.poll() is not None:
                raise BrokerError(
                    f"runnel exited with code {self.proc.returncode} before serving on "
                    f"{self.bootstrap}; log:\n{self.log_tail()}")
            return can_connect(self.port, self.host)

        try:
            wait_until(serving, START_TIMEOUT_S, f"runnel to accept connections on {self.bootstrap}")
        except BrokerError:
            raise
        except AssertionError as e:
            self.kill()
            raise BrokerError(f"{e}; log:\n{self.log_tail()}") from None

    def stop(self) -> None:
        """SIGTERM, wait, and require a clean exit (code 0)."""
        assert self.proc is not None, "broker was never started"
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BrokerError(f"runnel did not exit within {STOP_TIMEOUT_S:g}s of SIGTERM; "
                              f"log:\n{self.log_tail()}") from None
        if code != 0:
            raise BrokerError(f"runnel exited with code {code} after SIGTERM (want 0); "
                              f"log:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL (no chance to flush anything) and reap."""
        if self.running():
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=STOP_TIMEOUT_S)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log().splitlines()[-lines:])


# ---------------------------------------------------------------------------------------------
# Records and the checks every client's round trip shares
# ---------------------------------------------------------------------------------------------

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True)
class Record:
    key: bytes | None
    value: bytes | None
    headers: Headers
    timestamp_ms: int


@dataclass(frozen=True)
class Stored:
    """A record at a place in the log: acknowledged by a producer or read by a consumer."""

    partition: int
    offset: int
    record: Record


def now_ms() -> int:
    return int(time.time() * 1000)


def make_records(tag: str, keyed: int = 15, unkeyed: int = 6) -> list[Record]:
    """Keyed and unkeyed records with headers (incl. a repeated header name and binary values),
    binary payloads, one large compressible value, one empty value, and CreateTimes an hour in
    the past (so a broker that stamps its own time is caught)."""
    base_ts = now_ms() - 3_600_000
    records = []
    for i in range(keyed + unkeyed):
        key = f"key-{i % 4}".encode() if i < keyed else None
        value = f"{tag} #{i} ".encode() + bytes(range(256))
        if i == 1:
            value += b"compressible " * 8000  # ~100 KB: exercises real compression
        if i == 2:
            value = b""  # empty is not null
        headers = (
            ("idx", str(i).encode()),
            ("tag", tag.encode()),
            ("bin", b"\x00\x01\xfe\xff"),
            ("idx", b"repeated-name"),
        )
        records.append(Record(key, value, headers, base_ts + i))
    return records


def short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


def describe_difference(want: Record, got: Record) -> str:
    parts = []
    for name in ("key", "value", "headers", "timestamp_ms"):
        a, b = getattr(want, name), getattr(got, name)
        if a != b:
            parts.append(f"{name}: want {short(a)}, got {short(b)}")
    return "; ".join(parts)


def assert_offsets_contiguous(stored: Iterable[Stored]) -> None:
    by_partition: dict[int, list[int]] = defaultdict(list)
    for s in stored:
        by_partition[s.partition].append(s.offset)
    for partition, offsets in sorted(by_partition.items()):
        assert offsets == list(range(len(offsets))), (
            f"partition {partition}: offsets are not contiguous from 0: {short(offsets, 200)}")


def assert_same_key_same_partition(stored: Iterable[Stored]) -> None:
    partitions_of: dict[bytes, set[int]] = defaultdict(set)
    for s in stored:
        if s.record.key is not None:
            partitions_of[s.record.key].add(s.partition)
    split = {k: sorted(p) for k, p in partitions_of.items() if len(p) > 1}
    assert not split, f"records with one key landed in several partitions: {split}"


def assert_acked_records_stored(acked: Iterable[Stored], stored: Iterable[Stored]) -> None:
    """Every acknowledged record is stored, intact, at the partition/offset it was acked at."""
    at = {(s.partition, s.offset): s.record for s in stored}
    for a in acked:
        got = at.get((a.partition, a.offset))
        assert got is not None, (
            f"acknowledged record {short(a.record.value)} missing at partition {a.partition} "
            f"offset {a.offset}")
        assert got == a.record, (
            f"record at partition {a.partition} offset {a.offset} differs: "
            f"{describe_difference(a.record, got)}")


def assert_round_trip(acked: list[Stored], stored: list[Stored]) -> None:
    """The full contract of a produce-then-consume-everything round trip."""
    assert_offsets_contiguous(stored)
    assert_acked_records_stored(acked, stored)
    assert len(stored) == len(acked), (
        f"read back {len(stored)} records, {len(acked)} were acknowledged")
    assert_same_key_same_partition(stored)


def read_records_until_end(poll: Callable[[], Iterable[Stored]],
                           at_end: Callable[[], bool], timeout: float, what: str) -> list[Stored]:
    """Drive a client's poll until `at_end()`; return everything polled, sorted by position."""
    out: list[Stored] = []

    def step() -> bool:
        out.extend(poll())
        return at_end()

    wait_until(step, timeout, what, interval=0)
    return sorted(out, key=lambda s: (s.partition, s.offset))


def partition_dir(data_dir: Path, topic: str, partition: int) -> Path:
    path = data_dir / f"{topic}-{partition}"
    assert path.is_dir(), (
        f"expected partition directory {path}; data dir holds: "
        f"{sorted(str(p.relative_to(data_dir)) for p in data_dir.rglob('*'))}")
    return path


def last_segment(data_dir: Path, topic: str, partition: int = 0) -> Path:
    """The highest-numbered `.log` segment of a partition."""
    pdir = partition_dir(data_dir, topic, partition)
    logs = sorted(pdir.glob("*.log"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)
    assert logs, f"no .log segment in {pdir}: {sorted(p.name for p in pdir.iterdir())}"
    return logs[-1]
