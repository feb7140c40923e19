"""The host source: CPU, memory, load, disk and network via psutil; RAPL; hwmon.

Rates (CPU utilization, disk and network throughput, CPU power) come from
counter deltas over the clock's monotonic interval, so the first read has them
missing rather than zero. Any piece that fails leaves only its own fields
missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil

from wattwise.clock import Clock
from wattwise.collector.base import FieldValue, Reading
from wattwise.collector.hwmon import HwmonReader
from wattwise.collector.rapl import RaplReader

log = logging.getLogger(__name__)

Fields = dict[str, FieldValue | None]

# psutil's cpu_times fields that are already counted in user/nice on Linux.
_GUEST_TIMES = ("guest", "guest_nice")
_IDLE_TIMES = ("idle", "iowait")

# The host fields this source reads (inlet_temp_c and node_power_w come from the BMC source).
HOST_SOURCE_FIELDS = (
    "cpu_util_pct",
    "load1",
    "load5",
    "load15",
    "mem_used_bytes",
    "mem_total_bytes",
    "disk_read_bytes_per_s",
    "disk_write_bytes_per_s",
    "net_rx_bytes_per_s",
    "net_tx_bytes_per_s",
    "cpu_energy_j",
    "cpu_power_w",
    "cpu_temp_c",
)


class HostSource:
    """Reads this host once per tick as one ``host`` reading."""

    name = "host"

    def __init__(
        self,
        *,
        host: str,
        clock: Clock,
        sysfs_root: Path = Path("/sys"),
        psutil_module: ModuleType | Any = psutil,
    ) -> None:
        self._host = host
        self._clock = clock
        self._ps = psutil_module
        self._rapl = RaplReader(sysfs_root)
        self._hwmon = HwmonReader(sysfs_root)
        self._previous_counters: dict[str, float] = {}
        self._previous_cpu: tuple[float, float] | None = None
        self._previous_at: float | None = None

    def read(self) -> Sequence[Reading]:
        now = self._clock.monotonic()
        interval_s = None if self._previous_at is None else now - self._previous_at
        self._previous_at = now
        fields: Fields = dict.fromkeys(HOST_SOURCE_FIELDS)
        fields.update(_guarded("cpu", lambda: {"cpu_util_pct": self._cpu_util_pct()}))
        fields.update(_guarded("load", self._load))
        fields.update(_guarded("memory", self._memory))
        fields.update(_guarded("disk", lambda: self._disk_rates(interval_s)))
        fields.update(_guarded("network", lambda: self._net_rates(interval_s)))
        fields.update(_guarded("rapl", lambda: self._cpu_energy(interval_s)))
        fields.update(_guarded("hwmon", lambda: {"cpu_temp_c": self._hwmon.hottest_package_c()}))
        return [Reading("host", {"host": self._host}, fields, self._clock.time_ns())]

    def close(self) -> None:
        """Nothing is held open: sysfs files are opened per read."""

    def _cpu_util_pct(self) -> float | None:
        # Computed from cpu_times rather than psutil.cpu_percent(), whose state is
        # global to the process and would be shared with any other caller.
        times = self._ps.cpu_times()._asdict()
        total = sum(v for k, v in times.items() if k not in _GUEST_TIMES)
        idle = sum(times.get(k, 0.0) for k in _IDLE_TIMES)
        previous, self._previous_cpu = self._previous_cpu, (total, idle)
        if previous is None or total <= previous[0]:
            return None
        busy_share = 1.0 - (idle - previous[1]) / (total - previous[0])
        return float(min(100.0, max(0.0, 100.0 * busy_share)))

    def _load(self) -> Fields:
        load1, load5, load15 = self._ps.getloadavg()
        return {"load1": float(load1), "load5": float(load5), "load15": float(load15)}

    def _memory(self) -> Fields:
        memory = self._ps.virtual_memory()
        return {
            "mem_used_bytes": int(memory.total - memory.available),
            "mem_total_bytes": int(memory.total),
        }

    def _disk_rates(self, interval_s: float | None) -> Fields:
        disk = self._ps.disk_io_counters(perdisk=False)
        return {
            "disk_read_bytes_per_s": self._rate("disk_read", disk.read_bytes, interval_s),
            "disk_write_bytes_per_s": self._rate("disk_write", disk.write_bytes, interval_s),
        }

    def _net_rates(self, interval_s: float | None) -> Fields:
        nics = self._ps.net_io_counters(pernic=True)
        rx = sum(c.bytes_recv for nic, c in nics.items() if nic != "lo")
        tx = sum(c.bytes_sent for nic, c in nics.items() if nic != "lo")
        return {
            "net_rx_bytes_per_s": self._rate("net_rx", rx, interval_s),
            "net_tx_bytes_per_s": self._rate("net_tx", tx, interval_s),
        }

    def _cpu_energy(self, interval_s: float | None) -> Fields:
        energy_j = self._rapl.energy_since_last_j()
        if energy_j is None or not interval_s:
            return {"cpu_energy_j": None, "cpu_power_w": None}
        return {"cpu_energy_j": energy_j, "cpu_power_w": energy_j / interval_s}

    def _rate(self, counter: str, value: float, interval_s: float | None) -> float | None:
        """Per-second rate of a counter since the last read; None first, or after a reset."""
        previous = self._previous_counters.get(counter)
        self._previous_counters[counter] = value
        if previous is None or not interval_s or value < previous:
            return None
        return float((value - previous) / interval_s)


def _guarded(piece: str, read_piece: Callable[[], Fields]) -> Fields:
    """Fields of one piece, or nothing (so they stay missing) if that piece fails."""
    try:
        return read_piece()
    except Exception as e:  # psutil and sysfs raise many kinds; one piece must not stop the rest
        log.debug("host %s could not be read: %s", piece, e)
        return {}
