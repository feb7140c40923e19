"""The agent as operators run it (``python -m wattwise agent run``), and what it says it did."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.influxd import InfluxServer

DB = "faults"
_SUMMARY = re.compile(
    r"agent stopped: (\d+) lines read, (\d+) sent, (\d+) dead-lettered, (\d+) dropped, "
    r"(\d+) left in the WAL"
)


@dataclass(frozen=True)
class Summary:
    """The stopping agent's own account (its last log line)."""

    read: int
    sent: int
    dead_lettered: int
    dropped: int
    left: int


def agent_config(
    tmp_path: Path, url: str, *, nodes: int = 2, interval_s: float = 0.2, **sections: str
) -> Path:
    """A sim agent's TOML: ``nodes`` nodes of 4 GPUs read every ``interval_s``, WAL synced
    always; ``sections`` add lines to a section (``sender="batch_max_lines = 50"``)."""
    base = {
        "agent": (
            f'source = "sim"\nhost = "fault-agent"\ngpu_interval_s = {interval_s}\n'
            f"host_interval_s = 1.0\n[agent.sim]\nnodes = {nodes}\ngpus_per_node = 4\n"
            "racks = 1\nseed = 3"
        ),
        "influx": f'url = "{url}"\ndatabase = "{DB}"\ntimeout_s = 2.0',
        "wal": f'dir = "{tmp_path / "wal"}"\nsync = "always"',
        "sender": "backoff_initial_s = 0.1\nbackoff_max_s = 0.5",
    }
    for name, extra in sections.items():
        base[name] = f"{base.get(name, '')}\n{extra}".strip()
    path = tmp_path / "agent.toml"
    path.write_text("".join(f"[{name}]\n{body}\n" for name, body in base.items()))
    return path


class Agent:
    """One agent process; its output goes to ``log``."""

    def __init__(self, config: Path, log: Path, *, argv_prefix: tuple[str, ...] = ()) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [*argv_prefix, sys.executable, "-m", "wattwise", "agent", "run",
                 "--config", str(config)],
                env={**os.environ, "WATTWISE_LOG_LEVEL": "INFO"},
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, as systemd stops it; the exit status (within the unit's stop timeout)."""
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def summary(self) -> Summary:
        found = _SUMMARY.findall(self.text())
        assert found, self.text()[-3000:]
        return Summary(*(int(n) for n in found[-1]))


def points(influxd: InfluxServer, where: str = "") -> int:
    """Lines stored: per measurement, the count of a field every line of it carries."""
    total = 0
    for row in influxd.rows("SHOW MEASUREMENTS", DB):
        measurement = str(row["name"])
        rows = influxd.rows(f'SELECT COUNT(*) FROM "{measurement}" {where}', DB)
        if rows:
            total += max(int(str(v)) for k, v in rows[0].items() if k.startswith("count_"))
    return total


def wait_for(predicate: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.2)
