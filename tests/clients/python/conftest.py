"""Fixtures for the real-client compatibility suite: a real `runnel server` per test."""

from __future__ import annotations

import logging

import aiokafka  # noqa: F401  (imported so that their module loggers exist; see below)
import kafka  # noqa: F401
import pytest

pytest.register_assert_rewrite("helpers", "ck")

from helpers import Broker, free_port, runnel_bin  # noqa: E402


class FirstOccurrenceOnly(logging.Filter):
    """Drop repeats of a log message: a client retrying against a broken broker logs the same
    ERROR line thousands of times, which would bury the failure report."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.getMessage())
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


CLIENT_LOG_FILTER = FirstOccurrenceOnly()
for _name in list(logging.root.manager.loggerDict):
    if _name.split(".")[0] in ("aiokafka", "kafka"):
        logging.getLogger(_name).addFilter(CLIENT_LOG_FILTER)


@pytest.fixture(autouse=True)
def _fresh_client_log_filter():
    CLIENT_LOG_FILTER.seen.clear()


@pytest.fixture
def broker_factory(tmp_path, request):
    """Start brokers with optional `--override key=value` settings; all are killed at teardown.

    Each broker gets its own port, `<tmp>/<name>-data` data dir and `<tmp>/<name>.log` log
    (stdout+stderr). The log tail is attached to the report of a failing test.
    """
    binary = runnel_bin()
    if not binary.is_file():
        pytest.fail(f"runnel binary not found at {binary} (set RUNNEL_BIN or `cargo build`)")
    brokers: list[Broker] = []
    request.node._runnel_brokers = brokers

    def start(overrides: dict[str, str] | None = None, name: str = "broker") -> Broker:
        data_dir = tmp_path / f"{name}-data"
        data_dir.mkdir()
        broker = Broker(binary, data_dir, free_port(), tmp_path / f"{name}.log",
                        dict(overrides or {}))
        brokers.append(broker)
        broker.start()
        return broker

    yield start
    for broker in brokers:
        broker.kill()


@pytest.fixture
def broker(broker_factory) -> Broker:
    """A running broker with default settings."""
    return broker_factory()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for broker in getattr(item, "_runnel_brokers", []):
            report.sections.append(
                (f"runnel log ({broker.bootstrap}, {broker.log_path})", broker.log_tail(120)))
