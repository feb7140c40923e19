"""Telemetry values no instrument can produce, dropped where they enter the optimizer.

A few junk values (``util_gpu_pct`` of 1e30 on 3 of 32 GPUs) overflowed an
integer cast in a fit and left the whole fleet without recommendations;
``inlet_temp_c`` of 1e30 made cooling publish an inlet of 1e29 °C. Every read
the engine makes goes through :class:`SaneTelemetry`: a value outside its
physical range (:mod:`wattwise.optimizer.bounds`) becomes missing (NaN) in that
one sample, bucket or state, and is counted per measurement and field, so it
never poisons a fit and an operator sees where it came from (``/v1/models``,
``/metrics``). Missing values are what every model already handles.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from wattwise.optimizer import bounds as b
from wattwise.optimizer.telemetry import (
    GpuState,
    HostState,
    Scope,
    Series,
    TelemetryStore,
    ZoneState,
)

FIELD_BOUNDS: dict[str, dict[str, b.Range]] = {
    "gpu": {
        **dict.fromkeys(("power_w", "power_instant_w", "power_peak_w"), b.GPU_POWER_W),
        "power_sd_w": b.GPU_POWER_W,  # a spread of power: ≥ 0, and no more than a board draws
        **dict.fromkeys(
            ("power_limit_w", "enforced_limit_w", "min_limit_w", "max_limit_w", "default_limit_w"),
            b.GPU_POWER_W,
        ),
        **dict.fromkeys(("util_gpu_pct", "util_mem_pct"), b.PERCENT),
        **dict.fromkeys(("sm_clock_mhz", "mem_clock_mhz"), b.CLOCK_MHZ),
        **dict.fromkeys(("temp_c", "mem_temp_c", "slowdown_temp_c"), b.CHIP_TEMP_C),
        **dict.fromkeys(("mem_used_bytes", "mem_total_bytes"), b.MEMORY_BYTES),
        "capped_share": b.SHARE,
        "energy_j": b.ENERGY_J,
        **dict.fromkeys(
            (
                "sm_active_pct",
                "sm_occupancy_pct",
                "dram_active_pct",
                "tensor_active_pct",
                "fp64_active_pct",
                "fp32_active_pct",
                "fp16_active_pct",
            ),
            b.PERCENT,
        ),
        **dict.fromkeys(("remapped_rows_pending", "remapped_rows_failed"), b.SHARE),
    },
    "host": {
        "inlet_temp_c": b.AIR_TEMP_C,
        "node_power_w": b.NODE_POWER_W,
        "cpu_util_pct": b.PERCENT,
        "cpu_power_w": b.NODE_POWER_W,
    },
    "cooling": {
        **dict.fromkeys(("supply_temp_c", "setpoint_c", "return_temp_c"), b.COOLANT_TEMP_C),
        **dict.fromkeys(("cooling_power_w", "it_power_w"), b.FACILITY_POWER_W),
    },
    "gpu_job": {"power_w": b.GPU_POWER_W, "used_mem_bytes": b.MEMORY_BYTES},
    "gpu_xid": {"count": b.EVENTS},
}
"""Every numeric column or state field the optimizer reads, by measurement."""

State = TypeVar("State", GpuState, HostState, ZoneState)


class SaneTelemetry:
    """A :class:`TelemetryStore` whose reads never carry a physically impossible value."""

    def __init__(self, store: TelemetryStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._dropped: Counter[tuple[str, str]] = Counter()

    def dropped(self) -> Mapping[tuple[str, str], int]:
        """Values dropped since start, by (measurement, field)."""
        with self._lock:
            return dict(self._dropped)

    def gpu_series(self, start_ns: int, end_ns: int, *, every_s: int, scope: Scope) -> Series:
        return self._series(
            "gpu", self.store.gpu_series(start_ns, end_ns, every_s=every_s, scope=scope)
        )

    def host_series(self, start_ns: int, end_ns: int, *, every_s: int, scope: Scope) -> Series:
        return self._series(
            "host", self.store.host_series(start_ns, end_ns, every_s=every_s, scope=scope)
        )

    def zone_series(self, start_ns: int, end_ns: int, *, every_s: int, scope: Scope) -> Series:
        return self._series(
            "cooling", self.store.zone_series(start_ns, end_ns, every_s=every_s, scope=scope)
        )

    def job_series(self, start_ns: int, end_ns: int, *, every_s: int, scope: Scope) -> Series:
        return self._series(
            "gpu_job", self.store.job_series(start_ns, end_ns, every_s=every_s, scope=scope)
        )

    def xid_series(self, start_ns: int, end_ns: int, *, every_s: int, scope: Scope) -> Series:
        return self._series(
            "gpu_xid", self.store.xid_series(start_ns, end_ns, every_s=every_s, scope=scope)
        )

    def latest_gpus(self, scope: Scope) -> list[GpuState]:
        return self._states("gpu", self.store.latest_gpus(scope))

    def latest_hosts(self, scope: Scope) -> list[HostState]:
        return self._states("host", self.store.latest_hosts(scope))

    def latest_zones(self, scope: Scope) -> list[ZoneState]:
        return self._states("cooling", self.store.latest_zones(scope))

    def write(self, lines: Sequence[bytes]) -> None:
        self.store.write(lines)

    def close(self) -> None:
        self.store.close()

    def _series(self, measurement: str, series: Series) -> Series:
        limits = FIELD_BOUNDS[measurement]
        values = dict(series.values)
        dropped: Counter[tuple[str, str]] = Counter()
        for name, column in series.values.items():
            if name not in limits:
                continue
            low, high = limits[name]
            with np.errstate(invalid="ignore"):
                junk = ~np.isnan(column) & ~((column >= low) & (column <= high))
            count = int(np.count_nonzero(junk))
            if count:
                values[name] = np.where(junk, np.nan, column)
                dropped[(measurement, name)] += count
        self._count(dropped)
        return dataclasses.replace(series, values=values) if dropped else series

    def _states(self, measurement: str, states: list[State]) -> list[State]:
        limits = FIELD_BOUNDS[measurement]
        dropped: Counter[tuple[str, str]] = Counter()
        out = []
        for state in states:
            junk: dict[str, Any] = {
                name: np.nan
                for name, bounds in limits.items()
                if _is_junk(getattr(state, name, np.nan), bounds)
            }
            for name in junk:
                dropped[(measurement, name)] += 1
            out.append(dataclasses.replace(state, **junk) if junk else state)
        self._count(dropped)
        return out

    def _count(self, dropped: Counter[tuple[str, str]]) -> None:
        if dropped:
            with self._lock:
                self._dropped.update(dropped)


def _is_junk(value: object, bounds: b.Range) -> bool:
    if not isinstance(value, float) or value != value:  # NaN is missing, not junk
        return False
    return not b.within(value, bounds)
