"""End to end: simulated fleet → agent process → real influxd, through an outage and a SIGKILL."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.influxd import InfluxServer

DB = "e2e"


def start_agent(tmp_path: Path, url: str, log_name: str) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = tmp_path / log_name
    env = {
        **os.environ,
        "WATTWISE_LOG_LEVEL": "DEBUG",
        "WATTWISE_AGENT_AGENT__HOST": "e2e-agent",
        "WATTWISE_AGENT_AGENT__HOST_INTERVAL_S": "1",
        "WATTWISE_AGENT_WAL__SYNC": "always",
        "WATTWISE_AGENT_SENDER__BACKOFF_INITIAL_S": "0.1",
        "WATTWISE_AGENT_SENDER__BACKOFF_MAX_S": "0.5",
    }
    argv = [
        sys.executable, "-m", "wattwise", "agent", "run",
        "--config", str(tmp_path / "absent.toml"),
        "--source", "sim", "--sim-nodes", "2", "--sim-gpus-per-node", "4", "--sim-seed", "3",
        "--interval", "0.2", "--influx-url", url, "--influx-db", DB,
        "--wal-dir", str(tmp_path / "wal"),
    ]  # fmt: skip
    (tmp_path / "absent.toml").write_text("")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    return proc, log_path


def appended_lines(log_path: Path) -> int:
    text = log_path.read_text()
    return sum(int(n) for n in re.findall(r"tick: (\d+) lines appended to the WAL", text))


def lines_in_database(influxd: InfluxServer) -> int:
    """Points per measurement: the largest per-field count (every line has that field)."""
    total = 0
    for measurement in measurements_in_database(influxd):
        rows = influxd.rows(f'SELECT COUNT(*) FROM "{measurement}"', DB)
        if rows:
            total += max(int(str(v)) for k, v in rows[0].items() if k.startswith("count_"))
    return total


def measurements_in_database(influxd: InfluxServer) -> set[str]:
    return {str(r["name"]) for r in influxd.rows("SHOW MEASUREMENTS", DB)}


def wait_for(predicate: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_no_sample_lost_across_influxdb_outage_and_agent_sigkill(
    tmp_path: Path, influxd_private: InfluxServer
) -> None:
    influxd = influxd_private
    influxd.create_database(DB)
    first, first_log = start_agent(tmp_path, influxd.url, "first.log")
    try:
        wait_for(lambda: lines_in_database(influxd) > 50, 30)
        influxd.stop()  # the outage begins
        time.sleep(3)  # the agent keeps sampling into its WAL
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    queued_at_kill = appended_lines(first_log)
    second, second_log = start_agent(tmp_path, influxd.url, "second.log")
    try:
        time.sleep(2)  # still no database: the new agent queues behind the old backlog
        influxd.start()
        expected_so_far = queued_at_kill
        wait_for(lambda: lines_in_database(influxd) >= expected_so_far, 60)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0, second_log.read_text()[-3000:]
    expected = appended_lines(first_log) + appended_lines(second_log)
    assert expected > queued_at_kill > 0
    # Every line either agent appended is in the database, and nothing else is.
    assert measurements_in_database(influxd) == {"gpu", "host", "cooling", "gpu_job", "agent"}
    assert lines_in_database(influxd) == expected
    assert "lines not yet delivered" not in second_log.read_text()
